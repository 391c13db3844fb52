"""Inside tests of triangle meshes at arbitrary points, robust to holes and inconsistent winding.

Rays along +-x, +-y and +-z from each point; each half-ray says "inside" when it crosses the surface
an odd number of times, and the six vote. Parity needs no face orientation, and a ray through a hole
of a non-watertight mesh disagrees with its opposite half, so the other axes decide. (Generalised
winding numbers are the principled alternative, but without a tree code they cost points x faces.)
Candidate triangles per ray come from a 2D hash of the triangles' projected bounding boxes.
"""

from __future__ import annotations

import numpy as np

_JITTER = np.array([1.23456789e-7, 3.14159265e-7])  # keeps rays off edges shared by two triangles


def crossings(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, axis: int = 2, cells: int = 64,
              chunk: int = 4_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Number of triangles crossed by the ray from each point towards +axis and towards -axis."""
    points = np.asarray(points, dtype=np.float64)
    ahead = np.zeros(len(points), dtype=np.int64)
    behind = np.zeros(len(points), dtype=np.int64)
    if len(faces) == 0 or len(points) == 0:
        return ahead, behind
    plane = [a for a in range(3) if a != axis]
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    tri = tri[..., plane + [axis]]  # the ray axis last
    pts = points[:, plane + [axis]]
    ray = pts[:, :2] + _JITTER
    lo = np.minimum(ray.min(axis=0), tri[:, :, :2].min(axis=(0, 1)))
    size = np.maximum(ray.max(axis=0), tri[:, :, :2].max(axis=(0, 1))) - lo + 1e-9

    def to_cell(xy: np.ndarray) -> np.ndarray:
        return np.clip(((xy - lo) / size * cells).astype(np.int64), 0, cells - 1)

    # Points sorted by cell, so a cell's points are one contiguous range.
    point_cell = to_cell(ray)
    point_key = point_cell[:, 0] * cells + point_cell[:, 1]
    order = np.argsort(point_key, kind="stable")
    starts = np.searchsorted(point_key[order], np.arange(cells * cells + 1))
    # The cells each triangle's projected bounding box covers.
    c0, c1 = to_cell(tri[:, :, :2].min(axis=1)), to_cell(tri[:, :, :2].max(axis=1))
    span = c1 - c0 + 1
    per_face = span[:, 0] * span[:, 1]
    face = np.repeat(np.arange(len(tri)), per_face)
    k = np.arange(len(face)) - np.repeat(np.cumsum(per_face) - per_face, per_face)
    key = (c0[face, 0] + k // span[face, 1]) * cells + c0[face, 1] + k % span[face, 1]
    counts = starts[key + 1] - starts[key]
    # (triangle, point) candidate pairs, a bounded number at a time.
    step = max(1, chunk // max(1, int(np.ceil(counts.mean()))))
    for begin in range(0, len(key), step):
        keys, faces_, n = key[begin:begin + step], face[begin:begin + step], counts[begin:begin + step]
        within = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        p_idx = order[np.repeat(starts[keys], n) + within]
        hit, depth = _hits(tri[np.repeat(faces_, n)], ray[p_idx])
        ahead += np.bincount(p_idx[hit & (depth > pts[p_idx, 2])], minlength=len(points))
        behind += np.bincount(p_idx[hit & (depth < pts[p_idx, 2])], minlength=len(points))
    return ahead, behind


def _hits(tri: np.ndarray, ray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each ray (a 2D position) passes through its triangle's projection, and at which depth."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    e1, e2, d = b[:, :2] - a[:, :2], c[:, :2] - a[:, :2], ray - a[:, :2]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) / det
        v = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) / det
        hit = (det != 0) & (u >= 0) & (v >= 0) & (u + v <= 1)
        depth = a[:, 2] + u * (b[:, 2] - a[:, 2]) + v * (c[:, 2] - a[:, 2])
    return hit, depth


def contains(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, robust: bool = True) -> np.ndarray:
    """Inside flags for `points`. robust=False: one +z ray (exact and 6x cheaper for closed meshes)."""
    if not robust:
        ahead, _ = crossings(vertices, faces, points, axis=2)
        return ahead % 2 == 1
    votes = np.zeros(len(points), dtype=np.int64)
    for axis in range(3):
        ahead, behind = crossings(vertices, faces, points, axis)
        votes += ahead % 2 + behind % 2
    return votes >= 4  # a majority of the six half-rays
