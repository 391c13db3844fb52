"""Organic, scan-like solids (issue 23): smooth implicit shapes made by the project, unlike the man-made unions
of boxes and cylinders in categories.py.

Each shape is a signed distance (negative inside), evaluated with numpy, meshed by marching cubes on a fine
grid and normalised as every shape of the collection is (bbox centre at 0, longest edge 1). The mesh is the
ground truth: `contains` tests the implicit's sign, which agrees with the mesh but for points within a fraction
of a grid cell of the surface.

    blob       a sphere or ellipsoid displaced by a few random low-frequency waves
    metaballs  a smooth union of three to seven ellipsoids
    tubes      tubes swept along random smooth curves, their radius varying, some branching, smoothly joined
    creature   a body, a head, two to six legs, maybe a tail and ears, smoothly joined, standing
    shell      a bowl, a cup or a curved plate: thin walls with a thickness
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from blender_occnet.common.geometry import face_normals, sample_surface, unit_cube_frame

ORGANIC_CATEGORIES = ("blob", "metaballs", "tubes", "creature", "shell")
MESH_RESOLUTION = 128  # marching-cubes cells along the longest side of the shape's box
TEST_SEED = 7_000_003  # test shapes come from this seed namespace, the dataset builder never uses it

Array = np.ndarray
Distance = Callable[[Array], Array]  # points (N, 3) -> signed distance (N,), negative inside


# ------------------------------------------------------------------------------------------ pieces


def _ellipsoid(centre: Array, radii: Array, rotation: Array) -> Distance:
    def distance(p: Array) -> Array:
        local = (p - centre) @ rotation
        k = np.linalg.norm(local / radii, axis=1)
        return (k - 1.0) * radii.min()  # a lower bound of the true distance: fine for a level set

    return distance


def _capsule(a: Array, b: Array, ra: float, rb: float) -> Distance:
    """A tube from a to b whose radius goes from ra to rb."""
    ab = b - a
    length2 = float(ab @ ab)

    def distance(p: Array) -> Array:
        t = np.clip(((p - a) @ ab) / length2, 0.0, 1.0)
        return np.linalg.norm(p - (a + t[:, None] * ab), axis=1) - (ra + (rb - ra) * t)

    return distance


def _smooth_union(parts: list[Distance], k: float) -> Distance:
    """Polynomial smooth minimum: parts melt into each other over a width k."""

    def distance(p: Array) -> Array:
        d = parts[0](p)
        for part in parts[1:]:
            e = part(p)
            h = np.clip(0.5 + 0.5 * (e - d) / k, 0.0, 1.0)
            d = e * (1 - h) + d * h - k * h * (1 - h)
        return d

    return distance


def _rotation(rng: np.random.Generator) -> Array:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _waves(rng: np.random.Generator, count: int, amplitude: float, frequency: tuple[float, float]) -> Distance:
    directions = rng.normal(size=(count, 3))
    directions *= rng.uniform(*frequency, size=(count, 1)) / np.linalg.norm(directions, axis=1, keepdims=True)
    phases = rng.uniform(0, 2 * np.pi, count)
    amplitudes = amplitude * rng.uniform(0.3, 1.0, count) / np.sqrt(count)

    def displacement(p: Array) -> Array:
        return np.sin(p @ directions.T + phases) @ amplitudes

    return displacement


def _curve(rng: np.random.Generator, start: Array, length: float, segments: int) -> Array:
    """A smooth random path: each segment turns a little from the last."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    points = [start]
    for _ in range(segments):
        direction = direction + rng.normal(scale=0.5, size=3)
        direction /= np.linalg.norm(direction)
        points.append(points[-1] + direction * length / segments)
    return np.array(points)


# ------------------------------------------------------------------------------------------ categories


def _blob(rng: np.random.Generator) -> Distance:
    radii = rng.uniform(0.3, 0.5, 3)
    base = _ellipsoid(np.zeros(3), radii, _rotation(rng))
    waves = _waves(rng, int(rng.integers(3, 8)), float(rng.uniform(0.03, 0.08)), (3.0, 9.0))
    return lambda p: base(p) + waves(p)


