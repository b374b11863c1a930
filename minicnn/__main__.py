"""`python -m minicnn ...`: the command line, see minicnn/cli.py and `python -m minicnn --help`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
