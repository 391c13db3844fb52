"""Voxelise a triangle mesh: a cell is filled when its centre is inside or the surface passes through it.

Inside test: rays along x, y and z through every row of cell centres. Each of the six half-rays from a
centre (+x, -x, ...) says "inside" when it crosses the surface an odd number of times, and the six vote.
Parity needs no consistent face orientation, and the vote keeps holes of non-watertight meshes from
leaking: a ray through a hole makes its two halves disagree, and the other axes decide. Surface cells (the reference marks every cell a
triangle touches) come from dense surface samples. The work is per triangle and ray, vectorised.
"""

from __future__ import annotations

import numpy as np

from .meshio import MeshData, sample_surface

# Rays pass a tiny irrational offset away from cell centres so they never hit an edge or vertex exactly.
_RAY_JITTER = np.array([1.2345e-5 * np.pi, 1.2345e-5 * np.e])


def voxelize_mesh(mesh: MeshData, resolution: int = 32, lo: float = -0.5, hi: float = 0.5,
                  surface_samples: int = 200_000) -> np.ndarray:
    """Boolean [x, y, z] grid of `resolution`^3 cells covering the cube [lo, hi]^3."""
    cell = (hi - lo) / resolution
    # Vertices in cell units: cell centres sit at integer positions 0 .. resolution-1.
    grid_vertices = (mesh.vertices - lo) / cell - 0.5
    votes = np.zeros((resolution,) * 3, dtype=np.int8)
    if len(mesh.faces):
        for axis in range(3):
            votes += _inside_votes_along_axis(grid_vertices, mesh.faces, resolution, axis)
    occupied = votes >= 4  # a majority of the six half-rays
    if len(mesh.faces):
        surface = np.concatenate([sample_surface(mesh, surface_samples), mesh.vertices])
    else:
        surface = mesh.vertices
    idx = np.floor((surface - lo) / cell).astype(np.int64)
    keep = np.all((idx >= 0) & (idx < resolution), axis=1)
    idx = idx[keep]
    occupied[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return occupied


CANDIDATES_PER_CHUNK = 1 << 20  # (triangle, ray) pairs held at once: about 100 MB of temporaries


def _add_crossings(crossings: np.ndarray, faces_: np.ndarray, per_face: np.ndarray, count_u: np.ndarray,
                   lo_u: np.ndarray, lo_w: np.ndarray, pu: np.ndarray, pw: np.ndarray, pa: np.ndarray,
                   n: int) -> None:
    """Count where the rays of these faces' candidate columns cross them (into `crossings`)."""
    face = np.repeat(faces_, per_face[faces_])
    if not len(face):
        return
    starts = np.cumsum(per_face[faces_]) - per_face[faces_]
    local = np.arange(len(face)) - np.repeat(starts, per_face[faces_])
    iu = lo_u[face] + local % count_u[face]
    iw = lo_w[face] + local // count_u[face]
    ru, rw = iu + _RAY_JITTER[0], iw + _RAY_JITTER[1]
    # 2D barycentric coordinates of the ray in the projected triangle.
    a_u, a_w = pu[face, 0], pw[face, 0]
    e1u, e1w = pu[face, 1] - a_u, pw[face, 1] - a_w
    e2u, e2w = pu[face, 2] - a_u, pw[face, 2] - a_w
    det = e1u * e2w - e2u * e1w
    du, dw = ru - a_u, rw - a_w
    with np.errstate(divide="ignore", invalid="ignore"):
        b1 = (du * e2w - e2u * dw) / det
        b2 = (e1u * dw - du * e1w) / det
        hit = (det != 0) & (b1 >= 0) & (b2 >= 0) & (b1 + b2 <= 1)
    face, iu, iw, b1, b2 = face[hit], iu[hit], iw[hit], b1[hit], b2[hit]
    t = pa[face, 0] + b1 * (pa[face, 1] - pa[face, 0]) + b2 * (pa[face, 2] - pa[face, 0])
    # A crossing at t lies ahead of centres 0 .. ceil(t)-1.
    first_behind = np.clip(np.ceil(t), 0, n).astype(np.int64)
    np.add.at(crossings, (iu, iw, first_behind), 1)


def _inside_votes_along_axis(v: np.ndarray, faces: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Votes (0, 1 or 2) of the two half-rays along `axis` from each cell centre, as an int8 grid."""
    u_axis, w_axis = [a for a in range(3) if a != axis]
    tri = v[faces]  # (F, 3, 3)
    pu, pw, pa = tri[:, :, u_axis], tri[:, :, w_axis], tri[:, :, axis]
    # Candidate ray columns (iu, iw) per triangle: the integer points in its projected bounding box.
    lo_u = np.clip(np.ceil(pu.min(1) - _RAY_JITTER[0]), 0, n).astype(np.int64)
    hi_u = np.clip(np.floor(pu.max(1) - _RAY_JITTER[0]), -1, n - 1).astype(np.int64)
    lo_w = np.clip(np.ceil(pw.min(1) - _RAY_JITTER[1]), 0, n).astype(np.int64)
    hi_w = np.clip(np.floor(pw.max(1) - _RAY_JITTER[1]), -1, n - 1).astype(np.int64)
    count_u = np.maximum(hi_u - lo_u + 1, 0)
    count_w = np.maximum(hi_w - lo_w + 1, 0)
    per_face = count_u * count_w
    crossings = np.zeros((n, n, n + 1), dtype=np.int32)  # [iu, iw, index of first centre behind]
    if per_face.sum() == 0:
        return np.zeros((n, n, n), dtype=np.int8)
    # (triangle, ray) candidates a bounded number at a time: memory follows the grid, not the triangles'
    # projected area times their count (50,000 triangles spanning the grid are 51 million candidates).
    ends = np.cumsum(per_face)
    begin = 0
    while begin < len(faces):
        stop = int(np.searchsorted(ends, (ends[begin - 1] if begin else 0) + CANDIDATES_PER_CHUNK, side="right"))
        stop = max(stop, begin + 1)
        _add_crossings(crossings, np.arange(begin, stop), per_face, count_u, lo_u, lo_w, pu, pw, pa, n)
        begin = stop
    ahead = np.cumsum(crossings[:, :, ::-1], axis=2)[:, :, ::-1][:, :, 1:]  # crossings with index > i
    behind = crossings.sum(axis=2, keepdims=True) - ahead
    votes = (ahead % 2 + behind % 2).astype(np.int8)  # [iu, iw, a]
    # Back to [x, y, z] order.
    order = [0, 0, 0]
    order[u_axis], order[w_axis], order[axis] = 0, 1, 2
    return np.transpose(votes, order)
