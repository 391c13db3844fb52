"""The project's static checks, so that they hold: mypy (configured in pyproject.toml: blender_occnet with the
add-on against Blender 5.0's API stubs, and training) and ruff (configured there too) over the whole tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_types_check() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert "No module named mypy" not in done.stderr, "install requirements/dev.txt (./dev setup)"
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]


def test_lint_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert "No module named ruff" not in done.stderr, "install requirements/dev.txt (./dev setup)"
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]


def test_test_files_have_unique_names() -> None:
    """The test folders have no __init__.py, so pytest imports each test file by its bare name: two files of one
    name in different folders stop the whole suite at collection (tests/blender/test_scans.py did)."""
    names = [path.name for path in (REPO / "tests").rglob("test_*.py")]
    assert not {name for name in names if names.count(name) > 1}
