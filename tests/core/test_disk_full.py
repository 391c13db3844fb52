"""A full disk while the command line writes a mesh or converts weights: one line that says so, nothing partial
left (issue 24 item 8; before, a traceback). A real small file system (tmpfs) fills up; the training checkpoint's
case is in tests/training/test_train.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import randomized_model, save_original_checkpoint, small_config, small_disk

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blender_occnet", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def assert_told_the_disk_is_full(done: subprocess.CompletedProcess, target: Path) -> None:
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.startswith(f"error: {target}: not written: No space left on device") and \
        done.stderr.count("\n") == 1, done.stderr
    assert "free some space or write it elsewhere" in done.stderr
    assert sorted(p.name for p in target.parent.iterdir()) == ["filler"]  # nothing partial left


@pytest.mark.parametrize("suffix", [".obj", ".glb"])
def test_a_full_disk_while_writing_a_mesh_is_one_line(tmp_path: Path, suffix: str) -> None:
    with small_disk(tmp_path / "disk") as disk:
        target = disk / f"car{suffix}"
        done = cli("reconstruct", str(REPO / "blender_occnet/samples/car_voxels.binvox"), "-o", str(target),
                   "--resolution", "32", "--quiet")
        assert_told_the_disk_is_full(done, target)


def test_a_full_disk_during_convert_is_one_line(tmp_path: Path) -> None:
    source = tmp_path / "pcl.pt"
    save_original_checkpoint(source, randomized_model(small_config("onet-pointcloud")))
    with small_disk(tmp_path / "disk") as disk:
        target = disk / "pcl.safetensors"
        assert_told_the_disk_is_full(cli("convert", str(source), str(target)), target)
