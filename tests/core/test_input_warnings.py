"""Inputs a person should be told about, in one line each by the command line, a batch and the add-on: a scan of
several objects or a scene (issue 25 item 4: its points fall into groups far apart, which the networks draw as one
shape in one cube) and a cloud too sparse for the networks (issue 26: 8 points came back as 26 specks, silently)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blender_occnet.cli import SAMPLES_DIR
from blender_occnet.cli import main as cli_main
from blender_occnet.occnet.checkpoints import load_weights
from blender_occnet.occnet.preprocess import prepare_for_network
from blender_occnet.occnet.registry import resolve_weights

WARNING = ("the points form 2 separate groups far apart, a scene or several objects: the network reconstructs them "
           "as one shape, each at a fraction of the detail; crop the scan to one object (or split the file)")


def sphere(seed: int, n: int = 2000, centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    d = np.random.default_rng(seed).normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True) + centre


def test_separate_groups_are_counted_and_one_object_is_not() -> None:
    config = load_weights(resolve_weights(None, "pointcloud")).config

    def groups(points: np.ndarray | Path) -> int | None:
        return prepare_for_network(config, "pointcloud", points).info.get("input_point_groups")

    assert groups(sphere(0)) is None
    assert groups(SAMPLES_DIR / "chair_pointcloud.ply") is None  # legs, seat and back: one object
    assert groups(np.vstack([sphere(0), sphere(1, centre=(2.05, 0, 0))])) is None  # two touching: one group
    assert groups(np.vstack([sphere(0), sphere(1, centre=(10, 0, 0))])) == 2
    assert groups(np.vstack([sphere(0), sphere(1, centre=(10, 0, 0)), sphere(2, centre=(0, 30, 0))])) == 3
    # A small far group (under a tenth of the points) is not another object.
    assert groups(np.vstack([sphere(0), sphere(1, n=150, centre=(10, 0, 0))])) is None


def test_the_command_line_and_a_batch_warn_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    np.savetxt(scans / "two.xyz", np.vstack([sphere(0), sphere(1, centre=(10, 0, 0))]), fmt="%.5f")
    np.savetxt(scans / "one.xyz", sphere(2), fmt="%.5f")
    assert cli_main(["reconstruct", str(scans / "two.xyz"), "-o", str(tmp_path / "two.obj"),
                     "--resolution", "32", "--fit", "off"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {WARNING}"]

    assert cli_main(["reconstruct", str(scans), "-o", str(tmp_path / "out"), "--resolution", "32", "--fit",
                     "off"]) == 0
    captured = capsys.readouterr()
    said = [line for line in (captured.out + captured.err).splitlines() if line.startswith("warning:")]
    assert set(said) == {f"warning: {scans / 'two.xyz'}: {WARNING}"}  # in the bar's lines and the summary
    assert (tmp_path / "out" / "one.obj").exists() and (tmp_path / "out" / "two.obj").exists()


def test_a_cloud_too_sparse_to_tell_a_shape_gets_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def warnings_for(points: int) -> list[str]:
        source = tmp_path / f"{points}.xyz"
        np.savetxt(source, sphere(3, n=points), fmt="%.5f")
        assert cli_main(["reconstruct", str(source), "-o", str(tmp_path / f"{points}.obj"), "--resolution", "32",
                         "--fit", "off"]) == 0
        return [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]

    assert warnings_for(8) == ["warning: only 8 points: too few for the network to tell the shape (it learned from "
                               "300 to 20,000), so most of the mesh is its guess and may come in pieces; give it a "
                               "cloud of 200 points or more"]
    assert warnings_for(300) == []
