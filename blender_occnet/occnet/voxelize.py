"""Voxelise a triangle mesh: a cell is filled when its centre is inside or the surface passes through it.

Inside test: occnet.inside's six half-rays from every cell centre (the centres of a row share one ray),
which tolerates holes and inconsistent winding. Surface cells (the reference marks every cell a triangle
touches) come from dense surface samples.
"""

from __future__ import annotations

import numpy as np

from ..common import geometry
from .inside import contains
from .meshio import MeshData


def voxelize_mesh(mesh: MeshData, resolution: int = 32, lo: float = -0.5, hi: float = 0.5,
                  surface_samples: int = 200_000) -> np.ndarray:
    """Boolean [x, y, z] grid of `resolution`^3 cells covering the cube [lo, hi]^3."""
    cell = (hi - lo) / resolution
    # In cell units (cell centres at the integers 0 .. resolution-1), so a row's centres share a ray exactly.
    centres = np.indices((resolution,) * 3, dtype=np.float64).reshape(3, -1).T
    occupied = contains((mesh.vertices - lo) / cell - 0.5, mesh.faces, centres).reshape((resolution,) * 3)
    if len(mesh.faces):
        samples, _ = geometry.sample_surface(mesh.vertices, mesh.faces, surface_samples)
        surface = np.concatenate([samples, mesh.vertices])
    else:
        surface = mesh.vertices
    idx = np.floor((surface - lo) / cell).astype(np.int64)
    keep = np.all((idx >= 0) & (idx < resolution), axis=1)
    idx = idx[keep]
    occupied[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return occupied
