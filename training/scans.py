"""Point clouds as scanners give them (issue 23): what a clean, evenly spread surface sample is turned into
before a training network sees it.

A scan is seen from a few directions (the far side missing), denser where the sensor was close, with holes
where it saw nothing (dark or shiny patches), noisy, and with a few stray points. The networks trained on
clean samples drew boxes from such input; these are the same shapes' samples degraded the ways a scan is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScanSettings:
    partial: float = 0.3  # chance that only the points seen from `views` directions are kept
    views: tuple[int, int] = (1, 3)  # the fewest and most directions a partial scan is seen from
    uneven: float = 0.5  # chance of a density that varies smoothly over the shape (up to `uneven_ratio`)
    uneven_ratio: float = 8.0
    holes: float = 0.4  # chance of one to four holes
    hole_radius: tuple[float, float] = (0.03, 0.12)  # of the shape's size (its longest edge is 1)
    outliers: float = 0.3  # chance of stray points, up to `outlier_share` of the cloud, anywhere in the box
    outlier_share: float = 0.01
    noise: tuple[float, float] = (0.0, 0.01)  # Gaussian noise's sigma, drawn uniformly, of the shape's size
    filled: float = 0.5  # voxel grids (voxel_scan): chance that a closed shell is filled inside, as a solid voxeliser


# What training.evaluate --scan measures: the points seen from one direction (as ConvONet's partial model is
# scored), with ONet's 0.005 input noise and nothing else; for voxel weights, the cells those points pass through.
EVALUATION_SCANS = {
    "partial": ScanSettings(partial=1.0, views=(1, 1), uneven=0.0, holes=0.0, outliers=0.0, noise=(0.005, 0.005),
                            filled=0.0),
}


def scan_like(points: np.ndarray, normals: np.ndarray, rng: np.random.Generator,
              settings: ScanSettings | None = None) -> np.ndarray:
    """Surface samples (N, 3) of a normalised shape with their outward normals -> a scan-like cloud (M, 3),
    M <= N plus the outliers; never fewer than 8 points of the surface."""
    settings = settings or ScanSettings()
    keep = np.ones(len(points), dtype=bool)
    if rng.random() < settings.partial:
        views = rng.normal(size=(int(rng.integers(settings.views[0], settings.views[1] + 1)), 3))
        views /= np.linalg.norm(views, axis=1, keepdims=True)
        # A point is seen from a direction when its surface faces it (no occlusion test: a concave shape
        # keeps a little more than a real scan would).
        keep &= ((normals @ views.T) > 0.05).any(axis=1)
    if rng.random() < settings.uneven:
        # A smooth density: a random low-frequency wave over the shape, mapped to [1 / ratio, 1].
        direction = rng.normal(size=3)
        wave = np.sin(points @ direction * rng.uniform(2.0, 6.0) + rng.uniform(0, 2 * np.pi))
        keep &= rng.random(len(points)) < settings.uneven_ratio ** ((wave - 1) / 2)
    if rng.random() < settings.holes:
        centres = points[rng.integers(len(points), size=int(rng.integers(1, 5)))]
        radii = rng.uniform(*settings.hole_radius, size=len(centres))
        for centre, radius in zip(centres, radii):
            keep &= np.linalg.norm(points - centre, axis=1) > radius
    if keep.sum() < 8:  # a degradation that left nothing: the clean sample instead
        keep[:] = True
    scan = points[keep]
    sigma = rng.uniform(*settings.noise)
    if sigma > 0:
        scan = scan + rng.normal(scale=sigma, size=scan.shape)
    if rng.random() < settings.outliers:
        count = int(rng.integers(1, max(2, int(settings.outlier_share * len(scan)) + 1)))
        scan = np.concatenate([scan, rng.uniform(-0.55, 0.55, size=(count, 3))])
    return scan


# Voxel grids made from scans (issue 23 item 2): a user voxelises a scan's points or its reconstructed mesh, and gets
# the cells the surface passes through (an open shell where the scan has gaps), or those filled in where the shell
# closes (ScanSettings.filled).


def voxel_scan(scan: np.ndarray, loc: np.ndarray, scale: float, resolution: int, rng: np.random.Generator,
               filled: float = ScanSettings.filled) -> np.ndarray:
    """A scan-like cloud (the dataset's frame) -> the (R, R, R) float32 grid of the cells it passes through in the
    box that `loc` and `scale` give (a shape's model.binvox box), filled inside where that shell closes with
    probability `filled`. Points outside the box are left out (a stray point there is not a voxel)."""
    cells = np.floor(((scan - loc) / scale + 0.5) * resolution).astype(np.int64)
    cells = cells[((cells >= 0) & (cells < resolution)).all(axis=1)]
    grid = np.zeros((resolution,) * 3, dtype=bool)
    grid[tuple(cells.T)] = True
    if rng.random() < filled:
        from scipy.ndimage import binary_fill_holes

        grid = binary_fill_holes(grid)
    return grid.astype(np.float32)
