"""The project's image tag, `katib-digits:<version>`, derived from the package version.

The version has one home, pyproject.toml's `[project] version`; Python reads it from the installed
package's metadata (`make setup` reinstalls when pyproject.toml changes), the shell scripts through
`scripts/image-tag`. The YAML that must carry a literal tag (experiments/*.yaml, deploy/) is checked
against `IMAGE` by tests/project/test_image_tag.py, so a version bump that forgets a file fails there.
"""

from importlib import metadata

NAME = "katib-digits"  # the distribution's name and the image's repository
VERSION = metadata.version(NAME)
IMAGE = f"{NAME}:{VERSION}"  # what the Dockerfile is built as, experiments/*.yaml run, the pipeline defaults to