def _metaballs(rng: np.random.Generator) -> Distance:
    parts = [_ellipsoid(rng.normal(scale=0.18, size=3), rng.uniform(0.1, 0.28, 3), _rotation(rng))
             for _ in range(int(rng.integers(3, 8)))]
    return _smooth_union(parts, float(rng.uniform(0.05, 0.12)))


def _tubes(rng: np.random.Generator) -> Distance:
    parts: list[Distance] = []
    paths = [_curve(rng, np.zeros(3), float(rng.uniform(0.8, 1.2)), 6)]
    for _ in range(int(rng.integers(0, 3))):  # branches from a point of the first path
        paths.append(_curve(rng, paths[0][int(rng.integers(1, 6))], float(rng.uniform(0.3, 0.6)), 4))
    for path in paths:
        radii = rng.uniform(0.035, 0.09, len(path))
        parts += [_capsule(path[i], path[i + 1], radii[i], radii[i + 1]) for i in range(len(path) - 1)]
    return _smooth_union(parts, 0.03)


def _creature(rng: np.random.Generator) -> Distance:
    length, height = rng.uniform(0.5, 0.8), rng.uniform(0.35, 0.6)
    body_r = np.array([length / 2, rng.uniform(0.12, 0.2), rng.uniform(0.12, 0.2)])
    body_y = height
    parts = [_ellipsoid(np.array([0.0, body_y, 0.0]), body_r, np.eye(3))]
    head_r = rng.uniform(0.08, 0.14)
    head = np.array([length / 2 + head_r * 0.6, body_y + rng.uniform(0.05, 0.2), 0.0])
    parts.append(_ellipsoid(head, np.full(3, head_r) * rng.uniform(0.8, 1.2, 3), np.eye(3)))
    pairs = int(rng.integers(1, 4))
    leg_r = rng.uniform(0.03, 0.06)
    for i in range(pairs):
        x = (i / max(pairs - 1, 1) - 0.5) * length * 0.7 if pairs > 1 else 0.0
        for side in (-1.0, 1.0):
            hip = np.array([x, body_y - body_r[1] * 0.5, side * body_r[2] * 0.7])
            foot = hip + np.array([rng.uniform(-0.08, 0.08), -hip[1], side * rng.uniform(0.0, 0.1)])
            parts.append(_capsule(hip, foot, leg_r * 1.3, leg_r))
    if rng.random() < 0.7:  # a tail
        root = np.array([-length / 2, body_y, 0.0])
        parts.append(_capsule(root, root + np.array([-rng.uniform(0.15, 0.35), rng.uniform(-0.1, 0.3), 0.0]),
                              0.04, 0.015))
    if rng.random() < 0.6:  # ears
        for side in (-1.0, 1.0):
            base = head + np.array([0.0, head_r * 0.7, side * head_r * 0.5])
            parts.append(_capsule(base, base + np.array([-0.02, rng.uniform(0.06, 0.12), side * 0.03]), 0.025,
                                  0.01))
    return _smooth_union(parts, 0.04)


def _shell(rng: np.random.Generator) -> Distance:
    thickness = rng.uniform(0.03, 0.05)
    radius = rng.uniform(0.35, 0.5)
    kind = int(rng.integers(3))
    squash = np.array([1.0, rng.uniform(0.5, 1.0), rng.uniform(0.8, 1.2)])

    def bowl(p: Array) -> Array:  # a sphere's shell cut by a plane: a bowl (or a cup when cut high)
        q = p / squash
        wall = np.abs(np.linalg.norm(q, axis=1) - radius) - thickness / 2
        cut = q[:, 1] - cut_height
        return np.maximum(wall, cut)

    cut_height = radius * (rng.uniform(-0.2, 0.2) if kind == 0 else rng.uniform(0.4, 0.7))
    if kind < 2:
        return bowl
    bend = rng.uniform(0.5, 1.5)
    half = np.array([radius, radius * rng.uniform(0.5, 1.0)])

    def plate(p: Array) -> Array:  # a curved plate: a slab bent along x, its outline a rectangle
        y = p[:, 1] - bend * p[:, 0] ** 2
        outline = (np.abs(p[:, [0, 2]]) - half).max(axis=1)
        return np.maximum(np.abs(y) - thickness / 2, outline)

    return plate


GENERATORS: dict[str, Callable[[np.random.Generator], Distance]] = {
    "blob": _blob, "metaballs": _metaballs, "tubes": _tubes, "creature": _creature, "shell": _shell}


