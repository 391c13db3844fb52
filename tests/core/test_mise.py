"""Tests of MISE (adaptive evaluation) and marching cubes on analytic occupancy functions."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from blender_occnet.common.errors import GenerationError, InputError
from blender_occnet.occnet.meshing import extract_mesh
from blender_occnet.occnet.mise import MISE, ValueStore
from tests.mesh_checks import is_watertight, mesh_volume, mesh_volume_iou

BOX = 1.1
Logits = Callable[[np.ndarray], np.ndarray]  # (..., 3) box coordinates -> (...) logits


def _box(p: np.ndarray, centre: tuple[float, float, float], half: float) -> np.ndarray:
    return half - np.abs(p - np.asarray(centre)).max(axis=-1)


def sphere(p: np.ndarray) -> np.ndarray:
    return (0.4 - np.linalg.norm(p, axis=-1)) * 100


def torus(p: np.ndarray) -> np.ndarray:
    return (0.1 - np.hypot(np.hypot(p[..., 0], p[..., 1]) - 0.3, p[..., 2])) * 100


def boxes(p: np.ndarray) -> np.ndarray:
    return np.maximum(_box(p, (0.1, 0.0, 0.0), 0.2), _box(p, (-0.2, 0.1, 0.15), 0.15)) * 100


def plate(p: np.ndarray) -> np.ndarray:
    # 0.04 thick, 0.6 x 0.6 wide, off-centre in z
    return np.minimum(0.02 - np.abs(p[..., 2] - 0.013), 0.3 - np.abs(p[..., :2]).max(axis=-1)) * 100


VOLUMES = {
    sphere: 4 / 3 * np.pi * 0.4**3,
    torus: 2 * np.pi**2 * 0.3 * 0.1**2,
    boxes: 0.4**3 + 0.3**3 - 0.05 * 0.25 * 0.2,
    plate: 0.6 * 0.6 * 0.04,
}
DISTANCES = {  # distance to the analytic surface, where it is easy
    sphere: lambda p: np.abs(np.linalg.norm(p, axis=-1) - 0.4),
    torus: lambda p: np.abs(np.hypot(np.hypot(p[..., 0], p[..., 1]) - 0.3, p[..., 2]) - 0.1),
}


def to_box(q: np.ndarray, resolution: int) -> np.ndarray:
    return BOX * (q / resolution - 0.5)


def run_mise(fn: Logits, r0: int, steps: int, threshold: float = 0.0, store: ValueStore | None = None,
             batch: int | None = None) -> tuple[MISE, np.ndarray, np.ndarray]:
    """(mise, dense grid, every point queried) with values from `fn`."""
    mise = MISE(r0, steps, threshold, store=store)
    queried = []
    pts = mise.query()
    while len(pts):
        queried.append(pts)
        for start in range(0, len(pts), batch or len(pts)):
            chunk = pts[start : start + (batch or len(pts))]
            mise.update(chunk, fn(to_box(chunk, mise.resolution)))
        pts = mise.query()
    all_queried = np.concatenate(queried) if queried else np.zeros((0, 3), dtype=np.int64)
    return mise, mise.to_dense(), all_queried


def dense_values(fn: Logits, resolution: int) -> np.ndarray:
    q = np.arange(resolution + 1)
    grid = np.stack(np.meshgrid(q, q, q, indexing="ij"), axis=-1)
    return fn(to_box(grid, resolution)).astype(np.float32)  # what MISE keeps (the networks give float32)


def point_set(pts: np.ndarray) -> set[tuple[int, int, int]]:
    return set(map(tuple, pts.tolist()))


# -- a loop-by-loop octree, the way the original libmise does it, as the reference ------------


class ReferenceOctree:
    """Slow, literal octree MISE (voxels with children, points in insertion order)."""

    def __init__(self, r0: int, depth: int, threshold: float) -> None:
        self.r0, self.depth, self.thr = r0, depth, threshold
        self.size0 = 1 << depth
        self.resolution = r0 * self.size0
        # voxel: [corner, level, children (dict offset -> index) or None]
        self.voxels: list[list] = [
            [(i * self.size0, j * self.size0, k * self.size0), 0, None]
            for i, j, k in itertools.product(range(r0), repeat=3)
        ]
        self.points: dict[tuple[int, int, int], float | None] = {
            (i * self.size0, j * self.size0, k * self.size0): None
            for i, j, k in itertools.product(range(r0 + 1), repeat=3)
        }

    def query(self) -> np.ndarray:
        return np.array([p for p, v in self.points.items() if v is None], dtype=np.int64).reshape(-1, 3)

    def update(self, pts: np.ndarray, values: np.ndarray) -> None:
        for p, v in zip(map(tuple, pts.tolist()), values.tolist()):
            self.points[p] = v
        self._subdivide()

    def _leaf(self, cell: tuple[int, int, int]) -> int | None:
        if not all(0 <= c < self.resolution for c in cell):
            return None
        top = [c // self.size0 for c in cell]
        idx = (top[0] * self.r0 + top[1]) * self.r0 + top[2]
        size = self.size0
        while self.voxels[idx][2] is not None:
            size //= 2
            corner = self.voxels[idx][0]
            idx = self.voxels[idx][2][tuple(int(c - o >= size) for c, o in zip(cell, corner))]
        return idx

    def _subdivide(self) -> None:
        pos, neg = set(), set()
        for p, v in self.points.items():
            if v is None:
                continue
            for d in itertools.product((-1, 0), repeat=3):
                idx = self._leaf((p[0] + d[0], p[1] + d[1], p[2] + d[2]))
                if idx is None:
                    continue
                if v >= self.thr:
                    pos.add(idx)
                if v <= self.thr:
                    neg.add(idx)
        for idx in range(len(self.voxels)):  # only the voxels that exist now
            corner, level, children = self.voxels[idx]
            if children is not None or level == self.depth or idx not in pos or idx not in neg:
                continue
            half = 1 << (self.depth - level - 1)
            self.voxels[idx][2] = {}
            for off in itertools.product((0, 1), repeat=3):
                self.voxels[idx][2][off] = len(self.voxels)
                self.voxels.append([tuple(c + o * half for c, o in zip(corner, off)), level + 1, None])
            for off in itertools.product((0, 1, 2), repeat=3):
                self.points.setdefault(tuple(c + o * half for c, o in zip(corner, off)), None)

    def to_dense(self) -> np.ndarray:
        n = self.resolution + 1
        out = np.full((n, n, n), np.nan)
        for p, v in self.points.items():
            out[p] = v
        for i, j, k in itertools.product(range(1, n), range(n), range(n)):
            if np.isnan(out[i, j, k]):
                out[i, j, k] = out[i - 1, j, k]
        for i, j, k in itertools.product(range(n), range(1, n), range(n)):
            if np.isnan(out[i, j, k]):
                out[i, j, k] = out[i, j - 1, k]
        for i, j, k in itertools.product(range(n), range(n), range(1, n)):
            if np.isnan(out[i, j, k]):
                out[i, j, k] = out[i, j, k - 1]
        return out


def ties(p: np.ndarray) -> np.ndarray:
    # integer steps: many values exactly at the threshold (counted on both sides)
    return np.round((0.3 - np.abs(p).max(axis=-1)) * 20)


def wiggly(p: np.ndarray) -> np.ndarray:
    return np.sin(p[..., 0] * 13) * np.cos(p[..., 1] * 11) + np.sin(p[..., 2] * 17 + p[..., 0] * 5)


@pytest.mark.parametrize(
    "fn, r0, steps, threshold",
    [(sphere, 4, 2, 0.0), (ties, 5, 2, 0.0), (wiggly, 3, 3, 0.5), (torus, 6, 1, 0.0), (wiggly, 4, 0, 0.0)],
)
def test_same_points_and_grid_as_reference_octree(fn: Logits, r0: int, steps: int, threshold: float) -> None:
    ref = ReferenceOctree(r0, steps, threshold)
    ref_points = []
    pts = ref.query()
    while len(pts):
        ref_points.append(pts)
        ref.update(pts, fn(to_box(pts, ref.resolution)).astype(np.float32))  # as MISE keeps them
        pts = ref.query()
    mise, grid, queried = run_mise(fn, r0, steps, threshold)
    ref_all = np.concatenate(ref_points)
    assert len(queried) == len(ref_all) == mise.points_evaluated
    assert point_set(queried) == point_set(ref_all)
    np.testing.assert_array_equal(grid, ref.to_dense())


# -- against dense evaluation -------------------------------------------------------------------


@pytest.mark.parametrize("fn", [sphere, torus, boxes, plate], ids=lambda f: f.__name__)
@pytest.mark.parametrize("r0, steps", [(16, 2), (32, 2)], ids=["64", "128"])
def test_mise_equals_dense_evaluation(fn: Logits, r0: int, steps: int) -> None:
    mise, grid, _ = run_mise(fn, r0, steps)
    resolution = mise.resolution
    dense = dense_values(fn, resolution)
    assert mise.points_evaluated < 0.25 * dense.size
    # Same inside/outside everywhere, exact values at every evaluated point.
    np.testing.assert_array_equal(grid >= 0, dense >= 0)
    coords = tuple(np.argwhere(mise._added).T)  # every point of the adaptive grid
    np.testing.assert_array_equal(mise._values[coords], dense[coords])

    mesh = extract_mesh(grid, 0.0, BOX)
    mesh_dense = extract_mesh(dense, 0.0, BOX)
    # every cell the surface crosses had all its corners evaluated: the meshes are the same
    np.testing.assert_array_equal(mesh[0], mesh_dense[0])
    np.testing.assert_array_equal(mesh[1], mesh_dense[1])
    assert is_watertight(mesh[1]) and is_watertight(mesh_dense[1])
    assert mesh_volume_iou(mesh, mesh_dense, n=96) > 0.999

    volume = mesh_volume(*mesh)
    assert volume == pytest.approx(VOLUMES[fn], rel=0.03)  # positive: faces wound outwards
    if fn in DISTANCES:
        assert DISTANCES[fn](mesh[0].astype(np.float64)).max() < 0.5 * BOX / resolution


def test_sphere_point_counts_match_original() -> None:
    # Counts of the original libmise for this function (resolution_0 32, threshold logit 0).
    expected = {1: 61_235, 2: 163_261, 3: 571_839}
    for steps, count in expected.items():
        mise, grid, queried = run_mise(sphere, 32, steps)
        resolution = mise.resolution
        assert mise.points_evaluated == len(queried) == count
        assert grid.size == (resolution + 1) ** 3  # 274,625 / 2,146,689 / 16,974,593
        q = np.arange(resolution + 1)
        for i in range(0, resolution + 1, 32):  # signs against dense evaluation, slab by slab
            slab = np.stack(np.meshgrid(q[i : i + 32], q, q, indexing="ij"), axis=-1)
            np.testing.assert_array_equal(grid[i : i + 32] >= 0, sphere(to_box(slab, resolution)) >= 0)


def test_batched_and_shuffled_updates_give_the_same_result() -> None:
    whole, grid, _ = run_mise(torus, 16, 2)
    rng = np.random.default_rng(1)
    mise = MISE(16, 2, 0.0)
    pts = mise.query()
    while len(pts):
        pts = pts[rng.permutation(len(pts))]
        for chunk in np.array_split(pts, 3):
            assert len(mise.query()) > 0
            mise.update(chunk, torus(to_box(chunk, mise.resolution)))
        pts = mise.query()
    assert mise.points_evaluated == whole.points_evaluated
    np.testing.assert_array_equal(mise.to_dense(), grid)


def test_no_upsampling_is_the_coarse_grid() -> None:
    mise, grid, queried = run_mise(sphere, 20, 0)
    assert len(queried) == 21**3 and mise.resolution == 20
    np.testing.assert_array_equal(grid, dense_values(sphere, 20))


# -- re-using values ------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [sphere, boxes], ids=lambda f: f.__name__)
def test_rerun_at_new_threshold_queries_only_new_points(fn: Logits) -> None:
    store = ValueStore()
    first, _, first_pts = run_mise(fn, 32, 2, 0.0, store=store)
    assert len(store) == first.points_evaluated
    for prob in (0.2, 0.8):
        thr = float(np.log(prob / (1 - prob)))
        fresh, fresh_grid, fresh_pts = run_mise(fn, 32, 2, thr)
        known_before = len(store)
        mise = MISE(32, 2, thr, store=store)
        asked = []
        pts = mise.query()
        while len(pts):
            found, _ = store.lookup(pts, mise.resolution)
            assert not found.any()  # never asks for a value the store has
            asked.append(pts)
            mise.update(pts, fn(to_box(pts, mise.resolution)))
            pts = mise.query()
        new = point_set(np.concatenate(asked)) if asked else set()
        known = point_set(store.points(128)[0]) - new
        assert new == point_set(fresh_pts) - known
        assert mise.points_evaluated == len(new) < 0.5 * fresh.points_evaluated
        assert mise.points_evaluated + mise.points_reused == fresh.points_evaluated
        assert len(store) == known_before + len(new)
        np.testing.assert_array_equal(mise.to_dense(), fresh_grid)


def test_store_is_shared_between_lattice_sizes() -> None:
    store = ValueStore(unit_resolution=512)
    coarse, _, _ = run_mise(sphere, 16, 2, store=store)  # 64 cells
    for r0, steps in [(32, 2), (16, 3)]:  # 128 cells, reached two ways
        fresh, fresh_grid, fresh_pts = run_mise(sphere, r0, steps)
        known = point_set(store.points(128)[0])
        mise, grid, asked = run_mise(sphere, r0, steps, store=store)
        np.testing.assert_array_equal(grid, fresh_grid)
        assert point_set(asked) == point_set(fresh_pts) - known
        assert mise.points_reused == len(point_set(fresh_pts) & known)
        # every point of the 64 run lies on the 128 lattice and is part of its adaptive grid
        assert mise.points_reused >= coarse.points_evaluated
    # values stored from a 128 lattice answer a 64 lattice entirely
    again, again_grid, asked = run_mise(sphere, 16, 2, store=store)
    assert len(asked) == 0 and again.points_reused == coarse.points_evaluated
    np.testing.assert_array_equal(again_grid, run_mise(sphere, 16, 2)[1])


def test_store_rejects_lattices_it_cannot_hold() -> None:
    with pytest.raises(InputError, match="unit resolution"):
        MISE(40, 2, 0.0, store=ValueStore(512))
    store = ValueStore(512)
    store.add(np.array([[1, 2, 3]]), np.array([0.5]), 64)
    found, values = store.lookup(np.array([[2, 4, 6], [1, 2, 3]]), 128)
    assert found.tolist() == [True, False] and values[0] == 0.5
    store.add(np.array([[2, 4, 6]]), np.array([0.7]), 128)  # same point: the later value wins
    assert len(store) == 1 and store.lookup(np.array([[1, 2, 3]]), 64)[1][0] == np.float32(0.7)


# -- bad input ------------------------------------------------------------------------------------


def test_bad_parameters_raise_input_error() -> None:
    for args in [(0, 2, 0.0), (32, -1, 0.0), (32.0, 2, 0.0), (32, 2, float("nan")), (64, 5, 0.0)]:
        with pytest.raises(InputError):
            MISE(*args)
    mise = MISE(4, 1, 0.0)
    pts = mise.query()
    with pytest.raises(InputError, match="shape"):
        mise.update(pts[:, :2], np.zeros(len(pts)))
    with pytest.raises(InputError, match="shape"):
        mise.update(pts, np.zeros(len(pts) - 1))
    with pytest.raises(InputError, match="0..8"):
        mise.update(pts + 9, np.zeros(len(pts)))
    with pytest.raises(InputError, match="not asked for"):
        mise.update(np.array([[1, 1, 1]]), np.zeros(1))
    with pytest.raises(GenerationError, match="not finished"):
        mise.to_dense()


def test_nan_from_the_network_raises_generation_error() -> None:
    mise = MISE(4, 1, 0.0)
    pts = mise.query()
    values = np.zeros(len(pts))
    values[:12] = np.nan
    values[12] = np.inf
    with pytest.raises(GenerationError, match=f"NaN for 12 and an infinite value for 1 of {len(pts)} points"):
        mise.update(pts, values)
    assert len(mise.query()) == len(pts)  # nothing was taken


# -- marching cubes -------------------------------------------------------------------------------


def test_vertices_map_to_box_without_half_cell_shift() -> None:
    resolution = 20
    q = np.arange(resolution + 1)
    x = to_box(q, resolution)[:, None, None] + np.zeros((1, resolution + 1, resolution + 1))
    verts, faces = extract_mesh(0.1234 - x, 0.0, BOX)  # linear field: inside where x < 0.1234
    assert verts.dtype == np.float32 and faces.dtype == np.int32
    plane = verts[(np.abs(verts) < 0.5).all(axis=1)]  # away from the walls made by the padding
    assert len(plane) > 100
    np.testing.assert_allclose(plane[:, 0], 0.1234, atol=1e-6)
    assert verts.min() == pytest.approx(-BOX / 2, abs=1e-5)
    assert mesh_volume(verts, faces) == pytest.approx((0.1234 + BOX / 2) * BOX**2, rel=1e-4)


def test_faces_point_outwards() -> None:
    verts, faces = extract_mesh(dense_values(sphere, 32), 0.0, BOX)
    v = verts.astype(np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    normals = np.cross(b - a, c - a)
    assert (np.einsum("ij,ij->i", normals, (a + b + c) / 3) > 0).all()


def test_empty_and_full_grids() -> None:
    verts, faces = extract_mesh(np.full((9, 9, 9), -5.0), 0.0)
    assert verts.shape == (0, 3) and faces.shape == (0, 3)
    touching = np.full((9, 9, 9), -5.0)
    touching[4, 4, 4] = 0.0  # reaches the threshold without exceeding it: no surface
    assert extract_mesh(touching, 0.0)[1].shape == (0, 3)
    verts, faces = extract_mesh(np.full((9, 9, 9), 5.0), 0.0, BOX)  # closed by the padding
    assert is_watertight(faces)
    assert mesh_volume(verts, faces) == pytest.approx(BOX**3, rel=1e-4)


def test_values_exactly_at_threshold_stay_watertight() -> None:
    verts, faces = extract_mesh(dense_values(ties, 24), 0.0)
    assert len(faces) and is_watertight(faces) and mesh_volume(verts, faces) > 0


def test_mesh_helpers() -> None:
    sphere_mesh = extract_mesh(dense_values(sphere, 48), 0.0)
    small = extract_mesh(dense_values(sphere, 48), 10.0)  # radius 0.3
    assert mesh_volume_iou(sphere_mesh, sphere_mesh) == 1.0
    assert mesh_volume_iou(sphere_mesh, small) == pytest.approx(0.75**3, abs=0.01)
    assert not is_watertight(sphere_mesh[1][1:])
    assert not is_watertight(sphere_mesh[1][:, [0, 2, 1]][np.r_[0:5]])
    with pytest.raises(GenerationError, match="NaN"):
        extract_mesh(np.full((4, 4, 4), np.nan), 0.0)
    with pytest.raises(InputError):
        extract_mesh(np.zeros((4, 4)), 0.0)


def test_meshing_pads_only_where_the_shape_reaches_the_border() -> None:
    """Unpadded (the shape stays inside) and padded meshing give the same surface; a shape cut by the
    box's side is still closed there."""
    from blender_occnet.occnet.meshing import PAD_VALUE

    grid = dense_values(sphere, 32)
    inner = extract_mesh(grid, 0.0, BOX)
    n = grid.shape[0]
    padded = extract_mesh(np.pad(grid, 1, constant_values=PAD_VALUE), 0.0, BOX * (n + 1) / (n - 1))
    assert len(inner[1]) == len(padded[1])
    np.testing.assert_allclose(np.sort(inner[0], axis=0), np.sort(padded[0], axis=0), atol=1e-5)
    cut = dense_values(lambda p: (0.6 - np.abs(p).max(axis=-1)) * 10, 32)  # a cube beyond the box's sides
    vertices, faces = extract_mesh(cut, 0.0, BOX)
    assert is_watertight(faces) and np.abs(vertices).max() == pytest.approx(BOX / 2)


