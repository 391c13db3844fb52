"""Renders for the dataset builders: camera maths, Blender in a child process, the image dataset reading them."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blender_occnet.occnet.meshio import read_mesh
from training import render as R
from training.data import ShapeDataset
from training.shapes import Settings, build_dataset

VIEWS, SIZE = 3, 137
HAS_BPY = importlib.util.find_spec("bpy") is not None  # never imported here: only the child loads Blender


@pytest.fixture(autouse=True)
def _blender_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Blender child inherits these: it must not touch the real user configuration."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BLENDER_USER_RESOURCES", str(tmp_path / "blender"))


@pytest.fixture(scope="module")
def tiny_meshes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 categories x 2 procedural models with mesh.obj and few points."""
    root = tmp_path_factory.mktemp("render-dataset")
    build_dataset(root, ["chair", "lamp"], 2, settings=Settings(n_uniform=2000, n_surface=2000,
                                                                voxel_surface_samples=5000), progress=False)
    return root


def _folders(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/*/mesh.obj"))


# ------------------------------------------------------------------------------------------ without Blender


def test_viewpoints_look_at_the_origin_and_depend_on_seed_and_model() -> None:
    folder = Path("/somewhere/chair/chair_00000")
    mats = R.viewpoints(24, 0.8, R.view_rng(folder, 0))
    assert np.array_equal(mats, R.viewpoints(24, 0.8, R.view_rng(Path("/elsewhere/chair/chair_00000"), 0)))
    assert not np.allclose(mats[0], R.viewpoints(1, 0.8, R.view_rng(folder, 1))[0])
    assert not np.allclose(mats[0], R.viewpoints(1, 0.8, R.view_rng(folder.with_name("chair_00001"), 0))[0])
    k = R.intrinsics(SIZE)
    for world_mat in mats:
        rotation, t = world_mat[:, :3], world_mat[:, 3]
        assert np.allclose(rotation @ rotation.T, np.eye(3)) and np.isclose(np.linalg.det(rotation), 1.0)
        eye = -rotation.T @ t
        elevation = np.degrees(np.arcsin(eye[1] / np.linalg.norm(eye)))
        assert -20.001 <= elevation <= 40.001
        assert np.allclose(R.project(np.zeros((1, 3)), k, world_mat), (SIZE - 1) / 2)
        assert R.project(np.array([[0.0, 0.3, 0.0]]), k, world_mat)[0, 1] < (SIZE - 1) / 2  # y up = image up
        # The bounding sphere stays inside the frame.
        sphere = np.random.default_rng(0).normal(size=(2000, 3))
        uv = R.project(0.8 * sphere / np.linalg.norm(sphere, axis=1, keepdims=True), k, world_mat)
        assert (uv > 0).all() and (uv < SIZE - 1).all()


def _fake_child(script: list[tuple[str, int, int | None]]) -> Callable:
    """A stand-in for _run_child: each call takes (engine expected, exit code, models to finish or None for
    all) from `script`; a non-zero exit after the finished models means Blender died on the next one."""
    calls: list[tuple[str, list[str]]] = []

    def run(folders: list[str], engine: str, views: int, size: int, seed: int, samples: int,
            on_line: Callable[[str, str, str], None]) -> tuple[int, str]:
        expected, rc, n = script[len(calls)]
        calls.append((engine, list(folders)))
        assert engine == expected
        done = folders if n is None else folders[:n]
        for folder in done:
            on_line("start", folder, "")
            on_line("ok", folder, "")
        if rc and n is not None and n < len(folders):
            on_line("start", folders[n], "")
        return rc, "Aborted" if rc else ""

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_crashes_fall_back_to_cycles_and_skip_the_model_that_killed_blender(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folders = []
    for i in range(4):
        folders.append(tmp_path / "cat" / f"m{i}")
        folders[-1].mkdir(parents=True)
        (folders[-1] / "mesh.obj").write_text("")
    (tmp_path / "cat" / "no_mesh").mkdir()
    # Workbench aborts at once (no EGL); Cycles renders one model, dies on the second, then renders the rest.
    fake = _fake_child([("BLENDER_WORKBENCH", -6, 0), ("CYCLES", -11, 1), ("CYCLES", 0, None)])
    monkeypatch.setattr(R, "_run_child", fake)
    result = R.render_models(folders + [tmp_path / "cat" / "no_mesh"], progress=False)
    assert result["engine"] == "CYCLES" and result["rendered"] == 3
    assert [Path(f).name for f, _ in result["failed"]] == ["no_mesh", "m1"]
    assert "crashed" in result["failed"][1][1]
    assert [len(folders) for _, folders in fake.calls] == [4, 4, 2]  # type: ignore[attr-defined]

    # Blender dying before any model, again and again, ends the run instead of looping.
    monkeypatch.setattr(R, "_run_child", _fake_child([("CYCLES", -11, 0)] * 3))
    result = R.render_models(folders, engine="CYCLES", progress=False)
    assert result["rendered"] == 0 and len(result["failed"]) == 4


def test_without_the_bpy_module_renders_are_skipped(tiny_meshes: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "fake" / "bpy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'bpy'\")\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))  # shadows the real module in the child
    folders = _folders(tiny_meshes)
    result = R.render_models(folders, views=VIEWS, progress=False, overwrite=True)
    assert not result["available"] and result["rendered"] == 0 and not result["failed"]
    assert "not available" in capsys.readouterr().err
    assert "no Blender" in R.report(result)


def test_builders_pass_their_models_to_the_renderer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trimesh

    from training import prepare, shapes

    seen: list[list[Path]] = []

    def fake(folders: list[Path], engine: str = "", **_: object) -> dict:
        seen.append([Path(f) for f in folders])
        return {"rendered": len(folders), "already": 0, "failed": [], "engine": engine, "available": True}

    monkeypatch.setattr(R, "render_models", fake)
    out = tmp_path / "shapes"
    assert shapes.main([str(out), "--categories", "mug", "--per-category", "1", "--uniform-points", "500",
                        "--surface-points", "500", "--render"]) == 0
    assert seen[-1] == [out / "mug" / "mug_00000"]
    meshes = tmp_path / "meshes" / "boxes"
    meshes.mkdir(parents=True)
    trimesh.creation.box(extents=(1.0, 2.0, 0.5)).export(meshes / "b.obj")
    assert prepare.main([str(meshes.parent), str(tmp_path / "prepared"), "--uniform-points", "500",
                         "--surface-points", "500", "--workers", "1", "--render"]) == 0
    assert seen[-1] == [tmp_path / "prepared" / "boxes" / "b"]
    with pytest.raises(SystemExit):
        shapes.main([str(out), "--no-mesh", "--render"])


# ------------------------------------------------------------------------------------------ with Blender


def _object_mask(image: np.ndarray) -> np.ndarray:
    return (255 - image.astype(int)).max(axis=2) > 15  # as prepare_image finds objects (0.06 off white)


@pytest.mark.skipif(not HAS_BPY, reason="Blender's Python module (bpy) is not installed")
@pytest.mark.parametrize("engine", ["BLENDER_WORKBENCH", "CYCLES"])
def test_renders_match_their_cameras_and_feed_the_image_dataset(engine: str, tiny_meshes: Path,
                                                                tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    shutil.copytree(tiny_meshes, root)
    folders = _folders(root)
    result = R.render_models(folders, views=VIEWS, size=SIZE, engine=engine, samples=4, progress=False)
    assert result["available"] and result["rendered"] == 4 and not result["failed"], result
    if engine == "CYCLES":
        assert result["engine"] == "CYCLES"  # Workbench may have fallen back to Cycles where EGL is missing

    for folder in folders:
        images = folder / R.IMAGE_FOLDER
        assert sorted(p.name for p in images.iterdir()) == ["000.jpg", "001.jpg", "002.jpg", "cameras.npz"]
        assert not list(folder.glob(".*part"))  # no temporary folder left
        vertices = read_mesh(folder / "mesh.obj").vertices
        with np.load(images / "cameras.npz") as cameras:
            assert set(cameras.files) == {f"{kind}_mat_{i}" for kind in ("camera", "world") for i in range(VIEWS)}
            for i in range(VIEWS):
                camera_mat, world_mat = cameras[f"camera_mat_{i}"], cameras[f"world_mat_{i}"]
                assert camera_mat.shape == (3, 3) and world_mat.shape == (3, 4)
                image = np.asarray(Image.open(images / f"{i:03d}.jpg"))
                assert image.shape == (SIZE, SIZE, 3)
                corners = image[[0, 0, -1, -1], [0, -1, 0, -1]]
                assert (corners >= 250).all()  # white background
                border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
                assert (border >= 240).all()  # the object stays off the border (prepare_image crops it)
                mask = _object_mask(image)
                assert mask[SIZE // 4: -SIZE // 4, SIZE // 4: -SIZE // 4].mean() > 0.05  # an object in the middle
                assert image[mask].mean() < 230  # and it is grey, not white

                # The cameras are right: the mesh's vertices project onto the object's pixels, and the
                # projected extent is the object's extent. A flipped or transposed matrix fails both.
                uv = R.project(vertices, camera_mat, world_mat)
                assert ((uv >= 0) & (uv <= SIZE - 1)).all()
                near = np.zeros_like(mask)
                for dy in range(-2, 3):
                    for dx in range(-2, 3):
                        near |= np.roll(mask, (dy, dx), axis=(0, 1))
                col, row = np.round(uv).astype(int).T
                assert near[row, col].mean() > 0.97
                rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                assert np.allclose([cols[0], rows[0]], uv.min(axis=0), atol=2.5)
                assert np.allclose([cols[-1], rows[-1]], uv.max(axis=0), atol=2.5)

    # The image modality reads them: the object found on the background, cropped and padded to 224.
    dataset = ShapeDataset(root, "train", "image", points_per_shape=64)
    assert len(dataset) == 4 and dataset.skipped.count == 0
    item = dataset.item(0, np.random.default_rng(0))
    assert item["inputs"].shape == (3, 224, 224) and item["points"].shape == (64, 3)
    dark = (item["inputs"] < 0.94).any(axis=0)
    rows, cols = np.flatnonzero(dark.any(1)), np.flatnonzero(dark.any(0))
    extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    assert abs(extent - 0.85 * 224) < 8  # scaled to 85% of the frame: the background was recognised

    # A second run resumes: every model is complete, Blender is not even started.
    again = R.render_models(folders, views=VIEWS, size=SIZE, engine=engine, progress=False)
    assert again["rendered"] == 0 and again["already"] == 4
