"""The add-on type-checks against Blender 5.0's API (fake-bpy-module-5-0 stubs) with mypy."""

from __future__ import annotations

import subprocess
import sys

from tests.blender.blender_helpers import REPO


def test_add_on_passes_mypy() -> None:
    # The add-on and the scripting API; the modules they import (the backend client, the binvox reader) are
    # followed, not reported.
    done = subprocess.run([sys.executable, "-m", "mypy", "blender_occnet/addon", "blender_occnet/api.py",
                           "--follow-imports=silent",
                           "--warn-unused-ignores", "--python-version", "3.11"],
                          cwd=REPO, capture_output=True, text=True)
    assert "No module named mypy" not in done.stderr, "install requirements/dev.txt (./dev setup)"
    assert done.returncode == 0, done.stdout + done.stderr
