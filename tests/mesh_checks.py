"""Checks on meshes that the tests and benchmarks make (the product never needs them): signed volume,
watertightness, and the volume IoU of two closed meshes on a grid (one ray per column of cells)."""

from __future__ import annotations

import numpy as np


def mesh_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume of a closed mesh (divergence theorem); positive for outward winding."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if not len(f):
        return 0.0
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def is_watertight(faces: np.ndarray) -> bool:
    """Every edge is used by exactly two faces, once in each direction (False for no faces)."""
    f = np.asarray(faces, dtype=np.int64)
    if f.ndim != 2 or f.shape[1] != 3 or not len(f):
        return False
    start = f.reshape(-1)
    end = f[:, [1, 2, 0]].reshape(-1)
    n = int(f.max()) + 1
    directed = start * n + end
    reverse = end * n + start
    directed_sorted = np.sort(directed)
    if (directed_sorted[1:] == directed_sorted[:-1]).any():
        return False  # an edge used twice in the same direction (or by more than two faces)
    return bool(np.array_equal(directed_sorted, np.sort(reverse)))


def inside_grid(
    vertices: np.ndarray, faces: np.ndarray, lower: np.ndarray, upper: np.ndarray, n: int
) -> np.ndarray:
    """(n, n, n) bool: which cell centres of the box [lower, upper] lie inside a closed mesh.

    Counts mesh crossings below each sample along a vertical ray (parity); each column of
    samples shares one ray, so the cost is about (faces + n**3) instead of faces * n**3.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    step = (upper - lower) / n
    # Odd offsets keep rays off the lattice planes that marching-cubes vertices lie on.
    jitter = (0.0123456789, 0.0314159265, 0.0)
    centres = [lower[d] + (np.arange(n) + 0.5 + jitter[d]) * step[d] for d in range(3)]
    if not len(f):
        return np.zeros((n, n, n), dtype=bool)

    p0, p1, p2 = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = (p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (p2[:, 0] - p0[:, 0])
    flip = area < 0  # orient every projected triangle counter-clockwise (parity ignores winding)
    p1, p2 = np.where(flip[:, None], p2, p1), np.where(flip[:, None], p1, p2)
    keep = area != 0  # vertical faces are never crossed by a vertical ray
    p0, p1, p2 = p0[keep], p1[keep], p2[keep]

    # Columns whose (x, y) may fall inside each triangle's bounding rectangle.
    xy = np.stack([p0[:, :2], p1[:, :2], p2[:, :2]])
    first = np.ceil((xy.min(axis=0) - [centres[0][0], centres[1][0]]) / step[:2]).astype(np.int64)
    last = np.floor((xy.max(axis=0) - [centres[0][0], centres[1][0]]) / step[:2]).astype(np.int64)
    first = np.maximum(first, 0)
    last = np.minimum(last, n - 1)
    count = np.maximum(last - first + 1, 0)
    per_face = count[:, 0] * count[:, 1]
    face = np.repeat(np.arange(len(p0)), per_face)
    k = np.arange(len(face)) - np.repeat(np.cumsum(per_face) - per_face, per_face)
    ci = first[face, 0] + k // np.maximum(count[face, 1], 1)
    cj = first[face, 1] + k % np.maximum(count[face, 1], 1)
    px, py = centres[0][ci], centres[1][cj]

    a, b, c = p0[face], p1[face], p2[face]

    def edge(s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = (e[:, 0] - s[:, 0]) * (py - s[:, 1]) - (e[:, 1] - s[:, 1]) * (px - s[:, 0])
        # Top-left rule: a ray exactly on an edge shared by two faces counts for exactly one.
        dx, dy = e[:, 0] - s[:, 0], e[:, 1] - s[:, 1]
        owns = (dy < 0) | ((dy == 0) & (dx < 0))
        return w, (w > 0) | ((w == 0) & owns)

    w0, in0 = edge(b, c)  # weight of a
    w1, in1 = edge(c, a)  # weight of b
    w2, in2 = edge(a, b)  # weight of c
    hit = in0 & in1 & in2
    total = w0 + w1 + w2
    z = (w0 * a[:, 2] + w1 * b[:, 2] + w2 * c[:, 2])[hit] / total[hit]
    column = (ci * n + cj)[hit]

    # Per column: number of crossings below each sample height -> inside when odd.  Sorting
    # keys "column + relative height" does all columns with one sort and one search.
    span = upper[2] - lower[2]
    keys = np.sort(column + 0.5 * np.clip((z - lower[2]) / span, 0.0, 1.0))
    first_in_column = np.searchsorted(keys, np.arange(n * n, dtype=np.float64))
    rel = 0.5 * (centres[2] - lower[2]) / span
    samples = np.arange(n * n, dtype=np.float64)[:, None] + rel[None, :]
    below = np.searchsorted(keys, samples.reshape(-1)).reshape(n * n, n) - first_in_column[:, None]
    return (below % 2 == 1).reshape(n, n, n)


def mesh_volume_iou(
    mesh_a: tuple[np.ndarray, np.ndarray], mesh_b: tuple[np.ndarray, np.ndarray], n: int = 128
) -> float:
    """Volume IoU of two closed meshes (vertices, faces), sampled on an n**3 grid over both."""
    va, vb = np.asarray(mesh_a[0], dtype=np.float64), np.asarray(mesh_b[0], dtype=np.float64)
    if not len(va) and not len(vb):
        return 1.0
    both = np.concatenate([va, vb])
    lower, upper = both.min(axis=0), both.max(axis=0)
    margin = 0.01 * (upper - lower).max() + 1e-9
    lower, upper = lower - margin, upper + margin
    ia = inside_grid(va, mesh_a[1], lower, upper, n)
    ib = inside_grid(vb, mesh_b[1], lower, upper, n)
    union = int((ia | ib).sum())
    return 1.0 if union == 0 else int((ia & ib).sum()) / union
