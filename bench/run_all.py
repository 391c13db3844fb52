#!/usr/bin/env python
"""Run every benchmark script in bench/ (bench_*.py) in turn; arguments such as --quick are passed on.

    .venv/bin/python bench/run_all.py [--quick]      (what `./dev bench` runs)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    failed = []
    for script in scripts:
        print(f"\n==> {script.relative_to(HERE.parent)} {' '.join(sys.argv[1:])}".rstrip(), flush=True)
        if subprocess.call([sys.executable, str(script), *sys.argv[1:]], cwd=HERE.parent) != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
