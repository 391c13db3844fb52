"""Procedural man-made shapes (unions of analytic primitives) with exact occupancy, written in the original layout.

Every shape is a union of solid primitives (boxes, cylinders and cone frustums, tubes, ellipsoids, tori),
so inside/outside is decided analytically: the labels are exact although the union's mesh (the
primitives' meshes concatenated) is not watertight. Shapes are canonical like ShapeNet: y up, the
front facing -z. Each model is drawn from np.random.default_rng([seed, category_index, index]), so a
dataset is reproducible byte for byte whatever the number of workers.

    python -m training.shapes OUT --per-category 200 --seed 0 --uniform-points 32768 --surface-points 30000
"""

from __future__ import annotations

import argparse
import io
import math
import multiprocessing
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import yaml

from blender_occnet.occnet.binvox import write_binvox
from blender_occnet.occnet.files import atomic_output
from blender_occnet.occnet.meshio import write_mesh

if TYPE_CHECKING:
    from trimesh import Trimesh

CATEGORIES = ("chair", "table", "sofa", "lamp", "bench", "cabinet", "airplane", "car", "mug", "vase")
MIN_THICKNESS = 0.04  # of the longest bbox edge: a 32^3 grid (cell 1/32 = 0.031) still shows every part
_DESIGN_THICKNESS = 0.046  # what the generators aim for, a margin above MIN_THICKNESS
BOX_SIZE = 1.1  # uniform query points fill [-0.55, 0.55]^3, as in the original
SURFACE_EPS = 1e-6  # outward step used to tell the union's outer surface from buried faces
MODEL_FILES = ("points.npz", "points_near.npz", "pointcloud.npz", "model.binvox")
_SPLIT_STREAM = 2**32 - 1  # rng stream of the split shuffle, distinct from every model index

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

    def normalised(self, loc: Array, scale: float) -> "Primitive":
        """The same part in the frame p' = (p - loc) / scale."""
        return type(self)(center=(self.center - loc) / scale, rot=self.rot, **self._scaled(1.0 / scale))

    def mirrored(self) -> "Primitive":
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

    def _radius_at(self, y: Array) -> Array:
        t = (y + self.half_height) / (2 * self.half_height)
        return self.radius + (self.radius_top - self.radius) * t

    def _contains_local(self, q: Array, margin: float) -> Array:
        rho = np.hypot(q[:, 0], q[:, 2])
        return (np.abs(q[:, 1]) < self.half_height - margin) & (rho < self._radius_at(q[:, 1]) - margin)

    def _part_areas(self) -> Array:
        r0, r1, h2 = self.radius, self.radius_top, 2 * self.half_height
        side = np.pi * (r0 + r1) * math.hypot(h2, r1 - r0)
        return np.array([side, np.pi * r0 ** 2, np.pi * r1 ** 2])

    def _sample_local(self, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
        r0, r1, h = self.radius, self.radius_top, self.half_height
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
                "radius_top": self.radius_top * factor}

    @property
    def area(self) -> float:
        return float(self._part_areas().sum())

    @property
    def thickness(self) -> float:
        return 2 * min(self.radius, self.radius_top, self.half_height)

    @property
    def bounds(self) -> Array:
        # Extremes of a frustum along a world axis sit on its end circles.
        a = self.rot[:, 1]
        k = np.sqrt(np.clip(1 - a ** 2, 0, None))
        h = self.half_height
        top, bottom = self.center + h * a, self.center - h * a
        return np.stack([np.minimum(top - self.radius_top * k, bottom - self.radius * k),
                         np.maximum(top + self.radius_top * k, bottom + self.radius * k)])

    def trimesh(self) -> Trimesh:
        import trimesh

        mesh = trimesh.creation.cylinder(radius=1.0, height=2 * self.half_height, sections=48)
        v = mesh.vertices.copy()  # along z: scale each ring to its radius, then z -> local y
        r = np.where(v[:, 2] > 0, self.radius_top, self.radius)
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
class Shape:
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

        return trimesh.util.concatenate([p.trimesh() for p in self.primitives])

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
    loc, scale = (lo + hi) / 2, float((hi - lo).max())
    return Shape(category, [p.normalised(loc, scale) for p in primitives], loc, scale)


# ------------------------------------------------------------------------------------------ builders
# Generators work in metres (airplanes in fuselage lengths) and return primitives in that frame.
# Each one picks the big dimensions first, then sizes every part from m = _DESIGN_THICKNESS * the
# largest dimension, so thin parts stay visible after normalisation.


