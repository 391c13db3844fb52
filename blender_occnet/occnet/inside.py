"""The project's one inside test of triangle meshes, robust to holes and inconsistent winding.

Rays along +-x, +-y and +-z from each point; each half-ray says "inside" when it crosses the surface
an odd number of times, and the six vote. Parity needs no face orientation, and a ray through a hole
of a non-watertight mesh disagrees with its opposite half, so the other axes decide. (Generalised
winding numbers are the principled alternative, but without a tree code they cost points x faces.)

Points that share a ray (a row of grid cell centres) share its work: each ray meets the triangles once,
and every point on it counts the crossings beyond it by a sorted search. Candidate (triangle, ray) pairs
come from a 2D hash of the triangles' projected bounding boxes and are handled a bounded number at a
time, so memory follows the points and the chunk size, never triangle area times count.
"""

from __future__ import annotations

import numpy as np

from ..common.errors import InputError

# Rays pass a tiny irrational offset (relative to the scene's extent) off the points, so that they never
# run exactly along an edge shared by two triangles (which would count one crossing twice).
_JITTER = np.array([1.23456789e-7, 3.14159265e-7])
MAX_CELLS = 64  # hash cells per side of the projected scene; fewer when there are few rays (about one per cell)
PAIRS_PER_CHUNK = 1 << 20  # (triangle, cell) or (triangle, ray) pairs held at once: about 100 MB of temporaries
# (triangle, ray) pairs one inside test may examine per axis: about 12 s on one core (8-9 million a second,
# measured), well under a minute for all three axes. Ordinary meshes need far fewer (a million small faces
# against 100,000 points: about 25 million); only many triangles that each span much of the shape (a
# hostile or broken file) come near it.
MAX_PAIRS = 100_000_000


