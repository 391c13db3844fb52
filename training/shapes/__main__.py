"""Runs the command line: `python -m training.shapes OUT ...` (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
