"""The ten categories' generators: random man-made shapes as unions of primitives (`generate`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from .primitives import (
    AXIS_ROT,
    Array,
    Box,
    Cylinder,
    Ellipsoid,
    Primitive,
    Shape,
    Torus,
    Tube,
    normalise,
    rot_to,
    rot_x,
    rot_y,
    rot_z,
)

CATEGORIES = ("chair", "table", "sofa", "lamp", "bench", "cabinet", "airplane", "car", "mug", "vase")
MIN_THICKNESS = 0.04  # of the longest bbox edge: a 32^3 grid (cell 1/32 = 0.031) still shows every part
_DESIGN_THICKNESS = 0.046  # what the generators aim for, a margin above MIN_THICKNESS


# ------------------------------------------------------------------------------------------ builders
# Generators work in metres (airplanes in fuselage lengths) and return primitives in that frame.
# Each one picks the big dimensions first, then sizes every part from m = _DESIGN_THICKNESS * the
# largest dimension, so thin parts stay visible after normalisation.


def _vec(values: ArrayLike) -> Array:
    return np.asarray(values, dtype=np.float64)


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

    def box(self, center: ArrayLike, size: ArrayLike, rot: Array | None = None, mirror: bool = False) -> Primitive:
        return self.add(Box(_vec(center), np.eye(3) if rot is None else rot, half=_vec(size) / 2), mirror)

    def box_span(self, lo: ArrayLike, hi: ArrayLike, mirror: bool = False) -> Primitive:
        """An axis-aligned box between two corners."""
        lo, hi = _vec(lo), _vec(hi)
        return self.box((lo + hi) / 2, np.abs(hi - lo), mirror=mirror)

    def cyl(self, center: ArrayLike, radius: float, height: float, axis: str = "y",
            radius_top: float | None = None, rot: Array | None = None, mirror: bool = False) -> Primitive:
        rot = AXIS_ROT[axis] if rot is None else rot
        return self.add(Cylinder(_vec(center), rot, radius=radius, half_height=height / 2, radius_top=radius_top),
                        mirror)

    def rod(self, start: ArrayLike, end: ArrayLike, radius: float, mirror: bool = False) -> Primitive:
        """A cylinder from `start` to `end`."""
        start, end = _vec(start), _vec(end)
        return self.add(Cylinder((start + end) / 2, rot_to(end - start), radius=radius,
                                 half_height=float(np.linalg.norm(end - start)) / 2), mirror)

    def tube(self, center: ArrayLike, radius: float, inner_radius: float, height: float,
             axis: str = "y") -> Primitive:
        return self.add(Tube(_vec(center), AXIS_ROT[axis], radius=radius, inner_radius=inner_radius,
                             half_height=height / 2))

    def ellipsoid(self, center: ArrayLike, radii: ArrayLike, rot: Array | None = None,
                  mirror: bool = False) -> Primitive:
        return self.add(Ellipsoid(_vec(center), np.eye(3) if rot is None else rot, radii=_vec(radii)), mirror)

    def torus(self, center: ArrayLike, major: float, minor: float, axis: str = "y",
              mirror: bool = False) -> Primitive:
        return self.add(Torus(_vec(center), AXIS_ROT[axis], major=major, minor=minor), mirror)

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


def _slope_box(s: _Parts, a: ArrayLike, b: ArrayLike, corner: ArrayLike, width: float) -> None:
    """A box under the slope from a to b (points (y, z)) that fills the triangle a, b, corner."""
    a, b, c = _vec(a), _vec(b), _vec(corner)
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