def crossings(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray,
              axis: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Number of triangles crossed by the ray from each point towards +axis and towards -axis."""
    points = np.asarray(points, dtype=np.float64)
    ahead = np.zeros(len(points), dtype=np.int64)
    behind = np.zeros(len(points), dtype=np.int64)
    if len(faces) == 0 or len(points) == 0:
        return ahead, behind
    plane = [a for a in range(3) if a != axis]
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)][..., plane + [axis]]  # the ray axis last
    pts = points[:, plane + [axis]]
    lo = np.minimum(pts[:, :2].min(axis=0), tri[:, :, :2].min(axis=(0, 1)))
    size = np.maximum(pts[:, :2].max(axis=0), tri[:, :, :2].max(axis=(0, 1))) - lo + 1e-9
    # Complex numbers sort by real part, then imaginary: the fast way to find points on one ray.
    rays_c, point_ray = np.unique(pts[:, 0] + 1j * pts[:, 1], return_inverse=True)
    point_ray = point_ray.reshape(-1)
    rays = np.stack([rays_c.real, rays_c.imag], axis=1) + _JITTER * size.max()

    # Points sorted by (ray, depth): each ray's points are one range, in depth order. A crossing at depth t
    # lies ahead of the points of its ray whose depth is below t: found by one search on a combined key.
    depth = pts[:, 2]
    order = np.lexsort((depth, point_ray))
    ray_start = np.searchsorted(point_ray[order], np.arange(len(rays) + 1))
    d_lo, d_span = depth.min(), np.ptp(depth) + 1e-12
    sorted_key = point_ray[order] + 0.5 * (depth[order] - d_lo) / d_span  # ray index + [0, 0.5]
    ahead_diff = np.zeros(len(points) + 1, dtype=np.int64)
    hits_per_ray = np.zeros(len(rays), dtype=np.int64)

    cells = int(np.clip(np.sqrt(len(rays)), 8, MAX_CELLS))

    def to_cell(xy: np.ndarray) -> np.ndarray:
        return np.clip(((xy - lo) / size * cells).astype(np.int64), 0, cells - 1)

    # Rays sorted by hash cell, so a cell's rays are one contiguous range.
    ray_key = to_cell(rays) @ np.array([cells, 1])
    ray_order = np.argsort(ray_key, kind="stable")
    cell_start = np.searchsorted(ray_key[ray_order], np.arange(cells * cells + 1))
    # The cells each triangle's projected bounding box covers (a count per triangle: cheap however large).
    c0, c1 = to_cell(tri[:, :, :2].min(axis=1)), to_cell(tri[:, :, :2].max(axis=1))
    span = c1 - c0 + 1
    cells_per_face = span[:, 0] * span[:, 1]
    _check_work(c0, c1, np.diff(cell_start).reshape(cells, cells), len(faces))
    triangles = _Triangles(tri)

    for faces_ in _bounded_runs(cells_per_face, PAIRS_PER_CHUNK):
        face = np.repeat(faces_, cells_per_face[faces_])
        k = np.arange(len(face)) - np.repeat(np.cumsum(cells_per_face[faces_]) - cells_per_face[faces_],
                                             cells_per_face[faces_])
        key = (c0[face, 0] + k // span[face, 1]) * cells + c0[face, 1] + k % span[face, 1]
        rays_in_cell = cell_start[key + 1] - cell_start[key]
        for pairs in _bounded_runs(rays_in_cell, PAIRS_PER_CHUNK):
            n = rays_in_cell[pairs]
            within = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
            ray = ray_order[np.repeat(cell_start[key[pairs]], n) + within]
            hit, t = triangles.hits(np.repeat(face[pairs], n), rays[ray, 0], rays[ray, 1])
            ray = ray[hit]
            t_key = ray + np.clip(0.5 * (t - d_lo) / d_span, -0.25, 0.75)
            beyond = np.searchsorted(sorted_key, t_key)  # the ray's points with a depth below t end here
            ahead_diff += np.bincount(ray_start[ray], minlength=len(ahead_diff))
            ahead_diff -= np.bincount(beyond, minlength=len(ahead_diff))
            hits_per_ray += np.bincount(ray, minlength=len(rays))

    ahead[order] = np.cumsum(ahead_diff)[:-1]
    behind[:] = hits_per_ray[point_ray] - ahead
    return ahead, behind


def _check_work(c0: np.ndarray, c1: np.ndarray, rays_per_cell: np.ndarray, n_faces: int) -> None:
    """Refuse, with the figures, a test whose (triangle, ray) pairs would take more than MAX_PAIRS: counted
    before any work, from a 2D prefix sum of rays per hash cell over each triangle's covered rectangle."""
    table = np.zeros((len(rays_per_cell) + 1,) * 2, dtype=np.int64)
    table[1:, 1:] = rays_per_cell.cumsum(0).cumsum(1)
    x0, y0, x1, y1 = c0[:, 0], c0[:, 1], c1[:, 0] + 1, c1[:, 1] + 1
    pairs = int((table[x1, y1] - table[x0, y1] - table[x1, y0] + table[x0, y0]).sum())
    if pairs > MAX_PAIRS:
        raise InputError(f"this mesh's {n_faces:,} triangles are too large for its inside test: they span "
                         f"{pairs:,} (triangle, ray) candidates, more than the {MAX_PAIRS:,} it examines at most "
                         "(about a minute); remesh it into smaller triangles (Blender: the Remesh modifier) or "
                         "remove overlapping copies")


def _bounded_runs(weights: np.ndarray, budget: int) -> list[np.ndarray]:
    """Consecutive index ranges whose weights sum to at most `budget` (an item heavier alone is its own)."""
    ends = np.cumsum(weights)
    runs, begin = [], 0
    while begin < len(weights):
        stop = int(np.searchsorted(ends, (ends[begin - 1] if begin else 0) + budget, side="right"))
        stop = max(stop, begin + 1)
        runs.append(np.arange(begin, stop))
        begin = stop
    return runs


class _Triangles:
    """Each triangle's terms of the ray test, computed once as flat arrays (gathering those per candidate
    pair is several times faster than gathering (3, 3) corner blocks)."""

    def __init__(self, tri: np.ndarray):
        a, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        with np.errstate(divide="ignore"):
            self.inv_det = np.where(det != 0, 1.0 / det, np.nan)  # NaN: edge-on, never hit
        self.ax, self.ay, self.az = (np.ascontiguousarray(a[:, i]) for i in range(3))
        self.e1x, self.e1y, self.e1z = (np.ascontiguousarray(e1[:, i]) for i in range(3))
        self.e2x, self.e2y, self.e2z = (np.ascontiguousarray(e2[:, i]) for i in range(3))

    def hits(self, face: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which rays at (x, y) pass through their triangle's projection, and the depths of those that do."""
        dx, dy, inv = x - self.ax[face], y - self.ay[face], self.inv_det[face]
        u = (dx * self.e2y[face] - dy * self.e2x[face]) * inv
        v = (self.e1x[face] * dy - self.e1y[face] * dx) * inv
        hit = (u >= 0) & (v >= 0) & (u + v <= 1)
        face, u, v = face[hit], u[hit], v[hit]
        return hit, self.az[face] + u * self.e1z[face] + v * self.e2z[face]


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
