import sys

from trial.cli import main

sys.exit(main())
