"""katib-digits: everything that drives Experiments, one role per package (docs/architecture.md: the data
flow, and what each package does).

The import rule is stated here and nowhere else: LAYERS below, lowest first. A module of a package may
import its own package, `trial` (the trial program, below everything; it imports nothing of `pipeline`)
and the packages of lower layers; never one of its own layer or above, so nothing imports `cli`.
tests/project/test_architecture.py reads LAYERS and enforces it on every module's imports, lazy ones too.
"""

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "image"),  # UserError; the image tag
    ("katib",),  # Katib's semantics, pure
    ("lint", "suggestion"),  # the one load and the linter; our suggestion service
    ("local", "cluster"),  # the dry-run; the Katib backend
    ("submission",),  # retrain, predict
    ("serving",),  # export, the model server
    ("workflow",),  # the KFP pipeline
    ("cli",),  # the katib-digits command
)
