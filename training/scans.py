"""Point clouds as scanners give them (issue 23): what a clean, evenly spread surface sample is turned into
before a training network sees it.

A scan is seen from a few directions (the far side missing), denser where the sensor was close, with holes
where it saw nothing (dark or shiny patches), noisy, and with a few stray points; a line scanner's points come
in rows far apart, dense along each row. The networks trained on clean samples drew boxes from such input;
these are the same shapes' samples degraded the ways a scan is.
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
    # Chance that the points are a line scanner's (line_scan): not in the training mix yet, so 0 draws nothing.
    lines: float = 0.0
    line_views: tuple[int, int] = (2, 4)  # the fewest and most directions the rows are swept from
    line_spacing: tuple[float, float] = (0.02, 0.05)  # between rows, of the shape's size


# What training.evaluate --scan measures: the points seen from one direction (as ConvONet's partial model is
# scored), with ONet's 0.005 input noise and nothing else; for voxel weights, the cells those points pass through.
EVALUATION_SCANS = {
    "partial": ScanSettings(partial=1.0, views=(1, 1), uneven=0.0, holes=0.0, outliers=0.0, noise=(0.005, 0.005),
                            filled=0.0),
    # A line scanner's rows 0.035 apart, swept from three directions around and above (the underside unseen).
    "lines": ScanSettings(partial=0.0, uneven=0.0, holes=0.0, outliers=0.0, noise=(0.005, 0.005), filled=0.0,
                          lines=1.0, line_views=(3, 3), line_spacing=(0.035, 0.035)),
}


def scan_like(points: np.ndarray, normals: np.ndarray, rng: np.random.Generator,
              settings: ScanSettings | None = None) -> np.ndarray:
    """Surface samples (N, 3) of a normalised shape with their outward normals -> a scan-like cloud (M, 3),
    M <= N plus the outliers; never fewer than 8 points of the surface."""
    settings = settings or ScanSettings()
    keep = np.ones(len(points), dtype=bool)
    if settings.lines and rng.random() < settings.lines:  # no draw at 0: the training mix's stream stays as it was
        keep &= line_scan(points, rng, int(rng.integers(settings.line_views[0], settings.line_views[1] + 1)),
                          float(rng.uniform(*settings.line_spacing)))
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


LINE_WIDTH = 0.006  # a scanner row's sampling across and along it: about the spacing of 100,000 surface samples
# What a sensor sees: the nearest sample in each square of this side (seen from the sensor) and what lies within the
# tolerance behind it. Squares of twice LINE_WIDTH hold a few of 100,000 samples: a row's own cells are often
# empty on the near surface, and their nearest sample alone would show the far side through it.
OCCLUSION_CELL = 2 * LINE_WIDTH
OCCLUSION_TOLERANCE = 0.02


def line_scan(points: np.ndarray, rng: np.random.Generator, views: int, spacing: float) -> np.ndarray:
    """Which surface samples (N, 3) a line scanner returns, swept from `views` directions around the shape
    (10 to 35 degrees above it, each with its rows turned at random): a boolean mask over the samples."""
    keep = np.zeros(len(points), dtype=bool)
    start = rng.uniform(0, 2 * np.pi)
    for k in range(views):
        azimuth, elevation = start + 2 * np.pi * k / views, np.radians(rng.uniform(10, 35))
        towards = -np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation),
                             -np.cos(elevation) * np.cos(azimuth)])  # from the sensor to the shape
        keep |= sweep(points, towards, float(rng.uniform(-0.5, 0.5)), spacing, float(rng.uniform()))
    return keep


def sweep(points: np.ndarray, towards: np.ndarray, roll: float, spacing: float, offset: float) -> np.ndarray:
    """One sweep looking along `towards` (a unit vector, not vertical): parallel rows `spacing` apart (level
    across the view when `roll` is 0, else turned by it; `offset` in rows moves them), one point per
    LINE_WIDTH along a row: the sample nearest the sensor in that cell, where the surface in front of it
    does not hide it."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    right = np.cross(towards, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, towards)
    right, up = np.cos(roll) * right + np.sin(roll) * up, np.cos(roll) * up - np.sin(roll) * right
    depth, across, along = points @ towards, points @ up, points @ right
    square = _cell_keys(across / OCCLUSION_CELL, along / OCCLUSION_CELL)
    order = np.lexsort((depth, square))  # by square, nearest first
    starts = np.flatnonzero(np.r_[True, square[order][1:] != square[order][:-1]])
    front = np.empty(len(points))
    front[order] = np.repeat(depth[order][starts], np.diff(np.r_[starts, len(points)]))
    visible = depth <= front + OCCLUSION_TOLERANCE
    position = across / spacing + offset  # in rows
    row = np.round(position)
    in_row = np.flatnonzero(visible & (np.abs(position - row) * spacing < LINE_WIDTH / 2))
    cells = _cell_keys(row[in_row], along[in_row] / LINE_WIDTH)
    order = np.lexsort((depth[in_row], cells))  # by cell, nearest first
    first = np.r_[True, cells[order][1:] != cells[order][:-1]]
    keep = np.zeros(len(points), dtype=bool)
    keep[in_row[order[first]]] = True
    return keep


def _cell_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One int64 per cell of a 2D lattice: the floors of `a` and `b` (in cells) combined."""
    i, j = np.floor(a).astype(np.int64), np.floor(b).astype(np.int64)
    return (i - i.min()) * (j.max() - j.min() + 1) + (j - j.min()) if len(i) else i


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
