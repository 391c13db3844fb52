"""The add-on's pure numpy geometry (no bpy needed): frames, surface samples, voxel cubes, checks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from blender_occnet.addon import geometry
from tests.blender.blender_helpers import REPO


def test_geometry_needs_neither_bpy_nor_torch() -> None:
    """It runs on worker threads and in tests without Blender: numpy and the protocol's constants only
    (the add-on package itself, whose __init__ imports bpy, is stood in for by a bare package)."""
    probe = "\n".join([
        "import sys, types",
        "import blender_occnet",
        "package = types.ModuleType('blender_occnet.addon')",
        f"package.__path__ = [{str(REPO / 'blender_occnet' / 'addon')!r}]",
        "sys.modules['blender_occnet.addon'] = package",
        "import blender_occnet.addon.geometry",
        "print('bpy' in sys.modules, 'torch' in sys.modules)",
    ])
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["False", "False"], done.stderr


def test_frames_are_a_proper_rotation_and_inverse() -> None:
    points = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    net = geometry.blender_to_network(points)
    assert np.array_equal(geometry.network_to_blender(net), points)
    assert np.array_equal(geometry.blender_to_network(np.eye(3, dtype=np.float32))[2], [0, 1, 0])  # z-up -> y-up
    matrix = geometry.blender_to_network(np.eye(3))
    assert np.linalg.det(matrix) == pytest.approx(1.0)  # no mirror: face winding survives
    # Blender's front (-y, what the Front view looks at) is the networks' front (-z, the training shapes').
    assert np.array_equal(geometry.blender_to_network(np.array([[0.0, -1.0, 0.0]]))[0], [0, 0, -1])


def test_surface_samples_lie_on_the_triangles_and_follow_area() -> None:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 5], [3, 0, 5], [0, 3, 5]], np.float32)
    corners = np.zeros((2, 3, 3), np.uint8)
    corners[0, :, 0] = 255  # the small triangle red at every corner
    corners[1, 1:, 2] = 255  # the big one black at its first corner, blue at the two others
    samples, colours = geometry.sample_surface(vertices, np.array([[0, 1, 2], [3, 4, 5]]), 4000,
                                               corner_colours=corners)
    assert samples.dtype == np.float32 and samples.shape == (4000, 3)
    big = samples[:, 2] == 5
    assert ((samples[:, 2] == 0) | big).all() and 0.85 < big.mean() < 0.95  # areas 0.5 and 4.5
    inside = samples[big]
    assert (inside[:, :2] >= 0).all() and (inside[:, 0] + inside[:, 1] <= 3 + 1e-5).all()
    assert colours is not None and (colours[~big] == [255, 0, 0]).all()
    # Blended by where a sample lies: blue grows from 0 at the first corner to 255 on the far edge.
    assert np.allclose(colours[big, 2], 255 * (inside[:, 0] + inside[:, 1]) / 3, atol=1)


def test_voxel_cubes_are_closed_and_keep_their_cells() -> None:
    cells = np.array([[0, 0, 0], [31, 5, 7]])
    vertices, quads, index = geometry.voxel_cubes(cells)
    assert vertices.shape == (16, 3) and quads.shape == (12, 4) and len(index) == 12
    centres = vertices[quads].mean(axis=1)
    grid, outside, _ = geometry.grid_from_faces(index, centres)
    assert grid.sum() == 2 and outside == 0 and grid[31, 5, 7] and grid[0, 0, 0]
    # Where the faces are decides: the cubes squeezed to half size about the box centre move inwards,
    # a cube pushed out of the box is counted, one missing five faces keeps its cell.
    half, _, _ = geometry.grid_from_faces(index, centres * 0.5)
    assert half.sum() == 2 and half[8, 8, 8] and half[23, 10, 11]
    pushed, outside, _ = geometry.grid_from_faces(index, centres + np.array([0.0, 0.0, 0.9]))
    assert pushed.sum() == 1 and outside == 1
    assert geometry.grid_from_faces(index[:1], centres[:1])[0][0, 0, 0]
    # Painted cubes: each cell takes its faces' mean colour; cells without a cube stay black.
    face_colours = np.zeros((12, 3), np.uint8)
    face_colours[:6] = (255, 0, 0)
    face_colours[6:] = [(0, 0, 200)] * 3 + [(0, 0, 100)] * 3
    _, _, cell_colours = geometry.grid_from_faces(index, centres, face_colours)
    assert cell_colours is not None and cell_colours.shape == (32 ** 3, 3)
    assert tuple(cell_colours[0]) == (255, 0, 0) and tuple(cell_colours[31 * 1024 + 5 * 32 + 7]) == (0, 0, 150)
    assert int(cell_colours.any(axis=1).sum()) == 2
    edges = np.sort(np.concatenate([quads[:, [i, (i + 1) % 4]] for i in range(4)]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()
    # Outward normals: each quad's normal points away from its cube's centre.
    corners = vertices[quads]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    centre = vertices.reshape(2, 8, 3).mean(axis=1)[np.arange(12) // 6]
    assert (np.einsum("ij,ij->i", normal, corners.mean(axis=1) - centre) > 0).all()


@pytest.mark.parametrize("points, match", [
    (np.zeros((0, 3)), "no vertices"), (np.zeros((3, 3)), "at least 8"),
    (np.full((9, 3), np.nan), "9 of 9 points with NaN"), (np.ones((9, 3)), "same place"),
])
def test_unusable_points_are_named(points: np.ndarray, match: str) -> None:
    with pytest.raises(geometry.SourceError, match=match):
        geometry.check_points(points, "Thing")


def test_results_are_checked_before_anything_is_built() -> None:
    good_v, good_f = np.zeros((3, 3), np.float32), np.array([[0, 1, 2]], np.int32)
    assert geometry.check_result(good_v, good_f) == ""
    assert "empty" in geometry.check_result(good_v, good_f[:0])
    assert "NaN" in geometry.check_result(np.full((3, 3), np.nan, np.float32), good_f)
    assert "missing vertices" in geometry.check_result(good_v, good_f + 1)
    assert "not N x 3" in geometry.check_result(good_v[:, :2], good_f)
