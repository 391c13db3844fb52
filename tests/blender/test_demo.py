"""The README's first command, in a child process: build, install, reconstruct the samples, save, render."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blender_occnet.occnet.registry import list_weights
from tests.blender.blender_helpers import REPO


@pytest.mark.slow
def test_demo_writes_the_blend_the_meshes_and_a_render(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "demo.py", "--out", str(tmp_path), "--resolution", "32", "--samples", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    bundled = {info.modality for info in list_weights() if info.usable}
    meshes = sorted(tmp_path.glob("*.obj"))
    assert {m.name.split("_")[0] for m in meshes} == bundled and bundled
    for mesh in meshes:
        assert re.search(r"^f ", mesh.read_text(encoding="utf-8"), re.M), mesh
    listed = done.stdout.split("demo files in", 1)[1]
    for path in [tmp_path / "demo.blend", tmp_path / "demo.png", *meshes]:
        assert path.is_file() and str(path) in listed
    picture = np.asarray(Image.open(tmp_path / "demo.png").convert("RGB"), np.float32)
    assert picture.shape[1] == 1600 and picture.std() > 10  # objects on the background, not a blank frame
