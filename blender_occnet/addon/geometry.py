"""Pure numpy geometry for the add-on (no bpy): frame changes, surface sampling, voxel cubes, checks.

Frames: the networks work y-up with the front facing -z (the procedural training shapes; ShapeNetCore v2's
convention); Blender is z-up, and an object modelled to face the Front view faces -y. The rotation that
takes one to the other (180 degrees about the axis between +y and +z) maps Blender (x, y, z) to network
(-x, z, y) and is its own inverse.
"""

from __future__ import annotations

import numpy as np

from ..common.errors import InputError
from ..common.geometry import sample_surface_weights
from ..common.policy import MIN_POINTS

VOXELS = 32  # the voxel encoder's grid size


class SourceError(ValueError):
    """A source that cannot be reconstructed; the message tells the user what to do."""


def blender_to_network(points: np.ndarray) -> np.ndarray:
    """(N, 3) Blender coordinates -> network coordinates: (x, y, z) -> (-x, z, y). Up +z becomes +y and the
    front -y becomes -z; a rotation (determinant 1), so nothing is mirrored."""
    out = np.empty_like(points)
    out[:, 0], out[:, 1], out[:, 2] = -points[:, 0], points[:, 2], points[:, 1]
    return out


def network_to_blender(points: np.ndarray) -> np.ndarray:
    """The inverse of blender_to_network, which is the same rotation: (x, y, z) -> (-x, z, y)."""
    return blender_to_network(points)