class _Parts:
    """Collects primitives; helpers take full sizes and world positions."""

    def __init__(self, rng: np.random.Generator, largest: float):
        self.rng = rng
        self.m = _DESIGN_THICKNESS * largest
        self.items: list[Primitive] = []

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def pick(self, options: Sequence):
        return options[int(self.rng.integers(len(options)))]

    def thick(self, lo: float = 1.0, hi: float = 1.8) -> float:
        """A part thickness between lo and hi times the minimum."""
        return self.u(lo, hi) * self.m

    def add(self, prim: Primitive, mirror: bool = False) -> Primitive:
        self.items.append(prim)
        if mirror:
            self.items.append(prim.mirrored())
        return prim

    def box(self, center: Sequence[float], size: Sequence[float], rot: Array | None = None,
            mirror: bool = False) -> Primitive:
        return self.add(Box(center, np.eye(3) if rot is None else rot, half=np.asarray(size) / 2), mirror)

    def box_span(self, lo: Sequence[float], hi: Sequence[float], mirror: bool = False) -> Primitive:
        """An axis-aligned box between two corners."""
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        return self.box((lo + hi) / 2, np.abs(hi - lo), mirror=mirror)

    def cyl(self, center: Sequence[float], radius: float, height: float, axis: str = "y",
            radius_top: float | None = None, rot: Array | None = None, mirror: bool = False) -> Primitive:
        rot = AXIS_ROT[axis] if rot is None else rot
        return self.add(Cylinder(center, rot, radius=radius, half_height=height / 2, radius_top=radius_top), mirror)

    def rod(self, start: Sequence[float], end: Sequence[float], radius: float, mirror: bool = False) -> Primitive:
        """A cylinder from `start` to `end`."""
        start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
        return self.add(Cylinder((start + end) / 2, rot_to(end - start), radius=radius,
                                 half_height=float(np.linalg.norm(end - start)) / 2), mirror)

    def tube(self, center: Sequence[float], radius: float, inner_radius: float, height: float,
             axis: str = "y") -> Primitive:
        return self.add(Tube(center, AXIS_ROT[axis], radius=radius, inner_radius=inner_radius,
                             half_height=height / 2))

    def ellipsoid(self, center: Sequence[float], radii: Sequence[float], rot: Array | None = None,
                  mirror: bool = False) -> Primitive:
        return self.add(Ellipsoid(center, np.eye(3) if rot is None else rot, radii=radii), mirror)

    def torus(self, center: Sequence[float], major: float, minor: float, axis: str = "y",
              mirror: bool = False) -> Primitive:
        return self.add(Torus(center, AXIS_ROT[axis], major=major, minor=minor), mirror)

    def leg(self, x: float, z: float, y0: float, y1: float, width: float, round_: bool,
            mirror: bool = False) -> Primitive:
        """A vertical leg from y0 to y1."""
        if round_:
            return self.cyl((x, (y0 + y1) / 2, z), width / 2, y1 - y0, mirror=mirror)
        return self.box((x, (y0 + y1) / 2, z), (width, y1 - y0, width), mirror=mirror)


def _chair(rng: np.random.Generator) -> list[Primitive]:
    width, depth, seat_y = float(rng.uniform(0.4, 0.65)), float(rng.uniform(0.38, 0.6)), float(rng.uniform(0.38, 0.52))
    back_h = float(rng.uniform(0.25, 0.6))
    s = _Parts(rng, max(width, depth, seat_y + back_h))
    seat_t = s.thick(1.0, 2.2)
    bottom = seat_y - seat_t
    s.box((0, seat_y - seat_t / 2, 0), (width, seat_t, depth))
    if s.chance(0.75):  # four legs, perhaps with stretchers
        leg = s.thick(1.0, 2.2)
        round_ = s.chance(0.5)
        x = width / 2 - leg / 2 - s.u(0, 0.08) * width
        z = depth / 2 - leg / 2 - s.u(0, 0.08) * depth
        for zz in (-z, z):
            s.leg(x, zz, 0.0, bottom + 0.01, leg, round_, mirror=True)
        if s.chance(0.5):
            bar = s.thick(1.0, 1.3)
            y = bottom * s.u(0.15, 0.45)
            s.box((x, y, 0), (bar, bar, 2 * z), mirror=True)
            if s.chance(0.5):
                s.box((0, y, -z), (2 * x, bar, bar))
    else:  # office chair: column on a star base, perhaps with casters
        column_r = s.thick(0.6, 1.4)
        spoke = s.thick(1.0, 1.4)
        caster = s.chance(0.5)
        spoke_y = spoke / 2 + (s.m * 1.2 if caster else 0.0)
        reach = s.u(0.35, 0.5) * max(width, depth)
        for k in range(5):
            yaw = 2 * np.pi * k / 5 + np.pi / 2
            d = np.array([math.cos(yaw), 0, -math.sin(yaw)])
            s.box(d * reach / 2 + [0, spoke_y, 0], (reach, spoke, spoke), rot=rot_y(yaw))
            if caster:
                s.ellipsoid(d * reach + [0, s.m * 0.65, 0], np.full(3, s.m * 0.65))
        s.cyl((0, (spoke_y + bottom) / 2 + 0.005, 0), column_r, bottom - spoke_y + 0.01)
    _chair_back(s, width, depth, seat_y, seat_t, back_h)
    if s.chance(0.35):  # armrests on posts
        arm_w, arm_t = s.thick(1.0, 2.0), s.thick(1.0, 1.6)
        arm_y = seat_y + s.u(0.15, 0.28)
        length = depth * s.u(0.6, 0.95)
        x = width / 2 + (arm_w / 2 if s.chance(0.5) else -arm_w / 2)
        z0 = depth / 2 - length
        s.box((x, arm_y - arm_t / 2, z0 + length / 2), (arm_w, arm_t, length), mirror=True)
        post = s.thick(1.0, 1.5)
        s.box((x, (seat_y - 0.01 + arm_y - arm_t) / 2, z0 + post / 2 + 0.01),
              (post, arm_y - arm_t - seat_y + 0.02, post), mirror=True)
    return s.items


def _chair_back(s: _Parts, width: float, depth: float, seat_y: float, seat_t: float, back_h: float) -> None:
    """A backrest (solid, slats or frame) tilted back about its bottom edge."""
    back_t = s.thick(1.0, 2.0)
    tilt = s.u(0.0, 0.25)
    rot = rot_x(tilt)  # local y leans towards +z (backwards: the chair faces -z)
    pivot = np.array([0.0, seat_y, depth / 2 - back_t / 2])
    sink = seat_t / 2  # reach into the seat so tilting opens no gap

    def part(x: float, y0: float, y1: float, w: float, mirror: bool = False) -> None:
        s.box(pivot + rot @ [x, (y0 + y1) / 2, 0], (w, y1 - y0, back_t), rot=rot, mirror=mirror)

    style = s.pick(("solid", "solid", "slats", "frame"))
    back_w = width * s.u(0.8, 1.0)
    if style == "solid":
        part(0, -sink, back_h, back_w)
        return
    post = s.thick(1.0, 1.8)
    rail = s.thick(1.0, 2.5)
    part(back_w / 2 - post / 2, -sink, back_h, post, mirror=True)
    part(0, back_h - rail, back_h, back_w)
    inner = back_w - 2 * post
    if style == "slats":
        n = int(s.rng.integers(1, 5))
        slat = min(s.thick(1.0, 2.0), inner / (n + 1))
        for x in np.linspace(-inner / 2, inner / 2, n + 2)[1:-1]:
            part(float(x), 0, back_h - rail + 0.005, max(slat, s.m))
    else:
        y = back_h * s.u(0.3, 0.6)
        part(0, y, y + s.thick(1.0, 2.0), back_w)


