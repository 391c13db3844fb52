"""The dataset builder on a folder of real mesh files the test writes, broken ones included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from blender_occnet.common.binvox import read_binvox
from blender_occnet.common.errors import InputError
from blender_occnet.occnet.inside import contains
from training.data import ShapeDataset
from training.prepare import prepare
from training.shapes import Settings

SMALL = Settings(n_uniform=4000, n_surface=3000, voxel_surface_samples=20000)


def test_inside_test_on_watertight_open_and_flipped_meshes() -> None:
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (20000, 3))
    box = trimesh.creation.box(extents=(0.6, 0.4, 0.8))
    truth = (np.abs(points) < [0.3, 0.2, 0.4]).all(axis=1)
    assert np.array_equal(contains(box.vertices, box.faces, points), truth)
    faces = np.asarray(box.faces).copy()
    faces[::3] = faces[::3, ::-1]  # inconsistent winding
    assert np.array_equal(contains(box.vertices, faces, points), truth)
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.4)
    open_faces = np.delete(np.asarray(sphere.faces), np.arange(0, len(sphere.faces), 40), axis=0)  # 32 holes
    r = np.linalg.norm(points, axis=1)
    clear = np.abs(r - 0.4) > 0.01
    wrong = contains(sphere.vertices, open_faces, points)[clear] != (r < 0.4)[clear]
    assert wrong.mean() < 0.002


def write_meshes(folder: Path) -> None:
    (folder / "boxes").mkdir(parents=True)
    (folder / "round").mkdir()
    for i, extents in enumerate([(1.0, 2.0, 0.5), (0.3, 0.3, 0.9), (2.0, 1.0, 1.0)]):
        box = trimesh.creation.box(extents=extents)
        box.apply_translation((5.0 * i, 1.0, -2.0))
        box.export(folder / "boxes" / f"box{i}.obj")
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=2.0)
    trimesh.Trimesh(sphere.vertices, np.delete(sphere.faces, np.arange(0, 1280, 50), axis=0)).export(
        folder / "round" / "leaky_sphere.ply")
    trimesh.creation.torus(0.5, 0.2).export(folder / "torus.off")
    (folder / "round" / "garbage.stl").write_bytes(b"solid nonsense\nthis is not an stl")
    trimesh.PointCloud(np.random.default_rng(0).random((50, 3))).export(folder / "round" / "no_faces.ply")
    (folder / "round" / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n")


def test_prepare_writes_the_layout_and_skips_bad_meshes(tmp_path: Path) -> None:
    write_meshes(tmp_path / "meshes")
    result = prepare(tmp_path / "meshes", tmp_path / "data", SMALL, workers=1, progress=False)
    assert result["prepared"] == 5
    skipped = dict(result["skipped"])
    assert set(skipped) == {"round/garbage", "round/no_faces", "round/nan"}
    assert "no faces" in skipped["round/no_faces"] and "non-finite" in skipped["round/nan"]

    data = tmp_path / "data"
    assert {p.name for p in data.iterdir()} == {"boxes", "round", "default", "metadata.yaml"}
    all_ids = set()
    for split in ("train", "val", "test"):
        all_ids |= set(filter(None, (data / "boxes" / f"{split}.lst").read_text().split("\n")))
    assert all_ids == {"box0", "box1", "box2"}

    # Labels of a box are exact in the normalised frame: box0 is 1 x 2 x 0.5 -> 0.5 x 1 x 0.25.
    with np.load(data / "boxes" / "box0" / "points.npz") as points:
        p = points["points"].astype(np.float64)
        occ = np.unpackbits(points["occupancies"])[: len(p)].astype(bool)
        assert np.allclose(points["loc"], [0.0, 1.0, -2.0]) and float(points["scale"]) == pytest.approx(2.0)
    truth = (np.abs(p) < [0.25, 0.5, 0.125]).all(axis=1)
    assert np.array_equal(occ, truth)
    grid = read_binvox(data / "boxes" / "box0" / "model.binvox").data
    assert grid.shape == (32, 32, 32) and 0.1 < grid.mean() < 0.2

    # The leaky sphere is labelled like a closed one away from its surface.
    with np.load(data / "round" / "leaky_sphere" / "points.npz") as points:
        p = points["points"].astype(np.float64)
        occ = np.unpackbits(points["occupancies"])[: len(p)].astype(bool)
    r = np.linalg.norm(p, axis=1)
    clear = np.abs(r - 0.5) > 0.02
    assert (occ[clear] != (r < 0.5)[clear]).mean() < 0.005

    # What was written trains: the loader reads it.
    dataset = ShapeDataset(data, "train", "voxels", points_per_shape=64)
    assert len(dataset) >= 3 and dataset.item(0, np.random.default_rng(0))["points"].shape == (64, 3)


def test_prepare_refuses_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no mesh files"):
        prepare(tmp_path / "empty", tmp_path / "out", SMALL, progress=False)
    with pytest.raises(InputError, match="no such folder"):
        prepare(tmp_path / "missing", tmp_path / "out", SMALL, progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.obj").write_text("v 0 0 0\n")
    with pytest.raises(InputError, match="none of the 1 meshes"):
        prepare(tmp_path / "bad", tmp_path / "out", SMALL, progress=False)


def test_namesakes_are_named_and_failures_leave_no_partial_model(tmp_path: Path) -> None:
    meshes = tmp_path / "meshes" / "things"
    meshes.mkdir(parents=True)
    trimesh.creation.box((1, 2, 3)).export(meshes / "a.obj")
    trimesh.creation.icosphere(2).export(meshes / "A.ply")  # the same model id (any case) in the same category
    trimesh.creation.box((1, 1, 1)).export(meshes / "b.obj")
    (meshes / "broken.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nv nan 0 0\nf 1 2 4\n")
    result = prepare(tmp_path / "meshes", tmp_path / "data", SMALL, workers=1, progress=False)
    skipped = dict(result["skipped"])
    # Files are taken in name order, so A.ply comes first and a.obj is the namesake skipped.
    assert "a.obj has the same name as A.ply in things: rename one" in skipped["things/a"]
    assert "things/broken" in skipped and result["prepared"] == 2
    things = tmp_path / "data" / "things"
    listed = [i for split in ("train", "val", "test") for i in (things / f"{split}.lst").read_text().split("\n") if i]
    assert sorted(listed) == ["A", "b"]  # each model once
    assert sorted(p.name for p in things.iterdir() if p.is_dir()) == ["A", "b"]  # no partial folders


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc (Linux)")
def test_a_killed_worker_neither_hangs_the_run_nor_loses_the_other_meshes(tmp_path: Path) -> None:
    """A worker killed mid-run (what the kernel does to one out of memory) breaks the pool: the meshes
    still unfinished run again, each in a process of its own; the run ends with its split lists."""
    import os
    import signal
    import threading
    import time

    meshes = tmp_path / "meshes"
    meshes.mkdir()
    for i in range(4):  # two busy when the kill comes, two still waiting
        trimesh.creation.icosphere(3, radius=0.5 + 0.05 * i).export(meshes / f"ball{i}.obj")
    slow = Settings(n_uniform=400_000, n_surface=3000, voxel_surface_samples=20000)  # seconds per mesh
    outcome: dict = {}
    run = threading.Thread(target=lambda: outcome.update(
        prepare(meshes, tmp_path / "data", slow, workers=2, progress=False)))
    run.start()

    def children() -> list[int]:
        """This process's pool workers (not multiprocessing's resource tracker)."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
                    command = open(f"/proc/{entry}/cmdline", "rb").read()
                except OSError:
                    continue
                if int(fields[1]) == os.getpid() and b"spawn_main" in command:
                    found.append(int(entry))
        return found

    deadline = time.monotonic() + 60
    while not children() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.0)  # the workers are busy with a mesh each by now
    victims = children()
    assert victims, "no worker process appeared"
    os.kill(victims[-1], signal.SIGKILL)
    run.join(300)
    assert not run.is_alive(), "prepare hung after a worker was killed"
    skipped = dict(outcome["skipped"])
    assert outcome["prepared"] + len(skipped) == 4 and outcome["prepared"] >= 3
    assert all("died" in why for why in skipped.values())
    data = tmp_path / "data" / "default"
    assert (data / "train.lst").exists() and not [p for p in data.iterdir() if p.name.startswith(".")]


