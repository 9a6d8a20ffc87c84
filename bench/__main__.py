"""`python -m bench ...` from the repository root (`make bench`); `python -m bench --help` lists the sections."""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