def _table(rng: np.random.Generator) -> list[Primitive]:
    height = float(rng.uniform(0.4, 1.1))
    round_top = rng.random() < 0.3
    if round_top:
        width = depth = 2 * float(rng.uniform(0.3, 0.8))
    else:
        width = float(rng.uniform(0.6, 2.0))
        depth = float(rng.uniform(0.45, min(1.2, width)))
    s = _Parts(rng, max(width, depth, height))
    top_t = s.thick(1.0, 1.8)
    under = height - top_t
    if round_top:
        s.cyl((0, height - top_t / 2, 0), width / 2, top_t)
    else:
        s.box((0, height - top_t / 2, 0), (width, top_t, depth))
    style = s.pick(("four", "four", "pedestal") if round_top else ("four", "four", "four", "pedestal", "trestle"))
    if style == "four":
        leg = s.thick(1.0, 2.5)
        round_ = s.chance(0.5)
        if round_top:
            r = width / 2 * s.u(0.45, 0.75)
            x = z = r / math.sqrt(2)
        else:
            x = width / 2 - leg / 2 - s.u(0, 0.1) * width
            z = depth / 2 - leg / 2 - s.u(0, 0.1) * depth
        for zz in (-z, z):
            s.leg(x, zz, 0.0, under + 0.01, leg, round_, mirror=True)
        if not round_top and s.chance(0.5):  # apron under the top
            apron_h, apron_t = s.thick(1.0, 3.0), s.thick(1.0, 1.3)
            y = under - apron_h / 2 + 0.005
            s.box((x, y, 0), (apron_t, apron_h, 2 * z), mirror=True)
            s.box((0, y, z), (2 * x, apron_h, apron_t))
            s.box((0, y, -z), (2 * x, apron_h, apron_t))
        if s.chance(0.25):  # lower shelf between the legs
            y = under * s.u(0.15, 0.35)
            s.box((0, y, 0), (2 * x, s.thick(1.0, 1.5), 2 * z))
    elif style == "pedestal":
        column_r = s.thick(0.7, 2.5)
        foot_t = s.thick(1.0, 1.6)
        s.cyl((0, under / 2 + 0.005, 0), column_r, under + 0.01)
        if s.chance(0.6):
            s.cyl((0, foot_t / 2, 0), min(width, depth) / 2 * s.u(0.4, 0.8), foot_t, radius_top=None)
        else:  # a cross of four feet
            reach = min(width, depth) / 2 * s.u(0.5, 0.9)
            foot_w = s.thick(1.0, 1.6)
            s.box((0, foot_t / 2, 0), (2 * reach, foot_t, foot_w))
            s.box((0, foot_t / 2, 0), (foot_w, foot_t, 2 * reach))
    else:  # trestle: two side panels and a beam
        panel_t = s.thick(1.0, 1.8)
        panel_d = depth * s.u(0.5, 0.9)
        x = width / 2 - panel_t / 2 - s.u(0, 0.12) * width
        s.box((x, under / 2 + 0.005, 0), (panel_t, under + 0.01, panel_d), mirror=True)
        if s.chance(0.7):
            beam = s.thick(1.0, 2.0)
            s.box((0, under * s.u(0.2, 0.6), 0), (2 * x, beam, beam))
    return s.items


def _sofa(rng: np.random.Generator) -> list[Primitive]:
    width, depth = float(rng.uniform(1.2, 2.4)), float(rng.uniform(0.75, 1.0))
    seat_y, back_top = float(rng.uniform(0.38, 0.5)), float(rng.uniform(0.7, 1.0))
    s = _Parts(rng, max(width, depth, back_top))
    feet = s.chance(0.6)
    foot_h = s.thick(1.0, 2.0) if feet else 0.0
    back_t = s.u(max(0.12, s.m), 0.3)
    arms = s.chance(0.85)
    arm_w = s.u(max(0.1, s.m), 0.25) if arms else 0.0
    inner = width / 2 - arm_w
    s.box_span((-inner, foot_h, -depth / 2), (inner, seat_y, depth / 2 - back_t + 0.01))
    s.box_span((-width / 2, foot_h, depth / 2 - back_t), (width / 2, back_top, depth / 2))
    if arms:
        arm_top = seat_y + s.u(0.1, 0.3)
        s.box_span((inner - 0.01, foot_h, -depth / 2), (width / 2, arm_top, depth / 2), mirror=True)
        if s.chance(0.4):  # rolled arms
            s.cyl((width / 2 - arm_w / 2, arm_top, 0), arm_w / 2 * s.u(0.9, 1.15), depth, axis="z", mirror=True)
    if s.chance(0.4):  # back cushions
        n = 2 if width < 1.8 else 3
        t = s.thick(1.0, 2.0)
        w = 2 * inner / n
        for i in range(n):
            x = -inner + w * (i + 0.5)
            s.box((x, (seat_y + back_top) / 2 - 0.02, depth / 2 - back_t - t / 2 + 0.01),
                  (w * 0.98, back_top - seat_y - 0.06, t))
    if s.chance(0.25):  # chaise: the seat runs forward at one end
        w = inner * s.u(0.5, 0.9)
        ext = s.u(0.4, 0.8)
        side = s.pick((-1.0, 1.0))
        x0, x1 = sorted((side * inner, side * (inner - w)))
        s.box_span((x0, foot_h, -depth / 2 - ext), (x1, seat_y, -depth / 2 + 0.01))
    if feet:
        foot = s.thick(1.0, 1.8)
        round_ = s.chance(0.5)
        x, z = width / 2 - foot, depth / 2 - foot
        for zz in (-z, z):
            s.leg(x, zz, 0.0, foot_h + 0.01, foot, round_, mirror=True)
    return s.items