def test_prepare_never_removes_what_it_did_not_write(tmp_path: Path) -> None:
    """Issue 24 item 1: '...obj' once gave the model id '..', and the cleanup of a failed model removed the
    whole output folder; '..obj' removed the category's models. Names that cannot be folder names are refused,
    and a folder the user has where a model would go is never replaced."""
    meshes, out = tmp_path / "in", tmp_path / "out"
    (meshes / "chair").mkdir(parents=True)
    box = trimesh.creation.box(extents=(1.0, 0.5, 0.8))
    for name in ("...obj", "..obj", "a:b.obj", "back\\slash.obj", "good.obj", "mine.obj"):
        box.export(meshes / "chair" / name)
    (meshes / "chair" / "huge.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99999999999999999999\n")
    out.mkdir()
    (out / "keep").write_text("the user's")
    (out / "chair" / "mine").mkdir(parents=True)
    (out / "chair" / "mine" / "notes.txt").write_text("also the user's")
    result = prepare(meshes, out, SMALL, workers=1, progress=False)
    assert result["prepared"] == 1 and (out / "chair" / "good" / "points.npz").is_file()
    skipped = dict(result["skipped"])
    assert {"chair/...obj", "chair/..obj", "chair/a:b.obj", "chair/back\\slash.obj"} <= set(skipped)
    assert "rename it" in skipped["chair/...obj"]
    assert "not a model this command wrote" in skipped["chair/mine"]
    assert "vertex index beyond" in skipped["chair/huge"]  # one line, and the run went on
    assert (out / "keep").read_text() == "the user's"
    assert (out / "chair" / "mine" / "notes.txt").read_text() == "also the user's"
    # A second run replaces its own model (and only it).
    assert prepare(meshes, out, SMALL, workers=1, progress=False)["prepared"] == 1
    assert (out / "keep").is_file() and (out / "chair" / "mine" / "notes.txt").is_file()


def test_the_cli_says_one_line_for_a_face_index_too_large(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from blender_occnet.cli import main as cli_main

    (tmp_path / "huge.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 99999999999999999999\n")
    assert cli_main(["reconstruct", str(tmp_path / "huge.obj"), "-o", str(tmp_path / "out.obj"), "--quiet"]) != 0
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "vertex index beyond" in error and "Traceback" not in error
