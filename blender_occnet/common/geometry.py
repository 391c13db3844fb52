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


# Rows (points, faces, lines of a text file) looked at at once wherever a large input is read or walked: memory
# then grows with the arrays kept, not with temporaries over the whole input (issue 24: a 10-million-face mesh
# was sampled through (F, 3, 3) corner arrays, 2.5 GB). The one rule for every reader and pass over big inputs.
# A chunk of faces costs about 200 bytes a row while it is worked on (corners, edges, cross products), a chunk of
# text about 15 times its size once split into Python objects: 50 to 60 MB each.
CHUNK_ROWS = 1 << 18
CHUNK_BYTES = 16 * CHUNK_ROWS  # text read at once: about CHUNK_ROWS short lines


def subsample(points: np.ndarray, most: int, seed: int = 0) -> np.ndarray:
    """At most `most` of the rows of `points`, each at most once (in their order), deterministic for a seed: the
    one way a large cloud is thinned before a tree or a fit is built over it (drawing with replacement repeated
    32% of the rows thinning 600,000 points to 500,000, which doubled their weight in a fit)."""
    if len(points) <= most:
        return points
    return points[np.sort(np.random.default_rng(seed).choice(len(points), most, replace=False))]


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` points uniformly distributed over the surface area (deterministic for a seed), float64, and the
    index of the face each lies on. Raises InputError when the faces have no area."""
    points, face, _ = sample_surface_weights(vertices, faces, n, seed)
    return points, face


def sample_surface_weights(vertices: np.ndarray, faces: np.ndarray, n: int,
                           seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sample_surface's points and faces, and each point's barycentric weights (n, 3) on its face's corners (to
    carry what the corners hold, colours say, onto the samples)."""
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    areas = np.empty(len(faces))
    for start in range(0, len(faces), CHUNK_ROWS):
        tri = np.asarray(vertices[faces[start:start + CHUNK_ROWS]], dtype=np.float64)
        areas[start:start + CHUNK_ROWS] = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]),
                                                               axis=1)
    areas[~np.isfinite(areas)] = 0.0
    total = areas.sum()
    if not total > 0:
        raise InputError("the mesh has no surface area (all faces are degenerate)")
    rng = np.random.default_rng(seed)
    face = rng.choice(len(areas), size=n, p=areas / total)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1  # fold the unit square onto the triangle
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = np.asarray(vertices[faces[face]], dtype=np.float64)  # the sampled faces' corners only
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    return points, face, np.stack([1 - u - v, u, v], axis=1)


# The largest coordinate a source may have: meshes come back in float32 (at most 3.4e38), and +-1e308 made the
# box's size infinite ("scale must be finite, got inf"). Far beyond any unit: millimetres of a planet are 1e10.
MAX_COORDINATE = 1e30


def unit_cube_frame(lo: np.ndarray, hi: np.ndarray, name: str = "the input") -> tuple[np.ndarray, float]:
    """The loc and scale that move a bounding box [lo, hi] into the unit cube (its centre at the origin, its
    longest edge 1): normalised = (p - loc) / scale. The scale is 0 for a box without extent. A box reaching past
    MAX_COORDINATE is refused, `name` saying whose."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    reach = float(np.max(np.abs([lo, hi])))
    if not reach <= MAX_COORDINATE:
        raise InputError(f"{name}: coordinates reach {reach:.3g}, too large to reconstruct (at most "
                         f"{MAX_COORDINATE:.0e}); scale it down first")
    return (lo + hi) / 2, float((hi - lo).max())


def cell_size(extent: float, resolution: int) -> float:
    """The edge of one cell of a result extracted at `resolution` from a source whose longest extent is `extent`
    (in its own units): the networks see that extent as the unit cube and extract over BOX_SIZE of it."""
    return extent * BOX_SIZE / resolution