def _lamp(rng: np.random.Generator) -> list[Primitive]:
    style = ("floor", "table", "table", "desk")[int(rng.integers(4))]
    height = float(rng.uniform(1.2, 1.8) if style == "floor" else rng.uniform(0.35, 0.75))
    s = _Parts(rng, height)
    # Base
    base_r = height * s.u(0.12, 0.3) if style != "floor" else height * s.u(0.1, 0.18)
    base_t = s.thick(1.0, 2.0)
    base = s.pick(("disc", "disc", "square", "dome", "cone"))
    if base == "disc":
        s.cyl((0, base_t / 2, 0), base_r, base_t)
    elif base == "square":
        s.box((0, base_t / 2, 0), (2 * base_r, base_t, 2 * base_r))
    elif base == "dome":  # a squashed ellipsoid resting on the floor
        half = max(base_t, base_r * s.u(0.15, 0.4))
        s.ellipsoid((0, half, 0), (base_r, half, base_r))
        base_t = 1.8 * half
    else:
        base_t = max(base_t, base_r * s.u(0.3, 0.6))
        s.cyl((0, base_t / 2, 0), base_r, base_t, radius_top=max(base_r * s.u(0.2, 0.5), s.m))
    pole_r = s.thick(0.55, 1.0)
    shade_h = height * s.u(0.18, 0.35)
    if style == "desk":  # two arm segments with joints, shade at the end pointing down-forward
        p0 = np.array([0, base_t * 0.9, 0])
        lean1, lean2 = s.u(-0.5, 0.2), s.u(0.6, 1.2)
        l1, l2 = height * s.u(0.5, 0.65), height * s.u(0.3, 0.5)
        p1 = p0 + l1 * np.array([0, math.cos(lean1), -math.sin(lean1)])
        p2 = p1 + l2 * np.array([0, math.cos(lean2), -math.sin(lean2)])
        s.rod(p0, p1, pole_r)
        s.rod(p1, p2, pole_r)
        s.ellipsoid(p1, np.full(3, pole_r * 1.3))
        direction = np.array([0, -math.cos(0.3), -math.sin(0.3)])  # down and forward
        r_open = shade_h * s.u(0.5, 0.9)
        r_top = max(r_open * s.u(0.2, 0.5), s.m * 0.55)
        # The shade frustum's narrow end sits on the arm tip; its open end faces `direction`.
        centre = p2 + direction * shade_h / 2
        s.add(Cylinder(centre, rot_to(-direction), radius=r_open, half_height=shade_h / 2, radius_top=r_top))
        return s.items
    pole_top = height - shade_h * s.u(0.3, 0.9)
    s.cyl((0, (base_t + pole_top) / 2 - 0.005, 0), pole_r, pole_top - base_t + 0.01)
    shade = s.pick(("cone", "cone", "drum", "dome", "globe"))
    y = height - shade_h / 2
    r = shade_h * s.u(0.5, 1.1)
    if shade == "cone":
        s.cyl((0, y, 0), r, shade_h, radius_top=max(r * s.u(0.35, 0.8), s.m * 0.55))
    elif shade == "drum":  # an open drum: light is seen through it
        wall = s.thick(1.0, 1.4)
        s.tube((0, y, 0), r, r - wall, shade_h)
        s.rod((-r + wall / 2, y, 0), (r - wall / 2, y, 0), s.m * 0.55)  # spider holding the drum
    elif shade == "dome":
        s.ellipsoid((0, y, 0), (r, shade_h / 2, r))
    else:
        s.ellipsoid((0, height - r, 0), (r, r, r))
    return s.items


def _bench(rng: np.random.Generator) -> list[Primitive]:
    length, depth, seat_y = float(rng.uniform(0.9, 2.0)), float(rng.uniform(0.3, 0.55)), float(rng.uniform(0.38, 0.5))
    back = rng.random() < 0.4
    back_h = float(rng.uniform(0.3, 0.5)) if back else 0.0
    s = _Parts(rng, max(length, depth, seat_y + back_h))
    seat_t = s.thick(1.0, 2.0)
    bottom = seat_y - seat_t
    if s.chance(0.35):  # boards along the length with gaps
        n = min(int(s.rng.integers(3, 6)), int(depth / (1.7 * s.m)))
        board = depth / n
        gap = min(board * 0.3, s.m * 0.6)
        for i in range(n):
            z = -depth / 2 + board * (i + 0.5)
            s.box((0, seat_y - seat_t / 2, z), (length, seat_t, board - gap))
        s.box((0, bottom + s.m / 2, 0), (length * 0.9, s.m, depth * 0.95))  # cleat tying the boards
    else:
        s.box((0, seat_y - seat_t / 2, 0), (length, seat_t, depth))
    style = s.pick(("four", "panels", "aframe", "four"))
    leg = s.thick(1.0, 2.0)
    inset = s.u(0.0, 0.15) * length
    x = length / 2 - leg / 2 - inset
    if style == "four":
        round_ = s.chance(0.4)
        z = depth / 2 - leg / 2 - s.u(0, 0.1) * depth
        xs = [x] + ([0.0] if length > 1.6 and s.chance(0.6) else [])
        for xx in xs:
            for zz in (-z, z):
                s.leg(xx, zz, 0.0, bottom + 0.01, leg, round_, mirror=xx > 0)
    elif style == "panels":
        s.box((x, (bottom + 0.01) / 2, 0), (leg, bottom + 0.01, depth * s.u(0.7, 1.0)), mirror=True)
    else:  # splayed legs meeting under the seat
        r = leg / 2
        spread = depth / 2 * s.u(0.7, 0.95)
        for zz in (-spread, spread):
            s.rod((x, r, zz), (x, bottom + 0.01, zz * 0.3), r, mirror=True)
        s.box((x, bottom - leg / 2, 0), (leg, leg, depth * 0.8), mirror=True)
    if back:
        post = s.thick(1.0, 1.6)
        board_h = s.u(max(s.m, 0.06), back_h * 0.6)
        z = depth / 2 - post / 2
        s.box((x, (bottom + seat_y + back_h) / 2, z), (post, seat_y + back_h - bottom, post), mirror=True)
        s.box((0, seat_y + back_h - board_h / 2, z), (length * s.u(0.9, 1.0), board_h, post))
        if s.chance(0.5):  # a second, lower board
            s.box((0, seat_y + back_h * 0.35, z), (length * 0.95, board_h * 0.8, post))
    if s.chance(0.25):  # armrests
        arm_t, arm_h = s.thick(1.0, 1.5), s.u(0.15, 0.25)
        s.box((length / 2 - arm_t / 2, seat_y + arm_h / 2, 0), (arm_t, arm_h, depth), mirror=True)
    return s.items