# ------------------------------------------------------------------------------------------ the solid


@dataclass
class OrganicShape:
    """An implicit solid meshed and normalised; implements writer.SolidShape."""

    category: str
    distance: Distance  # in the frame the generator built it in
    loc: Array  # p_unit = (p - loc) / scale
    scale: float
    vertices: Array  # the mesh, in the unit frame
    faces: Array

    def contains(self, points: Array) -> Array:
        return self.distance(np.asarray(points, dtype=np.float64) * self.scale + self.loc) < 0

    def sample_surface(self, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
        points, face = sample_surface(self.vertices, self.faces, n, int(rng.integers(2**31)))
        return points, face_normals(self.vertices, self.faces[face])

    def voxels(self, resolution: int, rng: np.random.Generator, n_surface: int = 100_000) -> Array:
        """Cells whose centre is inside or that the surface crosses, over [-0.5, 0.5]^3 (as Shape.voxels)."""
        centres = (np.arange(resolution) + 0.5) / resolution - 0.5
        grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), axis=-1).reshape(-1, 3)
        filled = self.contains(grid).reshape((resolution,) * 3)
        surface, _ = self.sample_surface(n_surface, rng)
        cells = np.clip(np.floor((surface + 0.5) * resolution).astype(np.int64), 0, resolution - 1)
        filled[cells[:, 0], cells[:, 1], cells[:, 2]] = True
        return filled

    def trimesh(self):  # -> trimesh.Trimesh (imported lazily, as primitives.py does)
        import trimesh

        return trimesh.Trimesh(self.vertices, self.faces, process=False)


def generate_organic(category: str, rng: np.random.Generator, max_tries: int = 20) -> OrganicShape:
    """A random shape of an organic category, meshed (one watertight surface) and normalised."""
    from skimage.measure import marching_cubes

    if category not in GENERATORS:
        raise ValueError(f"unknown organic category {category!r}; choose one of {', '.join(ORGANIC_CATEGORIES)}")
    for _ in range(max_tries):
        distance = GENERATORS[category](rng)
        lo, hi = np.full(3, -1.2), np.full(3, 1.2)
        coarse = _grid(lo, hi, 48)
        inside = distance(coarse.reshape(-1, 3)).reshape(coarse.shape[:3]) < 0
        if not inside.any():
            continue
        cells = np.argwhere(inside)
        step = (hi - lo) / 47
        lo, hi = lo + (cells.min(axis=0) - 2) * step, lo + (cells.max(axis=0) + 2) * step
        n = np.maximum(8, np.round(MESH_RESOLUTION * (hi - lo) / (hi - lo).max())).astype(int)
        fine = _grid(lo, hi, n)
        values = distance(fine.reshape(-1, 3)).reshape(fine.shape[:3])
        if values.min() >= 0 or (values[[0, -1]] < 0).any() or (values[:, [0, -1]] < 0).any() \
                or (values[:, :, [0, -1]] < 0).any():
            continue
        vertices, faces, _, _ = marching_cubes(values, 0.0, spacing=tuple((hi - lo) / (n - 1)))
        vertices = vertices + lo  # skimage winds a negative-inside field's faces outward (tested)
        loc, scale = unit_cube_frame(vertices.min(axis=0), vertices.max(axis=0))
        return OrganicShape(category, distance, loc, scale, (vertices - loc) / scale, faces.astype(np.int64))
    raise RuntimeError(f"no {category} shape came out closed in {max_tries} tries")


def _grid(lo: Array, hi: Array, n: int | Array) -> Array:
    counts = np.broadcast_to(np.asarray(n), (3,))
    axes = [np.linspace(lo[i], hi[i], int(counts[i])) for i in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def test_shapes(per_category: int, seed: int = 0) -> list[tuple[str, str, OrganicShape]]:
    """(category, name, shape) of held-out organic shapes: seeds from TEST_SEED's namespace, never trained on."""
    shapes = []
    for index, category in enumerate(ORGANIC_CATEGORIES):
        for i in range(per_category):
            rng = np.random.default_rng([TEST_SEED, seed, index, i])
            shapes.append((category, f"{category}_{i:02d}", generate_organic(category, rng)))
    return shapes
