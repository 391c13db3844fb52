"""Triangle-mesh arithmetic every room shares (the add-on, the core, training): face normals and areas,
area-weighted surface samples, the unit-cube frame of a bounding box. numpy only: Blender imports it."""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .policy import BOX_SIZE


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals (F, 3), counter-clockwise winding seen from where they point; zero-area faces get a
    zero vector rather than NaN."""
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` points uniformly distributed over the surface area (deterministic for a seed), float64, and the
    index of the face each lies on. Raises InputError when the faces have no area."""
    points, face, _ = sample_surface_weights(vertices, faces, n, seed)
    return points, face


def sample_surface_weights(vertices: np.ndarray, faces: np.ndarray, n: int,
                           seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sample_surface's points and faces, and each point's barycentric weights (n, 3) on its face's corners (to
    carry what the corners hold, colours say, onto the samples)."""
    tri = np.asarray(vertices, dtype=np.float64)[faces]  # (F, 3, 3)
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    areas = np.where(np.isfinite(areas), areas, 0.0)
    total = areas.sum()
    if not total > 0:
        raise InputError("the mesh has no surface area (all faces are degenerate)")
    rng = np.random.default_rng(seed)
    face = rng.choice(len(areas), size=n, p=areas / total)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1  # fold the unit square onto the triangle
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[face]
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    return points, face, np.stack([1 - u - v, u, v], axis=1)


def unit_cube_frame(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, float]:
    """The loc and scale that move a bounding box [lo, hi] into the unit cube (its centre at the origin, its
    longest edge 1): normalised = (p - loc) / scale. The scale is 0 for a box without extent."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return (lo + hi) / 2, float((hi - lo).max())


def cell_size(extent: float, resolution: int) -> float:
    """The edge of one cell of a result extracted at `resolution` from a source whose longest extent is `extent`
    (in its own units): the networks see that extent as the unit cube and extract over BOX_SIZE of it."""
    return extent * BOX_SIZE / resolution