def _cabinet(rng: np.random.Generator) -> list[Primitive]:
    style = ("wardrobe", "sideboard", "nightstand", "bookcase")[int(rng.integers(4))]
    dims = {"wardrobe": ((0.8, 1.6), (1.5, 2.2), (0.5, 0.65)), "sideboard": ((1.0, 2.0), (0.6, 1.0), (0.4, 0.55)),
            "nightstand": ((0.4, 0.6), (0.45, 0.7), (0.35, 0.5)), "bookcase": ((0.6, 1.4), (0.8, 2.0), (0.25, 0.4))}
    width, height, depth = (float(rng.uniform(lo, hi)) for lo, hi in dims[style])
    s = _Parts(rng, max(width, height, depth))
    base = s.pick(("feet", "plinth", "none"))
    lift = s.thick(1.0, 2.5) if base != "none" else 0.0
    if base == "feet":
        foot = s.thick(1.0, 1.5)
        x, z = width / 2 - foot, depth / 2 - foot
        round_ = s.chance(0.5)
        for zz in (-z, z):
            s.leg(x, zz, 0.0, lift + 0.01, foot, round_, mirror=True)
    elif base == "plinth":
        inset = s.u(0.0, 0.05)
        s.box_span((-width / 2 + inset, 0.0, -depth / 2 + inset), (width / 2 - inset, lift + 0.01, depth / 2 - inset))
    if style == "bookcase":
        board = s.thick(1.0, 1.5)
        s.box_span((width / 2 - board, lift, -depth / 2), (width / 2, height, depth / 2), mirror=True)
        s.box_span((-width / 2, lift, depth / 2 - board), (width / 2, height, depth / 2))  # back
        n = int(s.rng.integers(2, 6))
        for y in np.linspace(lift + board / 2, height - board / 2, n + 1):
            s.box((0, float(y), 0), (width, board, depth))
        return s.items
    s.box_span((-width / 2, lift, -depth / 2), (width / 2, height, depth / 2))
    if s.chance(0.5):  # a top slab overhanging the body
        t, over = s.thick(1.0, 1.5), s.u(0.0, 0.04)
        s.box((0, height + t / 2 - 0.01, -over / 2), (width + 2 * over, t, depth + over))
    # Handles on the front (-z): vertical bars for doors or horizontal bars for drawers.
    bar, proud = s.thick(1.0, 1.3), s.thick(1.0, 1.3)
    z = -depth / 2 - proud / 2 + 0.005
    if s.chance(0.5):
        doors = int(s.rng.integers(1, 4))
        length = min(height - lift, 1.0) * s.u(0.15, 0.4)
        y = lift + (height - lift) * s.u(0.4, 0.6)
        for i in range(doors):
            x = -width / 2 + width * (i + 0.5) / doors + width / doors * 0.35 * (1 if i % 2 == 0 else -1)
            s.box((x, y, z), (bar, max(length, bar), proud))
    else:
        rows = int(s.rng.integers(1, 5))
        length = width * s.u(0.15, 0.35)
        for i in range(rows):
            y = lift + (height - lift) * (i + 0.5) / rows
            s.box((0, y, z), (length, bar, proud))
    return s.items


def _airplane(rng: np.random.Generator) -> list[Primitive]:
    span = float(rng.uniform(0.7, 1.3))  # in fuselage lengths
    s = _Parts(rng, max(1.0, span))
    radius = max(s.u(0.04, 0.08), s.m * 0.6)
    nose, tail = s.u(0.08, 0.2), s.u(0.15, 0.3)
    body = 1.0 - nose - tail  # the fuselage runs from z = -0.5 (nose) to +0.5 (tail)
    z0 = -0.5 + nose
    if s.chance(0.75):  # cylinder with an ellipsoid nose and a tapering tail cone
        s.cyl((0, 0, z0 + body / 2), radius, body, axis="z")
        s.ellipsoid((0, 0, z0), (radius, radius, nose))
        tail_r = max(radius * s.u(0.25, 0.5), s.m * 0.55)
        s.cyl((0, 0, z0 + body + tail / 2), radius, tail, axis="z", radius_top=tail_r)
    else:  # a single elongated body
        s.ellipsoid((0, 0, 0), (radius * s.u(1.0, 1.4), radius, 0.5))
    # Main wings: swept, with dihedral, low / mid / high on the fuselage.
    chord = s.u(0.12, 0.28)
    wing_t = s.thick(1.0, 1.3)
    sweep, dihedral = s.u(0.0, 0.6), s.u(0.0, 0.1)
    half_span = span / 2
    root = np.array([0, s.u(-0.6, 0.6) * radius, s.u(-0.12, 0.1)])
    rot = rot_y(-sweep) @ rot_z(dihedral)
    s.box(root + rot @ [half_span / 2, 0, 0], (half_span, wing_t, chord), rot=rot, mirror=True)
    if s.chance(0.6):  # engines under the wings
        eng_r = max(s.u(0.025, 0.045), s.m * 0.55)
        eng_l = s.u(0.1, 0.2)
        stations = [s.u(0.25, 0.45)] + ([s.u(0.55, 0.75)] if s.chance(0.35) else [])
        for station in stations:
            at = root + rot @ [half_span * station, 0, 0]
            s.cyl(at + [0, -wing_t / 2 - eng_r * 0.7, -chord * 0.3], eng_r, eng_l, axis="z", mirror=True)
    # Tail: a fin pitched back, and a stabiliser low on the fuselage or on top of the fin (T-tail).
    fin_h, fin_c = s.u(0.1, 0.22), s.u(0.08, 0.18)
    fin_t = s.thick(1.0, 1.3)
    pitch = s.u(0.2, 0.7)
    fin_rot = rot_x(pitch)  # top leans towards +z (the tail)
    # Keep the fin's trailing top corner over the tail end.
    fin_root = np.array([0, 0, 0.5 - fin_c / 2 - (radius + fin_h) * math.sin(pitch) - s.u(0.0, 0.05)])
    s.box(fin_root + fin_rot @ [0, (radius + fin_h) / 2, 0], (fin_t, radius + fin_h, fin_c), rot=fin_rot)
    stab_span, stab_c = span * s.u(0.2, 0.4) / 2, s.u(0.06, 0.14)
    stab_root = (fin_root + fin_rot @ [0, radius + fin_h - fin_t, 0]) if s.chance(0.25) else fin_root
    stab_rot = rot_y(-sweep * s.u(0.5, 1.2))
    s.box(stab_root + stab_rot @ [stab_span / 2, 0, 0], (stab_span, s.thick(1.0, 1.2), stab_c), rot=stab_rot,
          mirror=True)
    return s.items


