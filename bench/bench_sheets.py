#!/usr/bin/env python
"""Open surfaces scanned from the front (a relief, a terrain patch, a facade with a ledge and a door), against the
true sheet: the fitted mesh closed (the default), with Trim unseen, and screened Poisson (bench_quality's methods).

    .venv/bin/python bench/bench_sheets.py [--quick] [--points 30000] [--pictures out/sheets]

The networks learned closed solids; a scan of a wall has no back and no thickness. Printed per sheet: Chamfer-L1
x10, F@1%, accuracy (mesh to truth) and completeness (truth to mesh) x10, normal consistency.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import BENCH_TRIM_UNSEEN, Network, open3d_missing, picture, poisson  # noqa: E402

from training.metrics import SurfaceSample, sample_mesh, surface_metrics  # noqa: E402

Height = Callable[[np.ndarray, np.ndarray], np.ndarray]
WIDTH, HEIGHT = 1.0, 0.7  # the sheet spans u in [-0.5, 0.5], v in [-0.35, 0.35]; depth along y
NOISE = 0.002
SAMPLES = 100_000


def relief(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Two rounded bumps standing out of a wall panel (towards the scanner, -y)."""
    return (-0.12 * np.exp(-((u - 0.15) ** 2 + v ** 2) / 0.02)
            - 0.07 * np.exp(-((u + 0.22) ** 2 + (v - 0.1) ** 2) / 0.012))


def terrain(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rolling ground seen from above."""
    return 0.05 * np.sin(7 * u) * np.cos(5 * v) + 0.03 * np.sin(13 * u + 3 * v)


def facade(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A wall with a ledge 0.06 deep and a door set 0.05 back: steps, not slopes."""
    depth = np.zeros_like(u)
    depth[(v > 0.1) & (v < 0.14)] = -0.06
    depth[(np.abs(u) < 0.12) & (v < -0.05)] = 0.05
    return depth


SHEETS: dict[str, Height] = {"relief": relief, "terrain": terrain, "facade": facade}


def scan(height: Height, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` points spread evenly over the sheet as seen from the front, with NOISE."""
    u, v = rng.uniform(-WIDTH / 2, WIDTH / 2, count), rng.uniform(-HEIGHT / 2, HEIGHT / 2, count)
    points = np.stack([u, height(u, v), v], 1)
    return (points + rng.normal(scale=NOISE, size=points.shape)).astype(np.float32)


def truth(height: Height) -> SurfaceSample:
    """Samples of the sheet itself: a fine grid over it, triangulated, sampled by area."""
    u, v = np.meshgrid(np.linspace(-WIDTH / 2, WIDTH / 2, 300), np.linspace(-HEIGHT / 2, HEIGHT / 2, 210),
                       indexing="ij")
    grid = np.stack([u, height(u, v), v], -1).reshape(-1, 3)
    index = np.arange(u.size).reshape(u.shape)
    a, b, c, d = (index[:-1, :-1].ravel(), index[1:, :-1].ravel(), index[1:, 1:].ravel(),
                  index[:-1, 1:].ravel())
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return sample_mesh(grid, faces, SAMPLES, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=30_000)
    parser.add_argument("--quick", action="store_true", help="the relief only")
    parser.add_argument("--pictures", type=Path)
    args = parser.parse_args(argv)
    if open3d_missing():
        return 1
    import torch

    torch.set_num_threads(2)
    network = Network()
    methods = {"fitted": network.method("on"), "fitted_trimmed": network.method("on", BENCH_TRIM_UNSEEN),
               "poisson": poisson}
    print("| sheet | method | CD-L1 x10 | F@1% | accuracy x10 | completeness x10 | NC |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, height in SHEETS.items():
        if args.quick and name != "relief":
            continue
        points = scan(height, args.points, np.random.default_rng(0))
        true = truth(height)
        meshes = {}
        for method, run in methods.items():
            meshes[method] = run(points)[0]
            m = surface_metrics(sample_mesh(*meshes[method], SAMPLES), true)
            print(f"| {name} | {method} | {10 * m['chamfer_l1']:.4f} | {m['f_score']:.3f} | {10 * m['accuracy']:.4f} | "
                  f"{10 * m['completeness']:.4f} | {m['normal_consistency']:.3f} |", flush=True)
        if args.pictures is not None:
            picture(args.pictures / f"{name}.png", points, true, meshes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
