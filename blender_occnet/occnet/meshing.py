"""Marching cubes on a value grid (closed by padding, vertices in the box frame, outward winding)."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from skimage import measure

from ..common.errors import GenerationError, InputError

#: Value put around the grid so that the surface is always closed (as the original does).
PAD_VALUE = -1e6


def extract_mesh(
    value_grid: np.ndarray, threshold_logit: float, box_size: float = 1.1
) -> tuple[np.ndarray, np.ndarray]:
    """Iso-surface of `value_grid` at `threshold_logit`, in box coordinates.

    Grid index i (of n points per axis) maps to ``box_size * (i / (n - 1) - 0.5)``.  Values above
    the threshold are inside; faces are wound counter-clockwise seen from outside (normals point
    out).  Returns (vertices float32 (V, 3), faces int32 (F, 3)); both empty if there is no surface.
    """
    grid = np.asarray(value_grid)
    if grid.ndim != 3 or min(grid.shape) < 2:
        raise InputError(f"value grid must be 3-D with at least 2 points per axis, got shape {grid.shape}")
    if not np.issubdtype(grid.dtype, np.floating):
        grid = grid.astype(np.float64)
    thr = float(threshold_logit)
    if not np.isfinite(thr) or thr <= PAD_VALUE / 2:
        raise InputError(f"threshold must be a finite logit above {PAD_VALUE / 2:g}, got {threshold_logit!r}")
    if not np.isfinite(box_size) or box_size <= 0:
        raise InputError(f"box size must be a positive number, got {box_size!r}")
    n_bad = int((~np.isfinite(grid)).sum())
    if n_bad:
        raise GenerationError(f"the value grid holds {n_bad} NaN or infinite values of {grid.size}")

    empty = (np.zeros((0, 3), dtype=np.float32), np.zeros((0, 3), dtype=np.int32))
    if not (grid > thr).any():
        # skimage counts a value equal to the level as outside and raises when nothing is inside
        return empty
    # Pad with 'outside' only where the shape reaches the box's border, to close it there; otherwise the
    # grid is meshed as it is (a padded copy is another 0.5 GB at 512 cells).
    border = (grid[0], grid[-1], grid[:, 0], grid[:, -1], grid[:, :, 0], grid[:, :, -1])
    pad = int(any((face > thr).any() for face in border))
    padded = np.pad(grid, 1, mode="constant", constant_values=PAD_VALUE) if pad else grid
    # skimage shares one vertex per crossed lattice edge, so the mesh is closed as it comes.
    verts, faces, _, _ = measure.marching_cubes(padded, level=thr)
    if not len(faces):
        return empty
    # skimage winds faces clockwise seen from the larger values (normals point inwards for
    # "inside = larger"); swapping two corners turns them outwards.
    faces = faces[:, [0, 2, 1]]
    # skimage vertices are in index units of the (padded) array, without a half-voxel shift.
    scale = np.array(grid.shape, dtype=np.float64) - 1.0
    verts = box_size * ((verts.astype(np.float64) - pad) / scale - 0.5)
    return verts.astype(np.float32), np.ascontiguousarray(faces, dtype=np.int32)


def vertex_adjacency(faces: np.ndarray, count: int) -> sparse.csr_matrix:
    """(count, count) sparse matrix: entry (a, b) counts the faces whose edge joins vertices a and b."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    return sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count)).tocsr()


# Taubin's smoothing (a shrinking step, then an inflating one) keeps a mesh's size while it takes out the
# roughness a fitted mesh keeps from its noisy points: measured after the projection onto the points, 3 rounds
# raised normal consistency from 3,000 points by 0.03-0.07 (a knot 0.747 -> 0.813) with Chamfer-L1 unchanged, and
# from 20,000 points by up to 0.02 with Chamfer-L1 a little lower (BENCHMARKS.md, "Fitting", v8).
TAUBIN_SHRINK = 0.5
TAUBIN_INFLATE = -0.53


def neighbour_average(faces: np.ndarray, count: int) -> sparse.csr_matrix:
    """(count, count) sparse matrix whose product with per-vertex values gives each vertex its neighbours' mean,
    each neighbour weighing as many faces as share the edge (0 for a vertex no face uses)."""
    adjacency = vertex_adjacency(faces, count)
    degree = np.asarray(adjacency.sum(1)).ravel()
    return sparse.diags(1.0 / np.maximum(degree, 1.0)) @ adjacency


def taubin_smooth(vertices: np.ndarray, faces: np.ndarray, rounds: int) -> np.ndarray:
    """The vertices after `rounds` rounds of Taubin smoothing over the mesh's edges. Each neighbour weighs as
    many faces as share the edge: equal weights on a closed mesh (2), a boundary edge half an inner one."""
    if rounds <= 0 or len(faces) == 0:
        return vertices
    average = neighbour_average(faces, len(vertices))
    out = vertices.astype(np.float64)
    lonely = np.bincount(faces.ravel(), minlength=len(vertices)) == 0  # a vertex no face uses stays where it is
    for _ in range(rounds):
        for factor in (TAUBIN_SHRINK, TAUBIN_INFLATE):
            step = average @ out - out
            step[lonely] = 0.0
            out += factor * step
    return out.astype(vertices.dtype)
