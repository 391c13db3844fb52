"""Vertex colours from a coloured input: the one rule for reading colour arrays and for giving a mesh's vertices
the colours of the input points nearest them. numpy (scipy for the nearest points); no torch.

Colours travel as the files hold them: sRGB-encoded, red green blue, as bytes (0-255) or as floats in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..common.errors import InputError
from ..common.geometry import subsample

# The colour source keeps at most this many points (a random subset beyond): a scan's colour varies over a few
# points, and a tree of a million points is built in about a second.
MAX_COLOUR_POINTS = 1_000_000
NEIGHBOURS = 8  # input points each vertex draws its colour from
# A neighbour further than this many times the nearest one's distance plus the cloud's spacing is not counted:
# a vertex by a crease or a thin wall takes the colour of its own side, not of the points across.
REACH_FACTOR = 2.0
# A neighbour whose colour is this far (in [0, 1] per channel) from the neighbours' weighted median is an
# outlier (a speck of sky on a wall) and left out of the average.
COLOUR_OUTLIER = 0.25


@dataclass
class ColourSource:
    """Points (in the source's frame, float64) and their colours ((M, 3) float32 in [0, 1])."""

    points: np.ndarray
    colours: np.ndarray
    _tree: Any = field(default=None, repr=False)  # built once: live re-extractions colour again from it

    def tree(self) -> tuple[Any, np.ndarray, float]:
        """The points' search tree (around their mean), that mean, and the cloud's spacing."""
        if self._tree is None:
            from scipy.spatial import cKDTree

            centre = self.points.mean(axis=0)  # coordinates far from the origin (millimetres) keep their digits
            tree = cKDTree(self.points - centre)
            self._tree = (tree, centre, _spacing(tree, self.points - centre))
        return self._tree


def unit_colours(colours: np.ndarray, name: str = "colours") -> np.ndarray:
    """(N, 3+) colours of any of the usual encodings -> (N, 3) float32 in [0, 1] (an alpha column is dropped).
    Bytes are /255 and 16-bit values /65535; floats must already lie in [0, 1]."""
    array = np.asarray(colours)
    if array.ndim != 2 or array.shape[1] not in (3, 4):
        raise InputError(f"{name}: colours must be N x 3 (red, green, blue) or N x 4, got shape {array.shape}")
    array = array[:, :3]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype.kind not in "fiu":
        raise InputError(f"{name}: colours must be numbers, got {array.dtype}")
    values = array.astype(np.float32)
    if not np.isfinite(values).all() or (len(values) > 0 and (values.min() < 0 or values.max() > 1)):
        raise InputError(f"{name}: float colours must lie in [0, 1] (bytes: 0 to 255 as uint8)")
    return values


def text_colours(values: np.ndarray) -> np.ndarray | None:
    """Colour columns read from text (an OBJ's `v x y z r g b`, an XYZRGB or PTS file) -> float32 in [0, 1]: bytes
    (0-255) when any value is above 1, else already in [0, 1]. None when they cannot be colours (negative, over
    255, not finite: normals, say)."""
    if not len(values) or not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
        return None
    return (values / 255.0 if values.max() > 1 else values).astype(np.float32)


def colour_source(points: np.ndarray, colours: np.ndarray, name: str = "colours",
                  seed: int = 0) -> ColourSource | None:
    """The points that carry a colour (non-finite ones left out; a random MAX_COLOUR_POINTS beyond that); None
    when none do. `colours` must be one row per point."""
    if len(colours) != len(points):
        raise InputError(f"{name}: {len(colours):,} colours for {len(points):,} points; give one per point")
    values = unit_colours(colours, name)
    rows = np.flatnonzero(np.isfinite(np.asarray(points[:, :3], dtype=np.float64)).all(axis=1))
    if len(rows) > MAX_COLOUR_POINTS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, MAX_COLOUR_POINTS, replace=False))
    if not len(rows):
        return None
    return ColourSource(np.asarray(points[rows, :3], dtype=np.float64), values[rows])


def vertex_colours(vertices: np.ndarray, source: ColourSource) -> np.ndarray:
    """Each vertex's colour from the input points nearest it, (V, 3) uint8: of its NEIGHBOURS nearest points, those
    within REACH_FACTOR times the nearest one's distance plus the cloud's spacing, weighted by inverse
    distance, without those whose colour is far from the weighted median (COLOUR_OUTLIER)."""
    if not len(vertices):
        return np.zeros((0, 3), np.uint8)
    tree, centre, spacing = source.tree()
    k = min(NEIGHBOURS, len(source.points))
    distance, index = tree.query(np.asarray(vertices, dtype=np.float64) - centre, k=k, workers=-1)
    distance, index = distance.reshape(len(vertices), k), index.reshape(len(vertices), k)
    near = distance <= REACH_FACTOR * (distance[:, :1] + spacing)
    weight = np.where(near, 1.0 / (distance + 0.5 * spacing + 1e-12), 0.0)  # (V, k); the nearest always counts
    colours = source.colours[index]  # (V, k, 3)
    median = _weighted_median(colours, weight)
    weight = weight * (np.abs(colours - median[:, None, :]).max(axis=2) <= COLOUR_OUTLIER)
    total = weight.sum(axis=1, keepdims=True)
    mean = np.where(total > 0, (colours * weight[..., None]).sum(axis=1) / np.maximum(total, 1e-30), median)
    return np.clip(np.rint(mean * 255.0), 0, 255).astype(np.uint8)


def _spacing(tree: Any, points: np.ndarray) -> float:
    """The cloud's typical distance between neighbouring points (the median over a sample)."""
    if len(points) < 2:
        return 0.0
    sample = subsample(points, 2000)
    distance, _ = tree.query(sample, k=2)
    return float(np.median(distance[:, 1]))


def _weighted_median(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per channel, the weighted median of (V, k, 3) values with (V, k) weights -> (V, 3)."""
    order = np.argsort(values, axis=1)  # (V, k, 3)
    ordered = np.take_along_axis(values, order, axis=1)
    w = np.take_along_axis(np.broadcast_to(weight[..., None], values.shape), order, axis=1)
    cumulative = np.cumsum(w, axis=1)
    half = cumulative[:, -1:, :] / 2
    pick = np.minimum((cumulative < half).sum(axis=1), values.shape[1] - 1)  # (V, 3)
    return np.take_along_axis(ordered, pick[:, None, :], axis=1)[:, 0, :]
