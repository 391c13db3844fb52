"""The procedural shape collection: primitives, unions, every category, and the dataset it writes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import trimesh
import yaml

from blender_occnet.common.binvox import read_binvox
from training import shapes as S

# ------------------------------------------------------------------------------------------ primitives


def _primitives() -> list[S.Primitive]:
    tilt = S.rot_to([0.3, 1.0, -0.5])
    return [
        S.Box([0.1, -0.2, 0.05], S.rot_y(0.4), half=[0.3, 0.1, 0.2]),
        S.Box([0.0, 0.0, 0.0], S.rot_x(0.3) @ S.rot_z(-0.7), half=[0.05, 0.4, 0.15]),
        S.Cylinder([0.0, 0.1, 0.0], S.AXIS_ROT["x"], radius=0.2, half_height=0.3),
        S.Cylinder([0.1, 0.0, -0.1], tilt, radius=0.3, half_height=0.2, radius_top=0.08),
        S.Tube([0.0, 0.0, 0.2], S.AXIS_ROT["z"], radius=0.3, inner_radius=0.22, half_height=0.25),
        S.Ellipsoid([0.0, -0.1, 0.0], S.rot_y(0.5) @ S.rot_x(0.2), radii=[0.4, 0.1, 0.2]),
        S.Torus([0.05, 0.0, 0.0], tilt, major=0.3, minor=0.07),
    ]


@pytest.mark.parametrize("prim", _primitives(), ids=lambda p: type(p).__name__)
def test_primitive_surface_samples_lie_on_its_boundary(prim: S.Primitive) -> None:
    rng = np.random.default_rng(1)
    points, normals = prim.sample_surface(4000, rng)
    assert points.shape == normals.shape == (4000, 3)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)
    eps = 1e-4
    assert (~prim.contains(points + eps * normals)).mean() > 0.99  # a step out leaves the solid
    assert prim.contains(points - eps * normals).mean() > 0.99  # a step in enters it
    lo, hi = prim.bounds
    assert (points >= lo - 1e-9).all() and (points <= hi + 1e-9).all()
    assert np.allclose(points.min(axis=0), lo, atol=0.03) and np.allclose(points.max(axis=0), hi, atol=0.03)


@pytest.mark.parametrize("prim", _primitives(), ids=lambda p: type(p).__name__)
def test_primitive_area_and_sampling_density_match_its_mesh(prim: S.Primitive) -> None:
    mesh = prim.trimesh()
    assert math.isclose(prim.area, mesh.area, rel_tol=0.02)  # tessellation makes the mesh a bit smaller
    # Uniform over the area: the samples' second moments about the centre match the mesh's.
    ours, _ = prim.sample_surface(40_000, np.random.default_rng(2))
    theirs, _ = trimesh.sample.sample_surface(mesh, 40_000, seed=3)
    a, b = ours - prim.center, np.asarray(theirs) - prim.center
    assert np.allclose((a ** 2).mean(axis=0), (b ** 2).mean(axis=0), rtol=0.04, atol=2e-4)
    # The mesh's vertices lie on the analytic surface (not strictly inside).
    assert not prim.contains(mesh.vertices, margin=1e-9).any()


def test_mirrored_and_normalised_primitives() -> None:
    box = S.Box([0.3, 0.1, -0.2], S.rot_y(0.3) @ S.rot_z(0.2), half=[0.2, 0.05, 0.1])
    points = np.random.default_rng(0).uniform(-0.6, 0.6, (5000, 3))
    assert np.array_equal(box.mirrored().contains(points * [-1, 1, 1]), box.contains(points))
    moved = box.normalised(np.array([0.1, 0.2, 0.3]), 2.0)
    assert np.array_equal(moved.contains((points - [0.1, 0.2, 0.3]) / 2.0), box.contains(points))


# ------------------------------------------------------------------------------------------ shapes


def test_union_surface_samples_are_on_the_outer_surface() -> None:
    for index, category in enumerate(S.CATEGORIES):
        rng = S.model_rng(7, category, index)
        shape = S.generate(category, rng)
        points, normals = shape.sample_surface(3000, rng)
        assert points.shape == normals.shape == (3000, 3)
        for prim in shape.primitives:  # on no primitive's interior
            assert not prim.contains(points, margin=1e-5).any(), category
        assert (~shape.contains(points + 1e-4 * normals)).mean() > 0.98, category
        assert shape.contains(points - 1e-4 * normals).mean() > 0.98, category


def test_union_drops_buried_and_shared_faces() -> None:
    # Two boxes sharing the face x = 0: the union is the box [-0.5, 0.5] x [-0.1, 0.1] x [-0.2, 0.2].
    left = S.Box([-0.25, 0, 0], np.eye(3), half=[0.25, 0.1, 0.2])
    right = S.Box([0.25, 0, 0], np.eye(3), half=[0.25, 0.1, 0.2])
    inner = S.Box([0.0, 0, 0], np.eye(3), half=[0.1, 0.05, 0.05])  # wholly buried
    shape = S.Shape("test", [left, right, inner])
    points, _ = shape.sample_surface(5000, np.random.default_rng(0))
    assert len(points) == 5000
    assert not (np.abs(points[:, 0]) < 1e-9).any()  # nothing on the shared face
    on_faces = np.isclose(np.abs(points), [0.5, 0.1, 0.2]).any(axis=1)
    assert on_faces.all()  # nothing of the buried box either
    # Area-weighted: the share of the +-x faces is their share of the union's area.
    expected = 2 * 0.2 * 0.4 / (2 * (0.2 * 0.4 + 1.0 * 0.4 + 1.0 * 0.2))
    assert abs(np.isclose(np.abs(points[:, 0]), 0.5).mean() - expected) < 0.02


def test_generation_is_deterministic() -> None:
    a = S.generate("chair", S.model_rng(3, "chair", 11))
    b = S.generate("chair", S.model_rng(3, "chair", 11))
    c = S.generate("chair", S.model_rng(3, "chair", 12))
    assert len(a.primitives) == len(b.primitives)
    for p, q in zip(a.primitives, b.primitives):
        assert type(p) is type(q) and np.array_equal(p.center, q.center) and np.array_equal(p.rot, q.rot)
    assert np.array_equal(a.loc, b.loc) and a.scale == b.scale
    assert not np.array_equal(a.bounds, c.bounds)


@pytest.mark.parametrize("category", S.CATEGORIES)
def test_every_category_builds_valid_varied_shapes(category: str) -> None:
    probe = np.random.default_rng(0).uniform(-0.55, 0.55, (20_000, 3))
    sizes, fractions = [], []
    for index in range(12):
        shape = S.generate(category, S.model_rng(0, category, index))
        lo, hi = shape.bounds
        assert (lo >= -0.5 - 1e-9).all() and (hi <= 0.5 + 1e-9).all()
        assert math.isclose((hi - lo).max(), 1.0, abs_tol=1e-9)
        assert np.allclose(lo + hi, 0.0, atol=1e-9)  # bbox centred
        assert min(p.thickness for p in shape.primitives) >= S.MIN_THICKNESS
        assert shape.scale > 0 and shape.loc.shape == (3,)
        sizes.append(hi - lo)
        fractions.append(shape.contains(probe).mean())
    assert len({tuple(np.round(s, 6)) for s in sizes}) == len(sizes)  # all different
    assert all(0.005 < f < 0.6 for f in fractions), fractions  # airplanes are sparse, as in ShapeNet
    assert 0.01 < np.mean(fractions) < 0.6


def test_unknown_category_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown category"):
        S.generate("teapot", np.random.default_rng(0))


def test_voxels_hold_the_inside_and_the_surface() -> None:
    shape = S.generate("table", S.model_rng(0, "table", 1))
    grid = shape.voxels(32, np.random.default_rng(0), 50_000)
    centres = (np.argwhere(np.ones((32, 32, 32))) + 0.5) / 32 - 0.5
    inside = shape.contains(centres).reshape(32, 32, 32)
    assert grid.shape == (32, 32, 32) and grid[inside].all()
    assert grid.sum() > inside.sum()  # the surface adds the cells it crosses
    points, _ = shape.sample_surface(2000, np.random.default_rng(1))
    cells = np.clip(np.floor((points + 0.5) * 32).astype(int), 0, 31)
    # Dense samples find nearly every crossed cell (a corner barely clipped may be missed, as in binvox).
    assert grid[cells[:, 0], cells[:, 1], cells[:, 2]].mean() > 0.995


# ------------------------------------------------------------------------------------------ dataset

SMALL = dict(n_uniform=3000, n_surface=2000, voxel_surface_samples=20_000)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dataset_layout_matches_the_original_loader(tmp_path: Path) -> None:
    out = tmp_path / "data"
    assert S.main([str(out), "--per-category", "10", "--seed", "0", "--categories", "mug,car",
                   "--uniform-points", "3000", "--surface-points", "2000", "--near-points", "1000"]) == 0
    meta = yaml.safe_load((out / "metadata.yaml").read_text())
    assert meta == {"car": {"id": "car", "name": "car"}, "mug": {"id": "mug", "name": "mug"}}
    for category in ("mug", "car"):
        lists = {split: (out / category / f"{split}.lst").read_text() for split in ("train", "val", "test")}
        assert not any(text.endswith("\n") for text in lists.values())  # the original split('\n') would read ''
        ids = {split: text.split("\n") for split, text in lists.items()}
        assert [len(ids[s]) for s in ("train", "val", "test")] == [8, 1, 1]
        every = set().union(*ids.values())
        assert every == {f"{category}_{i:05d}" for i in range(10)} and sum(map(len, ids.values())) == 10
        for model in sorted(every):
            folder = out / category / model
            for name, n in (("points.npz", 3000), ("points_near.npz", 1000)):
                with np.load(folder / name) as data:
                    points, occ = data["points"], np.unpackbits(data["occupancies"])
                    assert points.dtype == np.float16 and points.shape == (n, 3)
                    assert occ.size == math.ceil(n / 8) * 8 and occ[n:].sum() == 0
                    assert data["loc"].shape == (3,) and data["scale"].shape == () and data["scale"] > 0
                    if name == "points.npz":
                        assert (np.abs(points) <= 0.55).all()
                        assert 0.005 < occ[:n].mean() < 0.6
                    else:
                        assert 0.2 < occ[:n].mean() < 0.7
            with np.load(folder / "pointcloud.npz") as data:
                assert data["points"].dtype == data["normals"].dtype == np.float16
                assert data["points"].shape == data["normals"].shape == (2000, 3)
                assert (np.abs(data["points"]) <= 0.5 + 1e-3).all()
            vox = read_binvox(folder / "model.binvox")
            assert vox.data.shape == (32, 32, 32) and vox.data.any()
            assert np.allclose(vox.translate, -0.5) and vox.scale == 1.0
            mesh = trimesh.load(folder / "mesh.obj", process=False)
            # Tessellated round parts sit inside the analytic ones, so the mesh is within the cube.
            assert (np.abs(mesh.bounds) <= 0.5 + 1e-6).all() and np.ptp(mesh.bounds, axis=0).max() > 0.98


def test_labels_are_exact_for_the_stored_points(tmp_path: Path) -> None:
    rng = S.model_rng(0, "lamp", 4)
    shape = S.generate("lamp", rng)
    S.write_model(shape, tmp_path, rng, S.Settings(**SMALL, mesh=False))
    for name in ("points.npz", "points_near.npz"):
        with np.load(tmp_path / name) as data:
            points = data["points"].astype(np.float64)
            occ = np.unpackbits(data["occupancies"])[: len(points)].astype(bool)
        assert np.array_equal(shape.contains(points), occ)
    assert not (tmp_path / "mesh.obj").exists()
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_dataset_is_byte_identical_for_any_worker_count_and_resumes(tmp_path: Path) -> None:
    settings = S.Settings(**SMALL)
    one, two = tmp_path / "one", tmp_path / "two"
    assert S.build_dataset(one, ["vase", "bench"], 3, seed=5, settings=settings, workers=1, progress=False) \
        == {"written": 6, "skipped": 0}
    S.build_dataset(two, ["vase", "bench"], 3, seed=5, settings=settings, workers=2, progress=False)
    assert _files(one) == _files(two)
    # A second run skips what is there and changes nothing.
    before = _files(one)
    (one / "vase" / "vase_00001" / "points.npz").unlink()  # an interrupted model is redone
    assert S.build_dataset(one, ["vase", "bench"], 3, seed=5, settings=settings, progress=False) \
        == {"written": 1, "skipped": 5}
    assert _files(one) == before
