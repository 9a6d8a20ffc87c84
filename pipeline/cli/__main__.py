"""`python -m pipeline.cli`: the same as the `katib-digits` command."""

from pipeline.cli import main

main()
