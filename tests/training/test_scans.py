"""Scan-like training inputs (training/scans.py): each degradation does what a scanner does, and a dataset
without them draws exactly what it drew before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from tests.training.test_train import small_config
from training.data import ShapeDataset
from training.evaluate import evaluate
from training.export import export_run
from training.scans import EVALUATION_SCANS, LINE_WIDTH, ScanSettings, line_scan, scan_like, sweep
from training.train import train

NONE = ScanSettings(partial=0, uneven=0, holes=0, outliers=0, noise=(0.0, 0.0))


def sphere(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    d = np.random.default_rng(seed).normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return 0.5 * d, d


def spacing_spread(cloud: np.ndarray) -> float:
    """How unevenly a cloud covers the sphere: its densest over its sparsest places (95th over 5th percentile
    of the points within 0.1 of 300 places spread over the sphere)."""
    places = sphere(300, 7)[0]
    counts = np.array([len(found) for found in cKDTree(cloud).query_ball_point(places, 0.1)])
    return float(np.percentile(counts, 95) / max(np.percentile(counts, 5), 1))


def test_each_degradation_as_a_scanner_makes_it() -> None:
    points, normals = sphere(20_000)
    rng = np.random.default_rng(1)
    assert np.array_equal(scan_like(points, normals, rng, NONE), points)

    seen = scan_like(points, normals, rng, ScanSettings(partial=1, uneven=0, holes=0, outliers=0, noise=(0, 0)))
    assert 0.15 * len(points) < len(seen) < 0.9 * len(points)  # one to three sides of a sphere

    uneven = scan_like(points, normals, rng, ScanSettings(partial=0, uneven=1, holes=0, outliers=0, noise=(0, 0)))
    uniform_subset = points[np.random.default_rng(2).choice(len(points), len(uneven), replace=False)]
    assert len(uneven) < len(points) and spacing_spread(uneven) > 1.3 * spacing_spread(uniform_subset)

    holed = scan_like(points, normals, rng, ScanSettings(partial=0, uneven=0, holes=1, hole_radius=(0.1, 0.1),
                                                         outliers=0, noise=(0, 0)))
    assert len(holed) < len(points)
    assert set(map(tuple, holed)) <= set(map(tuple, points))  # holes only remove

    noisy = scan_like(points, normals, rng, ScanSettings(partial=0, uneven=0, holes=0, outliers=0,
                                                         noise=(0.01, 0.01)))
    assert abs(np.abs(np.linalg.norm(noisy, axis=1) - 0.5).mean() - 0.01 * np.sqrt(2 / np.pi)) < 0.001

    strays = scan_like(points, normals, rng, ScanSettings(partial=0, uneven=0, holes=0, outliers=1,
                                                          noise=(0, 0)))
    far = np.abs(np.linalg.norm(strays, axis=1) - 0.5) > 1e-6
    assert 1 <= far.sum() <= 0.01 * len(points) + 1 and np.abs(strays).max() <= 0.55


def test_a_dataset_without_scans_draws_as_before(tiny_dataset: Path) -> None:
    plain = ShapeDataset(tiny_dataset, "train", "pointcloud", n_input_points=300, pointcloud_noise=0.005)
    scans = ShapeDataset(tiny_dataset, "train", "pointcloud", n_input_points=300, pointcloud_noise=0.005,
                         scan_like=1.0)
    off = ShapeDataset(tiny_dataset, "train", "pointcloud", n_input_points=300, pointcloud_noise=0.005,
                       scan_like=0.0)
    a = plain.item(0, np.random.default_rng(5))
    b = off.item(0, np.random.default_rng(5))
    c = scans.item(0, np.random.default_rng(5))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["inputs"], c["inputs"]) and c["inputs"].shape == (300, 3)


def test_the_partial_evaluation_scan_sees_one_side_and_evaluate_scores_it(tmp_path: Path,
                                                                            tiny_dataset: Path) -> None:
    points, normals = sphere(20_000)
    for seed in range(5):
        seen = scan_like(points, normals, np.random.default_rng(seed), EVALUATION_SCANS["partial"])
        # One direction of a sphere: a cap a little short of half, all its normals within 90 degrees of one.
        mean_normal = (seen / np.linalg.norm(seen, axis=1, keepdims=True)).mean(axis=0)
        assert 0.4 * len(points) < len(seen) < 0.5 * len(points)
        assert np.linalg.norm(mean_normal) > 0.45

    config = small_config(tmp_path, tiny_dataset, max_steps=4, validate_every=4)
    train(config, progress=False)
    export_run(config.training.out_dir, tmp_path / "w.safetensors")
    whole = evaluate(tmp_path / "w.safetensors", tiny_dataset, resolution=32, surface_samples=2000, progress=False)
    partial = evaluate(tmp_path / "w.safetensors", tiny_dataset, resolution=32, surface_samples=2000,
                       progress=False, scan="partial")
    assert partial["scan"] == "partial" and "scan" not in whole
    assert partial["mean"]["iou"] != whole["mean"]["iou"]  # other inputs, another reconstruction


def test_a_voxelised_scan_is_its_surface_s_cells_filled_where_the_shell_closes(tiny_dataset: Path) -> None:
    """A sphere's dense surface voxelised: the shell lies on the solid's boundary and, filled, is that solid; a
    one-sided scan's shell stays open (nothing to fill). A dataset's voxel inputs are made so with scan_like."""
    from training.scans import voxel_scan

    points, normals = sphere(60_000)
    points, loc, scale = points * 0.6, np.zeros(3), 1.0  # radius 0.3 in the unit box
    centres = (np.indices((32, 32, 32)).reshape(3, -1).T + 0.5) / 32 - 0.5
    truth = (np.linalg.norm(centres, axis=1) <= 0.3).reshape(32, 32, 32)
    rng = np.random.default_rng(0)
    shell = voxel_scan(points, loc, scale, 32, rng, filled=0.0).astype(bool)
    filled = voxel_scan(points, loc, scale, 32, rng, filled=1.0).astype(bool)
    assert filled.sum() > 2 * shell.sum() and (shell & ~filled).sum() == 0  # the inside came in
    # Every cell the surface passes through counts, so the grid is the solid and its boundary's outer half.
    assert (truth & ~filled).sum() == 0 and (filled & truth).sum() / (filled | truth).sum() > 0.75
    partial = scan_like(points, normals, rng, ScanSettings(partial=1.0, views=(1, 1), uneven=0, holes=0,
                                                           outliers=0, noise=(0, 0)))
    open_shell = voxel_scan(partial, loc, scale, 32, rng, filled=1.0)
    assert 0 < open_shell.sum() < 0.7 * shell.sum()
    outside = voxel_scan(np.array([[0.9, 0.0, 0.0], [0.0, 0.0, 0.0]]), loc, scale, 32, rng, filled=0.0)
    assert outside.sum() == 1  # a point outside the box is no voxel

    voxels = ShapeDataset(tiny_dataset, "train", "voxels", scan_like=1.0)
    plain = ShapeDataset(tiny_dataset, "train", "voxels")
    made, original = voxels.item(0, np.random.default_rng(3)), plain.item(0, np.random.default_rng(3))
    assert made["inputs"].shape == (32, 32, 32) and not np.array_equal(made["inputs"], original["inputs"])
    assert set(np.unique(made["inputs"])) <= {0.0, 1.0} and made["occ"].shape == original["occ"].shape


def test_evaluate_scores_voxel_weights_on_the_grid_of_a_one_sided_scan(tiny_dataset: Path) -> None:
    weights = Path(__file__).parents[2] / "blender_occnet" / "weights" / "voxels.safetensors"
    whole = evaluate(weights, tiny_dataset, resolution=32, surface_samples=2000, progress=False)
    partial = evaluate(weights, tiny_dataset, resolution=32, surface_samples=2000, progress=False, scan="partial")
    # The input is half a shell: the grid itself covers much less of the shape. (Not the network's score: the
    # bundled voxel network learned such grids, and on this fixture's two shapes it scores them no worse.)
    assert partial["scan"] == "partial" and partial["mean"]["input_iou"] < 0.6 * whole["mean"]["input_iou"]
    assert 0.0 < partial["mean"]["iou"] <= 1.0


def test_a_line_scanner_returns_rows_of_the_near_surface_only() -> None:
    """Two sheets facing a sensor that looks straight down -z: its rows (level, 0.05 apart) lie on the near
    sheet, one point per LINE_WIDTH along each; the far sheet is hidden behind it."""
    rng = np.random.default_rng(3)
    near = np.c_[rng.uniform(-0.4, 0.4, (200_000, 2)), np.zeros(200_000)]
    far = near - [0.0, 0.0, 0.1]
    points = np.concatenate([near, far])
    seen = points[sweep(points, np.array([0.0, 0.0, -1.0]), roll=0.0, spacing=0.05, offset=0.25)]
    assert np.all(seen[:, 2] == 0.0)  # the near sheet only
    phase = (seen[:, 1] / 0.05 + 0.25) % 1  # rows at y = (k - 0.25) * 0.05
    assert np.all(np.minimum(phase, 1 - phase) * 0.05 < LINE_WIDTH / 2)
    rows = np.unique(np.round(seen[:, 1] / 0.05 + 0.25))
    assert len(rows) == 16  # 0.8 / 0.05 rows across the sheet
    per_row = len(seen) / len(rows)
    assert 0.9 * 0.8 / LINE_WIDTH < per_row <= 0.8 / LINE_WIDTH + 2  # one point per cell, every cell hit

    assert sweep(np.zeros((0, 3)), np.array([0.0, 0.0, -1.0]), 0.0, 0.05, 0.0).shape == (0,)  # nothing to see

    sphere_points, sphere_normals = sphere(100_000)
    scanned = scan_like(sphere_points, sphere_normals, np.random.default_rng(4), EVALUATION_SCANS["lines"])
    assert 0.03 * len(sphere_points) < len(scanned) < 0.3 * len(sphere_points)
    kept = line_scan(sphere_points, np.random.default_rng(4), views=1, spacing=0.035)
    facing = sphere_normals[kept] @ sphere_normals[kept].mean(axis=0)
    assert (facing > -0.1).mean() > 0.98  # a sweep sees one side of the sphere