def _slope_box(s: _Parts, a: Sequence[float], b: Sequence[float], corner: Sequence[float], width: float) -> None:
    """A box under the slope from a to b (points (y, z)) that fills the triangle a, b, corner."""
    a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, corner))
    d = (b - a) / np.linalg.norm(b - a)
    normal = np.array([-d[1], d[0]])
    if np.dot(c - a, normal) > 0:
        normal = -normal  # point away from the corner
    depth = max(abs(float(np.dot(c - a, normal))) * 1.05, s.m * 1.05)
    centre = (a + b) / 2 - normal * depth / 2
    ny, nz = normal
    rot = np.array([[1.0, 0, 0], [0, ny, -nz], [0, nz, ny]])  # local y -> slope normal, local z along it
    s.box((0, centre[0], centre[1]), (width, depth, float(np.linalg.norm(b - a))), rot=rot)


def _car(rng: np.random.Generator) -> list[Primitive]:
    length, width = float(rng.uniform(3.6, 5.2)), float(rng.uniform(1.6, 2.0))
    s = _Parts(rng, length)
    style = s.pick(("sedan", "hatch", "suv", "pickup", "sports"))
    wheel_r = s.u(0.28, 0.42)
    wheel_w = s.u(max(0.18, s.m), max(0.32, s.m * 1.3))
    body_y0 = wheel_r * s.u(0.5, 0.9)
    body_h = s.u(0.45, 0.75) if style != "sports" else s.u(0.35, 0.5)
    body_y1 = body_y0 + body_h
    s.box_span((-width / 2, body_y0, -length / 2), (width / 2, body_y1, length / 2))
    cab_h = {"sports": s.u(0.3, 0.45), "suv": s.u(0.55, 0.8)}.get(style, s.u(0.4, 0.6))
    cab_w = width * s.u(0.8, 0.95)
    if style == "pickup":
        cab0, cab1 = -length / 2 + length * s.u(0.22, 0.32), length * s.u(-0.1, 0.05)
    elif style in ("hatch", "suv"):
        cab0, cab1 = -length / 2 + length * s.u(0.2, 0.35), length / 2 - length * s.u(0.0, 0.08)
    else:
        cab0, cab1 = -length / 2 + length * s.u(0.25, 0.38), length / 2 - length * s.u(0.15, 0.3)
    top = body_y1 + cab_h
    s.box_span((-cab_w / 2, body_y1 - 0.01, cab0), (cab_w / 2, top, cab1))
    # Windscreen (and rear window) slopes filling the wedge between the cabin and the bonnet.
    run = min(s.u(0.3, 0.7) * cab_h / 0.5, 0.8 * (cab0 + length / 2))
    _slope_box(s, (top, cab0), (body_y1, cab0 - run), (body_y1, cab0), cab_w)
    if style in ("sedan", "sports") and s.chance(0.8):
        run = min(s.u(0.2, 0.6) * cab_h / 0.5, 0.8 * (length / 2 - cab1))
        _slope_box(s, (top, cab1), (body_y1, cab1 + run), (body_y1, cab1), cab_w)
    if style == "pickup":  # an open bed: side walls and a tailgate
        wall = s.thick(1.0, 1.3)
        bed_h = s.u(0.25, 0.4)
        s.box_span((width / 2 - wall, body_y1 - 0.01, cab1), (width / 2, body_y1 + bed_h, length / 2), mirror=True)
        s.box_span((-width / 2, body_y1 - 0.01, length / 2 - wall), (width / 2, body_y1 + bed_h, length / 2))
    wheelbase = length * s.u(0.55, 0.68)
    shift = length * s.u(-0.04, 0.04)
    x = width / 2 - wheel_w / 2 + s.u(-0.02, 0.05)
    for z in (-wheelbase / 2 + shift, wheelbase / 2 + shift):
        s.cyl((x, wheel_r, z), wheel_r, wheel_w, axis="x", mirror=True)
    return s.items


