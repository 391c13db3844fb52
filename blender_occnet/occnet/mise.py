"""Multiresolution IsoSurface Extraction (MISE): picks the lattice points the network must evaluate."""

# Behaviour follows the octree of the original Occupancy Networks code (im2mesh/utils/libmise):
# the same points are evaluated and `to_dense` returns the same grid.  Instead of an octree this
# keeps dense boolean arrays (one per level for the leaf cells, one for the fine lattice), so every
# step is a handful of whole-array numpy operations; only levels and rounds are Python loops.

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from ..common.errors import Cancelled, GenerationError, InputError

#: Finest lattice a ValueStore can address by default: 512 cells per axis holds every lattice of
#: 16..512 cells whose size divides it (resolution_0 16/32/64 with 1..3 upsampling steps).
DEFAULT_UNIT_RESOLUTION = 512

#: Largest final lattice MISE accepts: the value grid alone takes 8 * (R + 1)**3 bytes (1 GiB at 512).
MAX_RESOLUTION = 1024


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_coords(points: object, resolution: int, what: str) -> np.ndarray:
    """(N, 3) integer lattice coordinates in 0..resolution, as int64."""
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"{what} must have shape (N, 3), got {pts.shape}")
    if pts.size and not np.issubdtype(pts.dtype, np.integer):
        raise InputError(f"{what} must be integer lattice coordinates, got dtype {pts.dtype}")
    pts = pts.astype(np.int64, copy=False)
    if pts.size and (pts.min() < 0 or pts.max() > resolution):
        raise InputError(f"{what} must lie in 0..{resolution}, got values in {pts.min()}..{pts.max()}")
    return pts


def _check_values(values: object, n: int) -> np.ndarray:
    vals = np.asarray(values)
    if vals.shape != (n,):
        raise InputError(f"values must have shape ({n},) to match the points, got {vals.shape}")
    if vals.size and not (np.issubdtype(vals.dtype, np.floating) or np.issubdtype(vals.dtype, np.integer)):
        raise InputError(f"values must be real numbers, got dtype {vals.dtype}")
    # float32: what the networks return, and half the memory of every grid below (0.5 GB at 512 cells).
    vals = vals.astype(np.float32, copy=False)
    bad = ~np.isfinite(vals)
    if bad.any():
        n_nan = int(np.isnan(vals).sum())
        n_inf = int(bad.sum()) - n_nan
        parts = [f"NaN for {n_nan}"] if n_nan else []
        parts += [f"an infinite value for {n_inf}"] if n_inf else []
        raise GenerationError(
            f"the network returned {' and '.join(parts)} of {n} points; "
            "the weights or the input are probably broken"
        )
    return vals


