"""The normals a scan comes with (a PLY's nx ny nz, an .npz's 'normals'): looked up anywhere as the nearest input
point's, for the winding-number guide (winding.py), which otherwise estimates and orients normals itself and
fails where two sides of a thin part lie closer than its neighbourhoods. numpy and scipy; no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..common.errors import InputError

# The source keeps at most this many points (a random subset beyond): the guide reads a few thousand normals.
MAX_NORMAL_POINTS = 1_000_000
MIN_NORMAL_POINTS = 8  # fewer usable normals than this: none


@dataclass
class NormalSource:
    """Points (in the source's frame, float64) and their unit normals ((M, 3) float32)."""

    points: np.ndarray
    normals: np.ndarray
    _tree: Any = field(default=None, repr=False)

    def at(self, points: np.ndarray) -> np.ndarray:
        """The normal of the source point nearest each of `points` (N, 3), in the source's frame."""
        if self._tree is None:
            from scipy.spatial import cKDTree

            centre = self.points.mean(axis=0)  # coordinates far from the origin (millimetres) keep their digits
            self._tree = (cKDTree(self.points - centre), centre)
        tree, centre = self._tree
        return self.normals[tree.query(np.asarray(points, np.float64) - centre, workers=-1)[1]]


def normal_source(points: np.ndarray, normals: np.ndarray, name: str = "normals",
                  seed: int = 0) -> NormalSource | None:
    """The points with a usable normal (finite, of non-zero length; a random MAX_NORMAL_POINTS beyond that), their
    normals made unit length; None when fewer than MIN_NORMAL_POINTS have one."""
    normals = np.asarray(normals)
    if normals.shape != (len(points), 3) or normals.dtype.kind != "f":
        raise InputError(f"{name}: normals must be one (nx, ny, nz) of floats per point, got {normals.shape} "
                         f"{normals.dtype} for {len(points):,} points")
    length = np.linalg.norm(normals.astype(np.float64), axis=1)
    coordinates = np.asarray(points[:, :3], np.float64)
    usable = np.flatnonzero(np.isfinite(coordinates).all(axis=1) & np.isfinite(length) & (length > 1e-12))
    if len(usable) < MIN_NORMAL_POINTS:
        return None
    if len(usable) > MAX_NORMAL_POINTS:
        usable = np.sort(np.random.default_rng(seed).choice(usable, MAX_NORMAL_POINTS, replace=False))
    unit = (normals[usable] / length[usable, None]).astype(np.float32)
    return NormalSource(coordinates[usable], unit)
