"""A tiny dataset in the original layout, made by the tests: spheres and boxes with exact labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from blender_occnet.common.binvox import write_binvox


def _shape(kind: str, size: float, rng: np.random.Generator):
    def inside(p: np.ndarray) -> np.ndarray:
        if kind == "sphere":
            return np.linalg.norm(p, axis=1) <= size
        return (np.abs(p) <= size).all(axis=1)

    def surface(n: int) -> np.ndarray:
        d = rng.normal(size=(n, 3))
        if kind == "sphere":
            return size * d / np.linalg.norm(d, axis=1, keepdims=True)
        return size * d / np.abs(d).max(axis=1, keepdims=True)

    return inside, surface


def write_tiny_dataset(root: Path, per_category: int = 6, n_points: int = 4096, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    meta = {}
    for category in ("sphere", "box"):
        meta[category] = {"id": category, "name": category}
        ids = []
        for i in range(per_category):
            model_id = f"{category}_{i:03d}"
            ids.append(model_id)
            folder = root / category / model_id
            folder.mkdir(parents=True)
            inside, surface = _shape(category, float(rng.uniform(0.25, 0.45)), rng)
            uniform = rng.uniform(-0.55, 0.55, (n_points, 3))
            near = surface(n_points) + rng.normal(scale=0.02, size=(n_points, 3))
            for name, pts in (("points.npz", uniform), ("points_near.npz", near)):
                np.savez(folder / name, points=pts.astype(np.float16), occupancies=np.packbits(inside(pts)),
                         loc=np.zeros(3), scale=np.float64(1.0))
            cloud = surface(n_points)
            np.savez(folder / "pointcloud.npz", points=cloud.astype(np.float16),
                     normals=np.zeros_like(cloud, dtype=np.float16), loc=np.zeros(3), scale=np.float64(1.0))
            centres = (np.argwhere(np.ones((32,) * 3)) + 0.5) / 32 - 0.5
            write_binvox(folder / "model.binvox", inside(centres).reshape((32,) * 3))
        (root / category / "train.lst").write_text("\n".join(ids[: per_category - 2]))
        (root / category / "val.lst").write_text("\n".join(ids[per_category - 2: per_category - 1]))
        (root / category / "test.lst").write_text("\n".join(ids[per_category - 1:]))
    (root / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny"))