class ValueStore:
    """Known values of ONE function on ONE box, keyed by lattice position, shared between MISE runs.

    A point with coordinate q on a lattice of R cells is stored at q * (unit_resolution // R), so
    lattices of different sizes over the same box share the points they have in common.  The store
    does not know which function or box it belongs to: keep one store per job (latent code, box).
    """

    def __init__(self, unit_resolution: int = DEFAULT_UNIT_RESOLUTION) -> None:
        self._unit = _check_int("unit_resolution", unit_resolution, 1)
        self._keys = np.empty(0, dtype=np.int64)  # sorted, unique
        self._values = np.empty(0, dtype=np.float32)
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []  # added since the last merge

    @property
    def unit_resolution(self) -> int:
        return self._unit

    def __len__(self) -> int:
        self._merge()
        return int(self._keys.size)

    def supports(self, resolution: int) -> bool:
        """Whether a lattice of `resolution` cells maps onto the store's unit lattice."""
        return resolution >= 1 and self._unit % resolution == 0

    def _to_keys(self, coords: np.ndarray, resolution: int) -> np.ndarray:
        if not self.supports(resolution):
            raise InputError(
                f"a value store with unit resolution {self._unit} cannot hold a lattice of "
                f"{resolution} cells (it must divide {self._unit})"
            )
        scale = self._unit // resolution
        n = self._unit + 1
        c = coords * scale
        return (c[:, 0] * n + c[:, 1]) * n + c[:, 2]

    def add(self, coords: np.ndarray, values: np.ndarray, resolution: int) -> None:
        """Store values at lattice `coords` (N, 3) of a `resolution`-cell lattice; later wins."""
        pts = _check_coords(coords, resolution, "coords")
        vals = _check_values(values, len(pts))
        if len(pts):
            self._chunks.append((self._to_keys(pts, resolution), vals.copy()))

    def lookup(self, coords: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        """(found (N,) bool, values (N,) float32, NaN where not found) for lattice `coords`."""
        pts = _check_coords(coords, resolution, "coords")
        keys = self._to_keys(pts, resolution)
        self._merge()
        out = np.full(len(keys), np.nan, dtype=np.float32)
        if not self._keys.size or not keys.size:
            return np.zeros(len(keys), dtype=bool), out
        idx = np.searchsorted(self._keys, keys)
        idx_c = np.minimum(idx, self._keys.size - 1)
        found = self._keys[idx_c] == keys
        out[found] = self._values[idx_c[found]]
        return found, out

    def points(self, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        """All stored points that lie on a `resolution`-cell lattice: (coords (N, 3) int64, values)."""
        if not self.supports(resolution):
            self._to_keys(np.zeros((0, 3), dtype=np.int64), resolution)  # raises the message
        self._merge()
        n = self._unit + 1
        scale = self._unit // resolution
        c = np.stack([self._keys // (n * n), (self._keys // n) % n, self._keys % n], axis=1)
        on = (c % scale == 0).all(axis=1)
        return c[on] // scale, self._values[on]

    def _merge(self) -> None:
        if not self._chunks:
            return
        keys = np.concatenate([self._keys] + [k for k, _ in self._chunks])
        vals = np.concatenate([self._values] + [v for _, v in self._chunks])
        self._chunks = []
        order = np.argsort(keys, kind="stable")  # stable: the last value added for a key wins
        keys, vals = keys[order], vals[order]
        last = np.append(keys[1:] != keys[:-1], True)
        self._keys, self._values = keys[last], vals[last]


def _pool2(a: np.ndarray) -> np.ndarray:
    """OR over 2x2x2 child cells: the closed box of a cell is the union of its children's boxes."""
    out = a[0::2, 0::2, 0::2].copy()
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                if dx or dy or dz:
                    out |= a[dx::2, dy::2, dz::2]
    return out


def _corner_dilate(active: np.ndarray) -> np.ndarray:
    """The 3x3x3 sub-lattice points of every active cell, on the lattice of half the cell size."""
    out = active
    for axis in range(3):  # separable: the 27 points are a product of 3 per axis
        r = out.shape[axis]
        shape = list(out.shape)
        shape[axis] = 2 * r + 1
        grown = np.zeros(shape, dtype=bool)
        for start in range(3):
            index = [slice(None)] * 3
            index[axis] = slice(start, start + 2 * r, 2)
            grown[tuple(index)] |= out
        out = grown
    return out


def _fill_like_original(grid: np.ndarray, check_cancel: Callable[[], None] = lambda: None) -> None:
    """In place: each NaN takes its predecessor's (already filled) value along x, then y, then z.

    (Slice by slice: a vectorised forward fill, a running max of indices and a gather, measured 2x
    slower at 512 cells, most of it in strided gathers.)"""
    for axis in range(3):
        view = np.moveaxis(grid, axis, 0)
        for i in range(1, view.shape[0]):
            if i % 64 == 1:
                check_cancel()
            cur = view[i]
            np.copyto(cur, view[i - 1], where=np.isnan(cur))


class MISE:
    """Adaptive evaluation of an occupancy function on a lattice of resolution_0 * 2**steps cells.

    Usage: ``pts = m.query()``; while ``len(pts)``: evaluate the logits at ``pts`` (integer lattice
    coordinates 0..m.resolution, map them to the box yourself), ``m.update(pts, values)``,
    ``pts = m.query()``; then ``m.to_dense()``.  A cell is subdivided when the known values in its
    closed box lie on both sides of `threshold` (a logit; equal counts as both sides).

    With a `store`, values already in it are used instead of being queried, and every value passed
    to `update` is added to it; a second run at another threshold (or another lattice size that
    the store supports) then asks only for points it has not seen.
    """

    def __init__(
        self,
        resolution_0: int,
        upsampling_steps: int,
        threshold: float,
        store: ValueStore | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> None:
        self.resolution_0 = _check_int("resolution_0", resolution_0, 1)
        self.upsampling_steps = _check_int("upsampling_steps", upsampling_steps, 0)
        try:
            thr = float(threshold)
        except (TypeError, ValueError):
            raise InputError(f"threshold must be a number, got {threshold!r}") from None
        if not np.isfinite(thr):
            raise InputError(f"threshold must be a finite logit, got {threshold!r}")
        self.threshold = thr
        self.resolution = self.resolution_0 << self.upsampling_steps
        if self.resolution > MAX_RESOLUTION:
            raise InputError(
                f"resolution_0 * 2**upsampling_steps = {self.resolution} cells is more than "
                f"{MAX_RESOLUTION}; use fewer upsampling steps"
            )
        if store is not None and not store.supports(self.resolution):
            raise InputError(
                f"the value store (unit resolution {store.unit_resolution}) cannot hold a lattice "
                f"of {self.resolution} cells; use a store whose unit resolution is a multiple of it"
            )
        self.store = store
        # Checked between the whole-array steps of a round (each a fraction of a second at 512 cells).
        self._should_cancel = should_cancel
        self.points_evaluated = 0  # values received through update()
        self.points_reused = 0  # values taken from the store

        n = self.resolution + 1
        # NaN = not known (yet). Filled a slab at a time with a cancel check between: at 512 cells the lattice
        # is 540 MB, whose one-call fill held a cancel for most of a second.
        self._values = np.empty((n, n, n), dtype=np.float32)
        for start in range(0, n, 64):
            self._check_cancel()
            self._values[start:start + 64] = np.nan
        self._added = np.zeros((n, n, n), dtype=bool)  # point belongs to the adaptive grid
        # _leaf[L]: cells of level L (size 2**(steps-L)) that are leaves; the finest level is never
        # subdivided, so it needs no array.
        self._leaf = [
            np.zeros((self.resolution_0 << level,) * 3, dtype=bool) for level in range(self.upsampling_steps)
        ]
        if self._leaf:
            self._leaf[0][...] = True
        # Whether the closed box of each cell of level steps-1 holds a known value >= / <= the
        # threshold; kept up to date as values arrive, coarser levels are pooled from it.
        half = (self.resolution // 2,) * 3 if self.upsampling_steps else (0, 0, 0)
        self._pos_box = np.zeros(half, dtype=bool)
        self._neg_box = np.zeros(half, dtype=bool)

        step0 = 1 << self.upsampling_steps
        self._added[::step0, ::step0, ::step0] = True
        coarse = np.arange(0, n, step0, dtype=np.int64)  # the same order as argwhere, without scanning n**3
        self._pending = np.stack(np.meshgrid(coarse, coarse, coarse, indexing="ij"), axis=-1).reshape(-1, 3)
        self._take_from_store()
        self._refine_while_known()

    # -- public API --------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once no point remains to be evaluated."""
        return len(self._pending) == 0

    @property
    def points_total(self) -> int:
        """Number of lattice points in the adaptive grid so far (evaluated, reused or pending)."""
        return int(self._added.sum())

    def query(self) -> np.ndarray:
        """(N, 3) int64 lattice coordinates whose values are still needed; N == 0 when finished."""
        return self._pending.copy()

    def update(self, points: np.ndarray, values: np.ndarray) -> None:
        """Set the values (logits) of queried points; refines the grid once all queried are known.

        The points may be any subset of the last query(), so a caller can hand batches over as
        they are evaluated; the grid is refined when the last pending point gets its value.
        """
        pts = _check_coords(points, self.resolution, "points")
        vals = _check_values(values, len(pts))
        if not len(pts):
            return
        x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
        wanted = self._added[x, y, z] & np.isnan(self._values[x, y, z])
        if not wanted.all():
            raise InputError(
                f"{int((~wanted).sum())} of {len(pts)} points were not asked for by query() "
                "or already have a value"
            )
        self._values[x, y, z] = vals
        self._mark(pts, vals)
        if self.store is not None:
            self.store.add(pts, vals, self.resolution)
        p = self._pending
        self._pending = p[np.isnan(self._values[p[:, 0], p[:, 1], p[:, 2]])]
        self.points_evaluated += len(p) - len(self._pending)  # duplicates in `points` count once
        self._refine_while_known()

    def to_dense(self) -> np.ndarray:
        """(R+1, R+1, R+1) float32 grid; points never evaluated are filled like the original.

        Missing values are copied from the predecessor along x, then along y, then along z. The grid
        is this MISE's own, filled in place (a copy would be another 0.5 GB at 512 cells): MISE is done
        by then, and the values of evaluated points are unchanged.
        """
        if not self.done:
            raise GenerationError(
                f"MISE is not finished: {len(self._pending)} points still need values "
                "(call query() and update() until query() returns no points)"
            )
        _fill_like_original(self._values, self._check_cancel)  # points outside the adaptive grid are NaN already
        return self._values

    # -- internals ---------------------------------------------------------------------------

    def _check_cancel(self) -> None:
        if self._should_cancel is not None and self._should_cancel():
            raise Cancelled("cancelled")

    def _take_from_store(self) -> None:
        """Fill pending points from the store; keep only those it does not know."""
        if self.store is None or not len(self._pending):
            return
        p = self._pending
        found, vals = self.store.lookup(p, self.resolution)
        if found.any():
            self._values[p[found, 0], p[found, 1], p[found, 2]] = vals[found]
            self._mark(p[found], vals[found])
            self.points_reused += int(found.sum())
            self._pending = p[~found]

    def _mark(self, coords: np.ndarray, vals: np.ndarray) -> None:
        """Record new known values in the level steps-1 boxes that contain them."""
        if not self.upsampling_steps:
            return
        half = self.resolution // 2
        # cells c (of size 2) whose closed box [2c, 2c+2] holds p: c = p//2 - 1 (p even) and p//2
        lo = np.maximum((coords - 1) // 2, 0)
        step = np.minimum(coords // 2, half - 1) - lo  # 0 or 1 per axis
        base = (lo[:, 0] * half + lo[:, 1]) * half + lo[:, 2]
        offsets = [
            (step[:, 0] * dx * half + step[:, 1] * dy) * half + step[:, 2] * dz
            for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)
        ]
        for box, side in ((self._pos_box, vals >= self.threshold), (self._neg_box, vals <= self.threshold)):
            if side.any():
                flat = box.reshape(-1)  # a view
                for off in offsets:
                    flat[(base + off)[side]] = True

    def _refine_while_known(self) -> None:
        # A round may be answered entirely by the store, hence the loop.
        while not len(self._pending):
            new = self._subdivide()
            if not len(new):
                return
            self._pending = new
            self._check_cancel()
            self._take_from_store()

    def _subdivide(self) -> np.ndarray:
        """One round of the original's subdivide_voxels; returns the new points (M, 3), sorted."""
        steps = self.upsampling_steps
        if steps == 0:
            return np.zeros((0, 3), dtype=np.int64)
        pos, neg = self._pos_box, self._neg_box  # cells of level steps-1
        n = self.resolution + 1
        new_flat = []
        # Finest level first, so that children created in this round are not examined again
        # (the original only visits the voxels that existed when the round began).
        for level in range(steps - 1, -1, -1):
            self._check_cancel()
            if level < steps - 1:
                pos, neg = _pool2(pos), _pool2(neg)
            leaf = self._leaf[level]
            active = leaf & pos & neg
            if not active.any():
                continue
            leaf &= ~active
            if level + 1 < steps:
                r = active.shape[0]
                self._leaf[level + 1].reshape(r, 2, r, 2, r, 2)[...] |= active[:, None, :, None, :, None]
            corners = _corner_dilate(active)  # on the lattice of level + 1
            self._check_cancel()
            h = 1 << (steps - level - 1)
            added = self._added[::h, ::h, ::h]  # a view: writes go to the fine lattice
            fresh = corners & ~added
            added |= fresh
            self._check_cancel()
            i, j, k = np.nonzero(fresh)
            new_flat.append(((i * h) * n + j * h) * n + k * h)
        if not new_flat:
            return np.zeros((0, 3), dtype=np.int64)
        flat = np.sort(np.concatenate(new_flat).astype(np.int64))
        return np.stack(np.unravel_index(flat, (n, n, n)), axis=1).astype(np.int64)
