"""The organic shapes (training/shapes/organic.py): closed, outward, normalised meshes whose inside test agrees
with them, reproducible from their seed, and written in the dataset's layout beside the man-made ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blender_occnet.occnet.inside import contains
from training.data import ShapeDataset
from training.shapes import ALL_CATEGORIES, CATEGORIES, ORGANIC_CATEGORIES, build_dataset, generate_organic
from training.shapes.writer import Settings


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6)


@pytest.mark.parametrize("category", ORGANIC_CATEGORIES)
def test_an_organic_shape_is_a_closed_normalised_solid(category: str) -> None:
    shape = generate_organic(category, np.random.default_rng([11, len(category)]))
    vertices, faces = shape.vertices, shape.faces
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    assert (np.unique(edges, axis=0, return_counts=True)[1] == 2).all()  # watertight
    assert signed_volume(vertices, faces) > 0  # wound outward
    extent = vertices.max(axis=0) - vertices.min(axis=0)
    assert extent.max() == pytest.approx(1.0, abs=1e-6)
    assert np.allclose((vertices.max(axis=0) + vertices.min(axis=0)) / 2, 0, atol=1e-6)
    probes = np.random.default_rng(1).uniform(-0.55, 0.55, (20_000, 3))
    agree = shape.contains(probes) == contains(vertices, faces, probes, robust=False)
    assert agree.mean() >= 0.995
    points, normals = shape.sample_surface(2000, np.random.default_rng(2))
    assert (~shape.contains(points + 0.01 * normals)).mean() > 0.97  # a step out is outside
    assert shape.contains(points - 0.005 * normals).mean() > 0.9  # a step in is inside (walls are thin)


def test_organic_shapes_come_from_their_seed_and_differ_between_seeds() -> None:
    one = generate_organic("creature", np.random.default_rng([3, 1]))
    again = generate_organic("creature", np.random.default_rng([3, 1]))
    other = generate_organic("creature", np.random.default_rng([3, 2]))
    assert np.array_equal(one.vertices, again.vertices)
    assert len(one.vertices) != len(other.vertices) or not np.allclose(one.vertices, other.vertices)


def test_the_builder_writes_organic_models_the_loader_reads(tmp_path: Path) -> None:
    settings = Settings(n_uniform=2048, n_surface=2048, voxel_surface_samples=4096)
    counts = build_dataset(tmp_path, ["blob", "shell"], per_category=2, settings=settings, progress=False)
    assert counts == {"written": 4, "skipped": 0}
    dataset = ShapeDataset(tmp_path, "train", "pointcloud", n_input_points=300)
    item = dataset.item(0, np.random.default_rng(0))
    assert item["inputs"].shape == (300, 3) and 0.05 < item["occ"].mean() < 0.95
    assert ALL_CATEGORIES[:len(CATEGORIES)] == CATEGORIES  # the man-made ones keep their seeds