def _mug(rng: np.random.Generator) -> list[Primitive]:
    height, radius = float(rng.uniform(0.08, 0.13)), float(rng.uniform(0.035, 0.06))
    ring = height * float(rng.uniform(0.22, 0.36))  # handle's major radius
    s = _Parts(rng, max(height, 2 * radius + ring * 2.1))
    handle_r = min(s.thick(0.5, 0.8), height / 2 - ring - 0.002)
    handle_r = max(handle_r, s.m * 0.5)
    handle_y = height / 2 + s.u(-0.1, 0.1) * (height / 2 - ring - handle_r)
    if s.chance(0.75):  # hollow: a wall on a bottom disc
        wall = s.thick(1.0, 1.5)
        bottom = s.thick(1.0, 1.6)
        s.cyl((0, bottom / 2, 0), radius, bottom)
        s.tube((0, height / 2, 0), radius, radius - wall, height)
        # The ring's inner edge stays inside the wall so the handle never pokes into the cup.
        cx = radius + ring - (wall - handle_r) * 0.5 if wall > handle_r else radius + ring
    else:
        top_r = radius * s.u(0.8, 1.15)
        s.cyl((0, height / 2, 0), radius, height, radius_top=top_r)
        cx = (radius + top_r) / 2 + ring * s.u(0.3, 0.7)  # the ring crosses the side at mid height
    s.torus((cx, handle_y, 0), ring, handle_r, axis="z")
    return s.items


def _vase(rng: np.random.Generator) -> list[Primitive]:
    height = float(rng.uniform(0.2, 0.6))
    s = _Parts(rng, height)
    belly = height * s.u(0.16, 0.35)
    neck_r = max(belly * s.u(0.3, 0.7), s.m * 0.8)
    shoulder = height * s.u(0.6, 0.85)  # where the neck starts
    wall = s.thick(1.0, 1.3)
    open_neck = s.chance(0.5) and neck_r - wall >= s.m * 0.5
    if s.chance(0.6):  # a turned profile: frustums through (height, radius) knots, foot to shoulder
        ys = [0.0, shoulder * s.u(0.3, 0.7), shoulder]
        radii = [belly * s.u(0.4, 0.9), belly, neck_r * s.u(1.0, 1.4)]
        if s.chance(0.5):  # an extra knot shapes the lower body
            ys.insert(1, ys[1] * s.u(0.35, 0.65))
            radii.insert(1, (radii[0] + belly) / 2 * s.u(0.8, 1.2))
        for y0, y1, r0, r1 in zip(ys, ys[1:], radii, radii[1:]):
            s.cyl((0, (y0 + y1) / 2, 0), r0, y1 - y0 + 0.002, radius_top=r1)
    else:  # a bulb on an optional foot
        y0 = 0.0
        if s.chance(0.6):
            foot_t = s.thick(1.0, 1.6)
            s.cyl((0, foot_t / 2, 0), belly * s.u(0.4, 0.7), foot_t)
            y0 = foot_t * 0.7
        s.ellipsoid((0, (y0 + shoulder) / 2, 0), (belly, (shoulder - y0) / 2 + 0.004, belly))
        shoulder -= 0.004  # the neck reaches into the bulb
    neck_h = height - shoulder
    if open_neck:
        s.tube((0, shoulder + neck_h / 2, 0), neck_r, neck_r - wall, neck_h)
    else:
        s.cyl((0, shoulder + neck_h / 2, 0), neck_r, neck_h, radius_top=neck_r * s.u(0.9, 1.6))
    if s.chance(0.35):  # a lip ring
        lip = s.thick(0.55, 0.8)
        s.torus((0, height - lip, 0), neck_r, lip)
    if not open_neck and s.chance(0.25):  # two handles on the shoulders (they would poke into an open neck)
        hr = s.thick(0.55, 0.7)
        ring = height * s.u(0.08, 0.14)
        s.torus((neck_r + ring * 0.6, shoulder + neck_h * 0.3, 0), ring, hr, axis="z", mirror=True)
    return s.items


GENERATORS: dict[str, Callable[[np.random.Generator], list[Primitive]]] = {
    "chair": _chair, "table": _table, "sofa": _sofa, "lamp": _lamp, "bench": _bench,
    "cabinet": _cabinet, "airplane": _airplane, "car": _car, "mug": _mug, "vase": _vase,
}


def generate(category: str, rng: np.random.Generator, max_tries: int = 50) -> Shape:
    """A random shape of `category`, normalised to the unit cube; redrawn until every part is thick enough."""
    if category not in GENERATORS:
        raise ValueError(f"unknown category {category!r}; choose from {', '.join(CATEGORIES)}")
    for _ in range(max_tries):
        shape = normalise(category, GENERATORS[category](rng))
        if min(p.thickness for p in shape.primitives) >= MIN_THICKNESS:
            return shape
    raise RuntimeError(f"{category}: no shape with parts thicker than {MIN_THICKNESS} in {max_tries} tries")


# ------------------------------------------------------------------------------------------ writer


@dataclass
class Settings:
    n_uniform: int = 100_000
    n_near: int | None = None  # None: as many as n_uniform
    n_surface: int = 100_000
    near_sigmas: tuple[float, ...] = (0.01, 0.05)  # equal shares of the near points per sigma
    voxel_resolution: int = 32
    voxel_surface_samples: int = 100_000
    mesh: bool = True


def _save_npz(path: Path, **arrays: Array) -> None:
    """np.savez_compressed with fixed zip timestamps, so equal arrays give equal bytes; atomic.

    Deflate saves about a quarter here (normals of flat faces compress well); np.load reads it as is.
    """
    with atomic_output(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, buffer.getvalue())


def _labelled(shape: Shape, points: Array) -> tuple[Array, Array]:
    """float16 points and the packed occupancy of the stored (rounded) points, so labels stay exact."""
    stored = points.astype(np.float16)
    return stored, np.packbits(shape.contains(stored.astype(np.float64)))


