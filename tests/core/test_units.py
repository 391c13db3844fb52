"""Real units (issue 25 item 3): a scan in millimetres far from the origin comes back where it was, at its size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from blender_occnet.cli import main as cli_main
from blender_occnet.common.geometry import cell_size

CENTRE = np.array([5000.0, -3000.0, 200.0])  # millimetres: a scan in a room's coordinates
HALF = np.array([150.0, 100.0, 75.0])  # an ellipsoid 300 x 200 x 150 mm


def ellipsoid_scan(n: int = 6000) -> np.ndarray:
    d = np.random.default_rng(7).normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d * HALF + CENTRE


def test_a_millimetre_scan_far_from_the_origin_comes_back_in_place_at_its_size(tmp_path: Path) -> None:
    points = ellipsoid_scan()
    source = tmp_path / "scan.ply"
    trimesh.PointCloud(points).export(source)
    out = tmp_path / "scan_out.ply"
    assert cli_main(["reconstruct", str(source), "-o", str(out), "--resolution", "64", "--quiet"]) == 0
    vertices = np.asarray(trimesh.load(out, process=False).vertices)
    cell = cell_size(2 * HALF.max(), 64)  # 5.2 mm
    assert abs(cell - 300 * 1.1 / 64) < 1e-9
    # The result's box is the scan's, to within two cells on every side: in place, at its size, in millimetres.
    assert np.allclose(vertices.min(axis=0), points.min(axis=0), atol=2 * cell)
    assert np.allclose(vertices.max(axis=0), points.max(axis=0), atol=2 * cell)
    # And it lies on the scan: every vertex within two cells of the ellipsoid's surface.
    radius = np.linalg.norm((vertices - CENTRE) / HALF, axis=1)
    assert np.abs(radius - 1).max() * HALF.min() < 2 * cell
