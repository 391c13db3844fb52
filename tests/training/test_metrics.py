"""The metrics on analytic cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from training.metrics import inside_mesh, iou, sample_mesh, surface_metrics


def sphere(radius: float, subdivisions: int = 5) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)


@pytest.fixture(scope="module")
def uniform_points() -> np.ndarray:
    return np.random.default_rng(0).uniform(-0.55, 0.55, (200_000, 3))


def test_inside_mesh_matches_analytic_sphere_and_cube(uniform_points: np.ndarray) -> None:
    s = sphere(0.4)
    inside = inside_mesh(s.vertices, s.faces, uniform_points)
    r = np.linalg.norm(uniform_points, axis=1)
    clear = np.abs(r - 0.4) > 0.002  # the polygonal sphere differs from the true one by < 0.001
    assert np.array_equal(inside[clear], (r < 0.4)[clear])
    cube = trimesh.creation.box(extents=(0.6, 0.6, 0.6))
    inside = inside_mesh(cube.vertices, cube.faces, uniform_points)
    assert np.array_equal(inside, (np.abs(uniform_points) < 0.3).all(axis=1))


def test_sphere_against_itself(uniform_points: np.ndarray) -> None:
    s = sphere(0.4)
    a, b = sample_mesh(s.vertices, s.faces, 50_000, seed=1), sample_mesh(s.vertices, s.faces, 50_000, seed=2)
    metrics = surface_metrics(a, b)
    # Two independent 50k samples of the same surface: half the sample spacing apart on average.
    assert metrics["chamfer_l1"] < 0.005 and metrics["f_score"] > 0.999
    assert metrics["normal_consistency"] > 0.99
    inside = inside_mesh(s.vertices, s.faces, uniform_points)
    assert iou(inside, inside) == 1.0


def test_sphere_against_a_larger_sphere(uniform_points: np.ndarray) -> None:
    small, large = sphere(0.30), sphere(0.33)
    metrics = surface_metrics(sample_mesh(small.vertices, small.faces, 50_000),
                              sample_mesh(large.vertices, large.faces, 50_000, seed=3))
    # Every point is 0.03 from the other surface (plus sampling spacing of ~0.002).
    assert metrics["chamfer_l1"] == pytest.approx(0.03, abs=0.003)
    assert metrics["chamfer_l1_x10"] == pytest.approx(10 * metrics["chamfer_l1"])
    assert metrics["f_score"] < 0.05  # 0.03 is beyond the 0.01 threshold
    assert metrics["normal_consistency"] > 0.99  # concentric: the normals agree
    a = inside_mesh(small.vertices, small.faces, uniform_points)
    b = inside_mesh(large.vertices, large.faces, uniform_points)
    assert iou(a, b) == pytest.approx((0.30 / 0.33) ** 3, abs=0.01)


def test_cube_against_inscribed_sphere(uniform_points: np.ndarray) -> None:
    cube, s = trimesh.creation.box(extents=(0.8, 0.8, 0.8)), sphere(0.4)
    a = inside_mesh(cube.vertices, cube.faces, uniform_points)
    b = inside_mesh(s.vertices, s.faces, uniform_points)
    assert iou(a, b) == pytest.approx(np.pi / 6, abs=0.01)  # sphere volume / cube volume
    metrics = surface_metrics(sample_mesh(cube.vertices, cube.faces, 50_000), sample_mesh(s.vertices, s.faces, 50_000))
    assert 0.02 < metrics["chamfer_l1"] < 0.12 and metrics["normal_consistency"] < 0.95