def sample_surface(vertices: np.ndarray, triangles: np.ndarray, count: int, seed: int = 0,
                   corner_colours: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """`count` points on the triangles, area-weighted (uniform over the surface), float32; the vertices
    themselves when the triangles have no area. With `corner_colours` ((T, 3, 3) uint8: each triangle's
    corners'), each point's colour blended from its triangle's corners (else None)."""
    try:
        points, face, weights = sample_surface_weights(vertices, triangles, count, seed)
    except InputError:
        return vertices.astype(np.float32), None
    colours = None
    if corner_colours is not None:
        blended = (corner_colours[face].astype(np.float32) * weights[:, :, None].astype(np.float32)).sum(axis=1)
        colours = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return points.astype(np.float32), colours


def corner_to_vertex(values: np.ndarray, corner_vertex: np.ndarray, n_vertices: int) -> np.ndarray:
    """Per-corner values (C, K) -> per-vertex (n_vertices, K): the mean of each vertex's corners (0 where none)."""
    counts = np.maximum(np.bincount(corner_vertex, minlength=n_vertices), 1).astype(np.float32)
    return np.stack([np.bincount(corner_vertex, weights=values[:, k], minlength=n_vertices) / counts
                     for k in range(values.shape[1])], axis=1)


def check_points(points: np.ndarray, name: str, drop_non_finite: bool = True) -> np.ndarray:
    """Points the backend will accept, or a SourceError naming the object and the fix.

    Points with NaN or infinite coordinates are left to the backend, which drops and counts them (the rule
    the command line applies too), as long as enough usable ones remain; a mesh to voxelise
    (drop_non_finite=False) must have none."""
    if len(points) == 0:
        raise SourceError(f"'{name}' has no vertices or points; select an object with geometry")
    bad = ~np.isfinite(points).all(axis=1)
    usable = len(points) - int(bad.sum())
    if bad.any() and (not drop_non_finite or usable < MIN_POINTS):
        raise SourceError(f"'{name}' has {int(bad.sum())} of {len(points)} points with NaN or infinite coordinates"
                          f"{'' if drop_non_finite else ', which cannot be voxelised'}; fix or delete them (Edit "
                          "Mode > Mesh > Clean Up) and try again")
    finite = points[~bad] if bad.any() else points
    if len(finite) < MIN_POINTS:
        raise SourceError(f"'{name}' has {len(points)} point(s); a point cloud needs at least {MIN_POINTS}. "
                          "Select an object with more geometry")
    if not float(np.ptp(finite, axis=0).max()) > 0:
        raise SourceError(f"all points of '{name}' are at the same place; nothing to reconstruct")
    return np.ascontiguousarray(points, dtype=np.float32)


def check_result(vertices: np.ndarray, faces: np.ndarray) -> str:
    """'' when a backend result is a usable triangle mesh, else what is wrong with it."""
    if vertices.ndim != 2 or vertices.shape[1:] != (3,) or faces.ndim != 2 or faces.shape[1:] != (3,):
        return f"the backend sent arrays of shapes {vertices.shape} and {faces.shape}, not N x 3"
    if len(faces) == 0:
        return "the reconstruction is empty (no surface at this threshold); try another threshold or weights"
    if not np.isfinite(vertices).all():
        return "the backend sent NaN or infinite vertices; the weights may be broken"
    if faces.min() < 0 or faces.max() >= len(vertices):
        return "the backend sent faces that index missing vertices"
    return ""


def mesh_edges(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Edges as Blender stores them, for faces of one size: the unique undirected edges (E, 2) int32 and
    each corner's edge (to the next corner of its face), (F * sides,) int32. None when a face repeats a
    vertex in a row (then Blender's own edge calculation sorts it out)."""
    a = faces.ravel()
    b = np.roll(faces, -1, axis=1).ravel()
    if len(a) == 0 or (a == b).any():
        return None
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo.astype(np.int64)
    key *= n_vertices
    key += hi
    # A stable argsort is fast on the spatially ordered keys that meshing produces (np.unique is ~10x slower).
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    first = np.empty(len(ordered), bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    corner_edge = np.empty(len(key), np.int32)
    corner_edge[order] = np.cumsum(first, dtype=np.int32) - 1
    where = order[first]
    edges = np.empty((len(where), 2), np.int32)
    edges[:, 0], edges[:, 1] = lo[where], hi[where]
    return edges, corner_edge


def voxel_cubes(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cubes for filled cells (K, 3) of the 32^3 grid in Blender coordinates of the unit cube.

    Returns vertices (8K, 3) float32, quads (6K, 4) int32 and each quad's cell index (6K,) int32.
    """
    corner = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], np.float32)
    quads = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]], np.int32)
    net = (cells[:, None, :].astype(np.float32) + corner[None]) / VOXELS - 0.5  # (K, 8, 3) network frame
    vertices = network_to_blender(net.reshape(-1, 3))
    faces = (quads[None] + 8 * np.arange(len(cells), dtype=np.int32)[:, None, None]).reshape(-1, 4)
    index = np.repeat(np.ravel_multi_index(tuple(cells.T), (VOXELS,) * 3).astype(np.int32), 6)
    return vertices, faces, index


def grid_from_faces(index: np.ndarray, centres: np.ndarray,
                    face_colours: np.ndarray | None = None) -> tuple[np.ndarray, int, np.ndarray | None]:
    """The 32^3 grid of a voxel object from its faces, how many of its cubes lie outside the grid's box, and (with
    `face_colours`, (F, 3) uint8 per face) each cell's colour, (32^3, 3) uint8 in C order, a cube's the mean of
    its faces': `index` each face's cube (its import-time cell), `centres` each face's centre (Blender object
    frame). A cube's cell is where its faces' mean centre is now, rounded to the nearest cell centre (half a cell
    of tolerance for cubes missing faces); cubes moved outside the box have no cell and are counted."""
    valid = (index >= 0) & (index < VOXELS ** 3)
    index, centres = index[valid], centres[valid]
    grid = np.zeros((VOXELS,) * 3, np.uint8)
    colours = None if face_colours is None else np.zeros((VOXELS ** 3, 3), np.uint8)
    if not len(index):
        return grid, 0, colours
    cubes, inverse = np.unique(index, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    mean = np.stack([np.bincount(inverse, weights=centres[:, a]) for a in range(3)], axis=1) / counts[:, None]
    cells = np.rint((blender_to_network(mean) + 0.5) * VOXELS - 0.5).astype(np.int64)
    inside = ((cells >= 0) & (cells < VOXELS)).all(axis=1)
    grid[tuple(cells[inside].T)] = 1
    if colours is not None and face_colours is not None:
        rgb = face_colours[valid].astype(np.float64)
        cube_rgb = np.stack([np.bincount(inverse, weights=rgb[:, c]) for c in range(3)], axis=1) / counts[:, None]
        flat = np.ravel_multi_index(tuple(cells[inside].T), (VOXELS,) * 3)
        colours[flat] = np.rint(cube_rgb[inside]).astype(np.uint8)
    return grid, int((~inside).sum()), colours