def write_model(shape: Shape, folder: str | os.PathLike[str], rng: np.random.Generator,
                settings: Settings | None = None) -> None:
    """points.npz, points_near.npz, pointcloud.npz, model.binvox (and mesh.obj) of one shape in `folder`."""
    st = settings or Settings()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame = {"loc": shape.loc.astype(np.float64), "scale": np.float64(shape.scale)}

    uniform = rng.uniform(-BOX_SIZE / 2, BOX_SIZE / 2, (st.n_uniform, 3))
    points, occ = _labelled(shape, uniform)
    _save_npz(folder / "points.npz", points=points, occupancies=occ, **frame)

    n_near = st.n_uniform if st.n_near is None else st.n_near
    surface, _ = shape.sample_surface(n_near, rng)
    sigma = np.repeat(np.asarray(st.near_sigmas, dtype=np.float64), -(-n_near // len(st.near_sigmas)))[:n_near]
    near = (surface + rng.normal(size=surface.shape) * sigma[:, None])[rng.permutation(n_near)]
    points, occ = _labelled(shape, near)
    _save_npz(folder / "points_near.npz", points=points, occupancies=occ, **frame)

    surface, normals = shape.sample_surface(st.n_surface, rng)
    _save_npz(folder / "pointcloud.npz", points=surface.astype(np.float16), normals=normals.astype(np.float16),
              **frame)

    grid = shape.voxels(st.voxel_resolution, rng, st.voxel_surface_samples)
    write_binvox(folder / "model.binvox", grid, translate=(-0.5, -0.5, -0.5), scale=1.0)

    if st.mesh:
        mesh = shape.trimesh()
        write_mesh(folder / "mesh.obj", mesh.vertices, mesh.faces)


def model_rng(seed: int, category: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, CATEGORIES.index(category), index])


def model_id(category: str, index: int) -> str:
    return f"{category}_{index:05d}"


def _build_one(task: tuple[str, str, int, int, Settings]) -> str:
    """Worker: generate and write one model unless all its files exist already (resume)."""
    out, category, index, seed, settings = task
    folder = Path(out) / category / model_id(category, index)
    needed = MODEL_FILES + (("mesh.obj",) if settings.mesh else ())
    if all((folder / name).is_file() for name in needed):
        return "skipped"
    rng = model_rng(seed, category, index)
    write_model(generate(category, rng), folder, rng, settings)
    return "written"


def write_splits(out: Path, category: str, count: int, seed: int, fractions: tuple[float, float] = (0.8, 0.1)) -> None:
    """train/val/test.lst by a seeded shuffle, each sorted; no trailing newline (the original loader
    splits on '\\n' and would read an empty model id)."""
    ids = [model_id(category, i) for i in range(count)]
    order = np.random.default_rng([seed, CATEGORIES.index(category), _SPLIT_STREAM]).permutation(count)
    n_train, n_val = round(fractions[0] * count), round(fractions[1] * count)
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    for split, picked in parts.items():
        with atomic_output(out / category / f"{split}.lst") as tmp:
            Path(tmp).write_text("\n".join(ids[i] for i in sorted(picked)))


def write_metadata(out: Path, categories: Sequence[str]) -> None:
    """metadata.yaml, merged with the categories an earlier run listed."""
    path = out / "metadata.yaml"
    meta = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
    meta.update({c: {"id": c, "name": c} for c in categories})
    with atomic_output(path) as tmp:
        Path(tmp).write_text(yaml.safe_dump(dict(sorted(meta.items())), sort_keys=False))


def build_dataset(out: str | os.PathLike[str], categories: Sequence[str] = CATEGORIES, per_category: int = 200,
                  seed: int = 0, settings: Settings | None = None, workers: int = 1, progress: bool = True) -> dict:
    """Write every model, the split lists and metadata.yaml; returns counts of written and skipped models."""
    from tqdm import tqdm

    out = Path(out)
    settings = settings or Settings()
    unknown = [c for c in categories if c not in GENERATORS]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; choose from {', '.join(CATEGORIES)}")
    for category in categories:
        (out / category).mkdir(parents=True, exist_ok=True)
    tasks = [(str(out), c, i, seed, settings) for c in categories for i in range(per_category)]
    counts = {"written": 0, "skipped": 0}
    with tqdm(total=len(tasks), desc="shapes", unit="shape", disable=not progress) as bar:
        if workers <= 1:
            results = map(_build_one, tasks)
            for result in results:
                counts[result] += 1
                bar.update()
        else:
            # spawn: no state inherited from the parent; every task carries its own seed.
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for result in pool.imap_unordered(_build_one, tasks, chunksize=1):
                    counts[result] += 1
                    bar.update()
    for category in categories:
        write_splits(out, category, per_category, seed)
    write_metadata(out, categories)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.shapes", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="dataset folder (created; existing models are kept)")
    parser.add_argument("--per-category", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--categories", default=",".join(CATEGORIES), help="comma-separated subset")
    parser.add_argument("--uniform-points", type=int, default=100_000, help="points.npz size")
    parser.add_argument("--near-points", type=int, default=None, help="points_near.npz size (default: uniform)")
    parser.add_argument("--near-sigmas", default="0.01,0.05", help="noise of the near points, equal shares")
    parser.add_argument("--surface-points", type=int, default=100_000, help="pointcloud.npz size")
    parser.add_argument("--no-mesh", action="store_true", help="skip mesh.obj")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--render", action="store_true",
                        help="also render img_choy2016/ (24 views) of every model without them (needs bpy)")
    parser.add_argument("--render-engine", choices=("BLENDER_WORKBENCH", "CYCLES"), default="BLENDER_WORKBENCH",
                        help="Workbench falls back to Cycles where it cannot start")
    args = parser.parse_args(argv)
    if args.render and args.no_mesh:
        parser.error("--render renders mesh.obj: drop --no-mesh")
    categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    settings = Settings(n_uniform=args.uniform_points, n_near=args.near_points, n_surface=args.surface_points,
                        near_sigmas=tuple(float(v) for v in args.near_sigmas.split(",")), mesh=not args.no_mesh)
    try:
        counts = build_dataset(args.out, categories, args.per_category, args.seed, settings, args.workers)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {counts['written']} models written, {counts['skipped']} already there")
    if args.render:
        from .render import render_models, report

        folders = [args.out / c / model_id(c, i) for c in categories for i in range(args.per_category)]
        print(report(render_models(folders, engine=args.render_engine)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
