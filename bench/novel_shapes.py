"""Shapes of kinds no network here was trained on, made for the quality benchmark (bench_quality.py --splits novel):
a torus knot and a coil spring (thin tubes that wind through themselves), a faceted rock (flat faces, sharp
edges), a gear (a toothed prism) and a mushroom (a thin-stemmed cap that overhangs). Each is a closed triangle
mesh, normalised as the training shapes are (bounding box centred, longest edge 1), wrapped as the solid the
benchmark scores against (training.prepare.MeshShape). numpy only; seeds vary the proportions."""

from __future__ import annotations

import numpy as np

from blender_occnet.occnet.meshio import MeshData, normalise_mesh
from training.prepare import MeshShape

NOVEL_CATEGORIES = ("knot", "spring", "rock", "gear", "mushroom")
NOVEL_SEED = 515_151  # apart from every dataset's and test split's seeds


def tube(path: np.ndarray, radius: float, sides: int = 24, closed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A tube of `radius` around a polyline (N, 3): rings framed by parallel transport, joined end to end when
    `closed`, else capped by a fan at each end."""
    n = len(path)
    tangent = np.roll(path, -1, axis=0) - np.roll(path, 1, axis=0) if closed else np.gradient(path, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.cross(tangent[0], [0.3, 0.5, 0.8])
    normal /= np.linalg.norm(normal)
    normals = []
    for t in tangent:  # parallel transport: the last normal with its part along the new tangent taken out
        normal = normal - (normal @ t) * t
        normal /= np.linalg.norm(normal)
        normals.append(normal)
    normals_arr = np.array(normals)
    binormals = np.cross(tangent, normals_arr)
    angle = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    rings = path[:, None] + radius * (np.cos(angle)[None, :, None] * normals_arr[:, None]
                                      + np.sin(angle)[None, :, None] * binormals[:, None])
    vertices = rings.reshape(-1, 3)
    faces = []
    segments = n if closed else n - 1
    for i in range(segments):
        j = (i + 1) % n
        for k in range(sides):
            a, b = i * sides + k, i * sides + (k + 1) % sides
            c, d = j * sides + (k + 1) % sides, j * sides + k
            faces += [(a, b, c), (a, c, d)]
    if closed:
        # Parallel transport round a closed path ends twisted against where it began: the last ring joined to the
        # first by the nearest turn, so no face is stretched across the tube.
        twist = np.arctan2(normals_arr[-1] @ binormals[0], normals_arr[-1] @ normals_arr[0])
        shift = int(round(twist / (2 * np.pi / sides))) % sides
        faces = faces[: 2 * sides * (n - 1)]
        for k in range(sides):
            a, b = (n - 1) * sides + k, (n - 1) * sides + (k + 1) % sides
            c, d = (k + 1 + shift) % sides, (k + shift) % sides
            faces += [(a, b, c), (a, c, d)]
        return vertices, np.array(faces)
    start, end = len(vertices), len(vertices) + 1
    vertices = np.vstack([vertices, path[0], path[-1]])
    for k in range(sides):
        faces.append((start, (k + 1) % sides, k))
        faces.append((end, (n - 1) * sides + k, (n - 1) * sides + (k + 1) % sides))
    return vertices, np.array(faces)


def knot(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    p, q = (2, 3) if rng.random() < 0.5 else (3, 5)
    t = np.linspace(0, 2 * np.pi, 600, endpoint=False)
    r = 1.0 + 0.45 * np.cos(q * t)
    path = np.stack([r * np.cos(p * t), r * np.sin(p * t), 0.45 * np.sin(q * t)], axis=1)
    return tube(path, rng.uniform(0.12, 0.2))


def spring(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    turns = rng.uniform(4, 7)
    t = np.linspace(0, turns * 2 * np.pi, int(turns * 60))
    path = np.stack([np.cos(t), t / (2 * np.pi) * rng.uniform(0.5, 0.8), np.sin(t)], axis=1)
    return tube(path, rng.uniform(0.09, 0.14), closed=False)


def rock(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An icosphere of few faces, each corner pushed in or out: flat facets meeting at sharp edges."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=2)
    vertices = np.asarray(sphere.vertices) * rng.uniform(0.75, 1.2, (len(sphere.vertices), 1))
    return vertices * rng.uniform(0.7, 1.0, 3), np.asarray(sphere.faces)


def gear(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A prism on a toothed outline (star-shaped about its centre, so its caps are fans)."""
    teeth = int(rng.integers(10, 18))
    angle = np.linspace(0, 2 * np.pi, teeth * 4, endpoint=False)
    radius = np.where((np.arange(len(angle)) // 2) % 2 == 0, 1.0, 0.8)
    outline = np.stack([radius * np.cos(angle + np.pi / teeth / 4 * (np.arange(len(angle)) % 2)),
                        radius * np.sin(angle + np.pi / teeth / 4 * (np.arange(len(angle)) % 2))], axis=1)
    height = rng.uniform(0.2, 0.35)
    m = len(outline)
    vertices = np.vstack([np.column_stack([outline[:, 0], np.full(m, -height), outline[:, 1]]),
                          np.column_stack([outline[:, 0], np.full(m, height), outline[:, 1]]),
                          [[0, -height, 0], [0, height, 0]]])
    faces = []
    for k in range(m):
        k1 = (k + 1) % m
        faces += [(k, m + k1, k1), (k, m + k, m + k1), (2 * m, k, k1), (2 * m + 1, m + k1, m + k)]
    return vertices, np.array(faces)


def mushroom(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A revolved profile: a thin stem under a wide cap whose rim hangs down."""
    stem, cap = rng.uniform(0.12, 0.2), rng.uniform(0.8, 1.0)
    profile = np.array([[0.0, -1.0], [stem * 1.3, -1.0], [stem, -0.7], [stem, 0.1], [cap * 0.9, 0.05],
                        [cap, 0.15], [cap * 0.8, 0.45], [cap * 0.4, 0.65], [0.0, 0.7]])
    sides = 48
    angle = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    inner = profile[1:-1]  # the axis points stay single: the poles
    rings = np.stack([inner[:, :1] * np.cos(angle), np.repeat(inner[:, 1:], sides, axis=1),
                      inner[:, :1] * np.sin(angle)], axis=2)
    vertices = np.vstack([rings.reshape(-1, 3), [[0, profile[0, 1], 0], [0, profile[-1, 1], 0]]])
    bottom, top, rows = len(vertices) - 2, len(vertices) - 1, len(inner)
    faces = []
    for r in range(rows - 1):
        for k in range(sides):
            a, b = r * sides + k, r * sides + (k + 1) % sides
            c, d = (r + 1) * sides + (k + 1) % sides, (r + 1) * sides + k
            faces += [(a, c, b), (a, d, c)]
    for k in range(sides):
        faces += [(bottom, k, (k + 1) % sides),
                  (top, (rows - 1) * sides + (k + 1) % sides, (rows - 1) * sides + k)]
    return vertices, np.array(faces)


MAKERS = {"knot": knot, "spring": spring, "rock": rock, "gear": gear, "mushroom": mushroom}


def novel_shapes(per_category: int) -> list[tuple[str, str, MeshShape]]:
    """(category, name, solid) of each novel kind, `per_category` of each."""
    shapes = []
    for index, category in enumerate(NOVEL_CATEGORIES):
        for i in range(per_category):
            vertices, faces = MAKERS[category](np.random.default_rng([NOVEL_SEED, index, i]))
            mesh, loc, scale = normalise_mesh(MeshData(vertices.astype(np.float64), faces.astype(np.int64)),
                                              f"{category}_{i:02d}")
            shapes.append((category, f"{category}_{i:02d}", MeshShape(mesh, loc, scale)))
    return shapes