def test_a_cancel_stops_mise_between_its_whole_array_steps() -> None:
    """At 512 cells one round of subdivision or the final fill takes a good part of a second: a cancel
    is honoured inside them, not only between network batches."""
    from blender_occnet.common.errors import Cancelled

    asked = [False]
    mise = MISE(16, 2, 0.0, should_cancel=lambda: asked[0])
    pts = mise.query()
    asked[0] = True
    with pytest.raises(Cancelled):
        mise.update(pts, sphere(to_box(pts, mise.resolution)))  # the subdivision that follows stops
    mise_finished = [False]
    done = MISE(16, 1, 0.0, should_cancel=lambda: asked[0] and mise_finished[0])
    pts = done.query()
    while len(pts):
        done.update(pts, sphere(to_box(pts, done.resolution)))
        pts = done.query()
    mise_finished[0] = True
    with pytest.raises(Cancelled):
        done.to_dense()


def test_a_cancel_stops_mise_while_it_allocates_its_lattice() -> None:
    """At 512 cells the lattice of values is 540 MB, whose fill held a cancel for most of a second: it is
    filled a slab at a time, checking between slabs."""
    from blender_occnet.common.errors import Cancelled

    calls = [0]

    def cancel_at_the_second_check() -> bool:
        calls[0] += 1
        return calls[0] >= 2

    with pytest.raises(Cancelled):
        MISE(32, 4, 0.0, should_cancel=cancel_at_the_second_check)
    assert calls[0] == 2  # stopped after one slab of the 513-cell lattice, before any query
