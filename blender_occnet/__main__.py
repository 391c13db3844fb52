"""`python -m blender_occnet ...`: the command line."""

from .cli import main

raise SystemExit(main())
