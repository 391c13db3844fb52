"""The solids shapes are made of: rotations, five analytic primitives and their union, normalised."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from blender_occnet.common.geometry import unit_cube_frame

from .writer import SolidShape

if TYPE_CHECKING:
    from trimesh import Trimesh

SURFACE_EPS = 1e-6  # outward step used to tell the union's outer surface from buried faces

Array = np.ndarray


# ------------------------------------------------------------------------------------------ rotations


def rot_x(angle: float) -> Array:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(angle: float) -> Array:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def rot_z(angle: float) -> Array:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


AXIS_ROT = {"x": rot_z(-math.pi / 2), "y": np.eye(3), "z": rot_x(math.pi / 2)}  # local y -> that axis


def rot_to(direction: Array) -> Array:
    """A rotation whose local y axis points along `direction`."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    helper = np.array([1.0, 0, 0]) if abs(d[0]) < 0.9 else np.array([0, 0, 1.0])
    x = np.cross(d, helper)
    x /= np.linalg.norm(x)
    return np.stack([x, d, np.cross(x, d)], axis=1)


_MIRROR_X = np.diag([-1.0, 1.0, 1.0])


def _unit(v: Array) -> Array:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _disc(n: int, rng: np.random.Generator, r_in: float, r_out: float) -> tuple[Array, Array]:
    """Uniform points (x, z) on the annulus r_in <= rho <= r_out."""
    rho = np.sqrt(rng.uniform(r_in ** 2, r_out ** 2, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    return rho * np.cos(phi), rho * np.sin(phi)


# ------------------------------------------------------------------------------------------ primitives


@dataclass
class Primitive:
    """A solid with a local frame: world = rot @ local + center. Subclasses work in the local frame."""

    center: Array
    rot: Array

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=np.float64).reshape(3)
        self.rot = np.asarray(self.rot, dtype=np.float64).reshape(3, 3)

    # --- in the local frame (subclasses)
    def _contains_local(self, q: Array, margin: float) -> Array:
        raise NotImplementedError

    def _sample_local(self, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
        raise NotImplementedError

    def _scaled(self, factor: float) -> dict:
        raise NotImplementedError

    @property
    def area(self) -> float:
        raise NotImplementedError

    @property
    def thickness(self) -> float:
        """The smallest extent of the part (what a voxel grid must resolve)."""
        raise NotImplementedError

    @property
    def half_extent(self) -> Array:
        """Half the world-axis bbox size, for solids symmetric about their centre (exact)."""
        raise NotImplementedError

    def trimesh(self) -> Trimesh:
        """A triangle mesh of the part in the world frame."""
        raise NotImplementedError

    # --- in the world frame
    def contains(self, points: Array, margin: float = 0.0) -> Array:
        """Strictly inside; a positive `margin` shrinks the solid by about that distance."""
        return self._contains_local((np.asarray(points, dtype=np.float64) - self.center) @ self.rot, margin)

    def sample_surface(self, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
        """`n` points uniform over the surface area and their outward unit normals."""
        if n <= 0:
            return np.zeros((0, 3)), np.zeros((0, 3))
        q, nq = self._sample_local(n, rng)
        return q @ self.rot.T + self.center, nq @ self.rot.T

    @property
    def bounds(self) -> Array:
        h = self.half_extent
        return np.stack([self.center - h, self.center + h])

    def normalised(self, loc: Array, scale: float) -> Primitive:
        """The same part in the frame p' = (p - loc) / scale."""
        return type(self)(center=(self.center - loc) / scale, rot=self.rot, **self._scaled(1.0 / scale))

    def mirrored(self) -> Primitive:
        """The mirror image across the plane x = 0 (every primitive is symmetric in its local frame)."""
        return type(self)(center=self.center * [-1, 1, 1], rot=_MIRROR_X @ self.rot @ _MIRROR_X,
                          **self._scaled(1.0))

    def _transform(self) -> Array:
        t = np.eye(4)
        t[:3, :3], t[:3, 3] = self.rot, self.center
        return t


@dataclass
class Box(Primitive):
    half: Array = field(default_factory=lambda: np.full(3, 0.5))  # half extents along the local axes

    def __post_init__(self) -> None:
        super().__post_init__()
        self.half = np.asarray(self.half, dtype=np.float64).reshape(3)

    def _contains_local(self, q: Array, margin: float) -> Array:
        return (np.abs(q) < self.half - margin).all(axis=1)

    def _face_areas(self) -> Array:
        hx, hy, hz = self.half
        return 4 * np.array([hy * hz, hx * hz, hx * hy])  # one face normal to x, y, z

    def _sample_local(self, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
        faces = self._face_areas()
        axis = rng.choice(3, size=n, p=faces / faces.sum())
        sign = rng.choice([-1.0, 1.0], size=n)
        q = rng.uniform(-1, 1, (n, 3)) * self.half
        rows = np.arange(n)
        q[rows, axis] = sign * self.half[axis]
        normals = np.zeros((n, 3))
        normals[rows, axis] = sign
        return q, normals

    def _scaled(self, factor: float) -> dict:
        return {"half": self.half * factor}

    @property
    def area(self) -> float:
        return float(2 * self._face_areas().sum())

    @property
    def thickness(self) -> float:
        return float(2 * self.half.min())

    @property
    def half_extent(self) -> Array:
        return np.abs(self.rot) @ self.half

    def trimesh(self) -> Trimesh:
        import trimesh

        return trimesh.creation.box(extents=2 * self.half, transform=self._transform())


@dataclass
class Cylinder(Primitive):
    """A solid cylinder along local y; a cone frustum when radius_top differs from radius."""

    radius: float = 0.5  # at local y = -half_height
    half_height: float = 0.5
    radius_top: float | None = None  # at local y = +half_height; None: same as radius

    def __post_init__(self) -> None:
        super().__post_init__()
        self.radius, self.half_height = float(self.radius), float(self.half_height)
        self.radius_top = self.radius if self.radius_top is None else float(self.radius_top)

    @property
    def _top(self) -> float:
        """radius_top as a float (__post_init__ replaces None by radius)."""
        return self.radius if self.radius_top is None else self.radius_top

    def _radius_at(self, y: Array) -> Array:
        t = (y + self.half_height) / (2 * self.half_height)
        return self.radius + (self._top - self.radius) * t

    def _contains_local(self, q: Array, margin: float) -> Array:
        rho = np.hypot(q[:, 0], q[:, 2])
        return (np.abs(q[:, 1]) < self.half_height - margin) & (rho < self._radius_at(q[:, 1]) - margin)

    def _part_areas(self) -> Array:
        r0, r1, h2 = self.radius, self._top, 2 * self.half_height
        side = np.pi * (r0 + r1) * math.hypot(h2, r1 - r0)
        return np.array([side, np.pi * r0 ** 2, np.pi * r1 ** 2])

    def _sample_local(self, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
        r0, r1, h = self.radius, self._top, self.half_height
        parts = self._part_areas()
        part = rng.choice(3, size=n, p=parts / parts.sum())
        q, normals = np.zeros((n, 3)), np.zeros((n, 3))
        side = part == 0
        k = int(side.sum())
        # Side: the height is drawn with density proportional to the local radius (inverse CDF).
        u = rng.random(k)
        t = u if abs(r1 - r0) < 1e-12 else (np.sqrt(r0 ** 2 + u * (r1 ** 2 - r0 ** 2)) - r0) / (r1 - r0)
        phi = rng.uniform(0, 2 * np.pi, k)
        rho = r0 + (r1 - r0) * t
        q[side] = np.stack([rho * np.cos(phi), -h + 2 * h * t, rho * np.sin(phi)], axis=1)
        slope = (r1 - r0) / (2 * h)  # outward normal of rho - r(y) = 0: (radial, -dr/dy)
        normals[side] = _unit(np.stack([np.cos(phi), np.full(k, -slope), np.sin(phi)], axis=1))
        for index, (y, r) in ((1, (-h, r0)), (2, (h, r1))):
            cap = part == index
            x, z = _disc(int(cap.sum()), rng, 0.0, r)
            q[cap] = np.stack([x, np.full(x.size, y), z], axis=1)
            normals[cap] = [0.0, np.sign(y), 0.0]
        return q, normals

    def _scaled(self, factor: float) -> dict:
        return {"radius": self.radius * factor, "half_height": self.half_height * factor,
                "radius_top": self._top * factor}

    @property
    def area(self) -> float:
        return float(self._part_areas().sum())

    @property
    def thickness(self) -> float:
        return 2 * min(self.radius, self._top, self.half_height)

    @property
    def bounds(self) -> Array:
        # Extremes of a frustum along a world axis sit on its end circles.
        a = self.rot[:, 1]
        k = np.sqrt(np.clip(1 - a ** 2, 0, None))
        h = self.half_height
        top, bottom = self.center + h * a, self.center - h * a
        return np.stack([np.minimum(top - self._top * k, bottom - self.radius * k),
                         np.maximum(top + self._top * k, bottom + self.radius * k)])

    def trimesh(self) -> Trimesh:
        import trimesh

        mesh = trimesh.creation.cylinder(radius=1.0, height=2 * self.half_height, sections=48)
        v = mesh.vertices.copy()  # along z: scale each ring to its radius, then z -> local y
        r = np.where(v[:, 2] > 0, self._top, self.radius)
        local = np.stack([v[:, 0] * r, v[:, 2], -v[:, 1] * r], axis=1)
        return trimesh.Trimesh(local @ self.rot.T + self.center, mesh.faces, process=False)


@dataclass
class Tube(Primitive):
    """A hollow cylinder along local y: inner_radius < rho < radius, |y| < half_height."""

    radius: float = 0.5
    inner_radius: float = 0.4
    half_height: float = 0.5

    def _contains_local(self, q: Array, margin: float) -> Array:
        rho = np.hypot(q[:, 0], q[:, 2])
        return ((np.abs(q[:, 1]) < self.half_height - margin) & (rho < self.radius - margin)
                & (rho > self.inner_radius + margin))

    def _part_areas(self) -> Array:
        ro, ri, h2 = self.radius, self.inner_radius, 2 * self.half_height
        ring = np.pi * (ro ** 2 - ri ** 2)
        return np.array([2 * np.pi * ro * h2, 2 * np.pi * ri * h2, ring, ring])

    def _sample_local(self, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
        ro, ri, h = self.radius, self.inner_radius, self.half_height
        parts = self._part_areas()
        part = rng.choice(4, size=n, p=parts / parts.sum())
        q, normals = np.zeros((n, 3)), np.zeros((n, 3))
        for index, (r, outward) in ((0, (ro, 1.0)), (1, (ri, -1.0))):
            wall = part == index
            k = int(wall.sum())
            phi = rng.uniform(0, 2 * np.pi, k)
            c, s = np.cos(phi), np.sin(phi)
            q[wall] = np.stack([r * c, rng.uniform(-h, h, k), r * s], axis=1)
            normals[wall] = outward * np.stack([c, np.zeros(k), s], axis=1)
        for index, y in ((2, -h), (3, h)):
            cap = part == index
            x, z = _disc(int(cap.sum()), rng, ri, ro)
            q[cap] = np.stack([x, np.full(x.size, y), z], axis=1)
            normals[cap] = [0.0, np.sign(y), 0.0]
        return q, normals

    def _scaled(self, factor: float) -> dict:
        return {"radius": self.radius * factor, "inner_radius": self.inner_radius * factor,
                "half_height": self.half_height * factor}

    @property
    def area(self) -> float:
        return float(self._part_areas().sum())

    @property
    def thickness(self) -> float:
        return min(self.radius - self.inner_radius, 2 * self.half_height)

    @property
    def half_extent(self) -> Array:
        a = self.rot[:, 1]
        return self.half_height * np.abs(a) + self.radius * np.sqrt(np.clip(1 - a ** 2, 0, None))

    def trimesh(self) -> Trimesh:
        import trimesh

        return trimesh.creation.annulus(r_min=self.inner_radius, r_max=self.radius, height=2 * self.half_height,
                                        sections=48, transform=self._transform() @ _Z_TO_Y)


_Z_TO_Y = np.eye(4)
_Z_TO_Y[:3, :3] = rot_x(-math.pi / 2)  # trimesh builds round solids along z; ours run along local y


@dataclass
class Ellipsoid(Primitive):
    radii: Array = field(default_factory=lambda: np.full(3, 0.5))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.radii = np.asarray(self.radii, dtype=np.float64).reshape(3)

    def _contains_local(self, q: Array, margin: float) -> Array:
        return ((q / (self.radii - margin)) ** 2).sum(axis=1) < 1

    def _sample_local(self, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
        # Map sphere directions onto the ellipsoid and keep each with probability proportional to
        # the area stretch abc * |u / r|, which makes the kept points uniform on the surface.
        out: list[Array] = []
        have = 0
        while have < n:
            u = _unit(rng.normal(size=(max(2 * (n - have), 64), 3)))
            stretch = np.linalg.norm(u / self.radii, axis=1) * self.radii.min()
            keep = u[rng.random(len(u)) < stretch]
            out.append(keep)
            have += len(keep)
        u = np.concatenate(out)[:n]
        q = u * self.radii
        return q, _unit(q / self.radii ** 2)

    def _scaled(self, factor: float) -> dict:
        return {"radii": self.radii * factor}

    @property
    def area(self) -> float:
        # Mean area stretch over a Fibonacci sphere: deterministic quadrature, ~1e-6 relative error.
        u = _fibonacci_sphere()
        return float(4 * np.pi * self.radii.prod() * np.linalg.norm(u / self.radii, axis=1).mean())

    @property
    def thickness(self) -> float:
        return float(2 * self.radii.min())

    @property
    def half_extent(self) -> Array:
        return np.sqrt(((self.rot * self.radii) ** 2).sum(axis=1))

    def trimesh(self) -> Trimesh:
        import trimesh

        mesh = trimesh.creation.icosphere(subdivisions=3)
        return trimesh.Trimesh((mesh.vertices * self.radii) @ self.rot.T + self.center, mesh.faces, process=False)


def _fibonacci_sphere(n: int = 4096) -> Array:
    i = np.arange(n) + 0.5
    y = 1 - 2 * i / n
    r = np.sqrt(1 - y ** 2)
    phi = i * np.pi * (3 - math.sqrt(5))
    return np.stack([r * np.cos(phi), y, r * np.sin(phi)], axis=1)


@dataclass
class Torus(Primitive):
    """A ring torus around local y: (rho - major)^2 + y^2 < minor^2."""

    major: float = 0.35
    minor: float = 0.1

    def _contains_local(self, q: Array, margin: float) -> Array:
        rho = np.hypot(q[:, 0], q[:, 2])
        return (rho - self.major) ** 2 + q[:, 1] ** 2 < (self.minor - margin) ** 2

    def _sample_local(self, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
        big, small = self.major, self.minor
        out: list[Array] = []
        have = 0
        while have < n:  # the tube angle v has density proportional to big + small cos v
            v = rng.uniform(0, 2 * np.pi, 2 * (n - have) + 16)
            keep = v[rng.random(v.size) * (big + small) < big + small * np.cos(v)]
            out.append(keep)
            have += keep.size
        v = np.concatenate(out)[:n]
        u = rng.uniform(0, 2 * np.pi, n)
        normals = np.stack([np.cos(v) * np.cos(u), np.sin(v), np.cos(v) * np.sin(u)], axis=1)
        ring = np.stack([big * np.cos(u), np.zeros(n), big * np.sin(u)], axis=1)
        return ring + small * normals, normals

    def _scaled(self, factor: float) -> dict:
        return {"major": self.major * factor, "minor": self.minor * factor}

    @property
    def area(self) -> float:
        return float(4 * np.pi ** 2 * self.major * self.minor)

    @property
    def thickness(self) -> float:
        return 2 * self.minor

    @property
    def half_extent(self) -> Array:
        a = self.rot[:, 1]
        return self.major * np.sqrt(np.clip(1 - a ** 2, 0, None)) + self.minor

    def trimesh(self) -> Trimesh:
        import trimesh

        return trimesh.creation.torus(self.major, self.minor, major_sections=48, minor_sections=16,
                                      transform=self._transform() @ _Z_TO_Y)


# ------------------------------------------------------------------------------------------ shapes


@dataclass
class Shape(SolidShape):
    """A union of primitives in the normalised frame ([-0.5, 0.5]^3, longest bbox edge 1).

    loc and scale map the frame it was built in to this one: p_norm = (p - loc) / scale.
    """

    category: str
    primitives: list[Primitive]
    loc: Array = field(default_factory=lambda: np.zeros(3))
    scale: float = 1.0

    @property
    def bounds(self) -> Array:
        return _union_bounds(self.primitives)

    def contains(self, points: Array) -> Array:
        points = np.asarray(points, dtype=np.float64)
        inside = np.zeros(len(points), dtype=bool)
        for prim in self.primitives:
            inside |= prim.contains(points)
        return inside

    def sample_surface(self, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
        """`n` points uniform over the union's outer surface, with outward normals.

        Each primitive gets samples in proportion to its area; a sample is dropped when a step along its
        normal enters another primitive (buried in it, or on a face shared with it); draws repeat
        until `n` remain.
        """
        if n <= 0:
            return np.zeros((0, 3)), np.zeros((0, 3))
        areas = np.array([p.area for p in self.primitives])
        kept_points: list[Array] = []
        kept_normals: list[Array] = []
        have, survival = 0, 1.0
        while have < n:
            want = n - have
            draw = int(math.ceil(want / max(survival, 0.05) * 1.1)) + 16 if have else n
            counts = rng.multinomial(draw, areas / areas.sum())
            points, normals = [], []
            for i, (prim, count) in enumerate(zip(self.primitives, counts)):
                p, nrm = prim.sample_surface(int(count), rng)
                probe = p + SURFACE_EPS * nrm
                buried = np.zeros(len(p), dtype=bool)
                for j, other in enumerate(self.primitives):
                    if j != i:
                        buried |= other.contains(probe)
                points.append(p[~buried])
                normals.append(nrm[~buried])
            p, nrm = np.concatenate(points), np.concatenate(normals)
            survival = max(len(p) / draw, 1e-3)
            order = rng.permutation(len(p))  # so that keeping a prefix of the last draw is unbiased
            kept_points.append(p[order][:want])
            kept_normals.append(nrm[order][:want])
            have += min(len(p), want)
        return np.concatenate(kept_points), np.concatenate(kept_normals)

    def trimesh(self) -> Trimesh:
        """The primitives' meshes concatenated (buried faces included), in the normalised frame."""
        import trimesh

        mesh = trimesh.util.concatenate([p.trimesh() for p in self.primitives])
        assert isinstance(mesh, trimesh.Trimesh)  # meshes concatenate into one mesh
        return mesh

    def voxels(self, resolution: int, rng: np.random.Generator, n_surface: int = 100_000) -> Array:
        """[x, y, z] grid over [-0.5, 0.5]^3: cells whose centre is inside or that the surface crosses."""
        centres = (np.arange(resolution) + 0.5) / resolution - 0.5
        grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), axis=-1).reshape(-1, 3)
        filled = self.contains(grid).reshape((resolution,) * 3)
        surface, _ = self.sample_surface(n_surface, rng)
        cells = np.clip(np.floor((surface + 0.5) * resolution).astype(np.int64), 0, resolution - 1)
        filled[cells[:, 0], cells[:, 1], cells[:, 2]] = True
        return filled


def _union_bounds(primitives: Sequence[Primitive]) -> Array:
    b = np.stack([p.bounds for p in primitives])
    return np.stack([b[:, 0].min(axis=0), b[:, 1].max(axis=0)])


def normalise(category: str, primitives: Sequence[Primitive]) -> Shape:
    """Bbox centre to the origin, longest bbox edge to 1 (the reference's normalisation)."""
    lo, hi = _union_bounds(primitives)
    loc, scale = unit_cube_frame(lo, hi)
    return Shape(category, [p.normalised(loc, scale) for p in primitives], loc, scale)

