"""Colours for a mesh reconstructed from one image: find the view the image shows it from, then give the vertices
that view sees the image's colours (the others take the nearest seen ones', colours.vertex_colours).

The image network predicts the shape in its own frame, not the camera's: the picture was taken from an unknown
azimuth and elevation. Images are cropped to the object and scaled to fill a fixed share of the frame
(preprocess.prepare_image), so the view is found by its silhouette alone: the mesh's outline is drawn from
every azimuth (all round) and elevation (as the training renders: -20 to 40 degrees) as the crop frames it, and
the view whose outline overlaps the picture's object most is taken, then refined around it, with the training
camera's perspective. A left-right symmetric shape's mirror view ties: its colours may then come out mirrored.
The unseen side takes the colours of the nearest seen vertices.
numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..common.geometry import sample_surface
from .colours import ColourSource

OBJECT_FRACTION = 0.85  # the share of the square crop that the object's longer side spans (prepare_image)
# The camera the image networks learn from (training/render.py takes it from here): 35 degrees wide, where the
# shape's bounding sphere spans 1/1.08 of the frame (the border stays background), from any azimuth and these
# elevations. Perspective matters: in parallel projection a view and its mirror image seen from below draw the
# same outline (a sofa seen from the front above and from behind below).
FOV_DEGREES = 35.0
FRAME_MARGIN = 1.08
ELEVATION_DEGREES = (-20.0, 40.0)
MASK_SIDE = 64  # silhouettes are compared at this size
PICTURE_SIDE = 256  # the colours are read from the crop at most this large
AZIMUTHS = 48  # 7.5 degrees apart, all round
ELEVATIONS = np.radians(np.arange(ELEVATION_DEGREES[0], ELEVATION_DEGREES[1] + 1.0, 10.0))
SILHOUETTE_SAMPLES = 6000
DEPTH_SAMPLES = 120_000
# A vertex is seen when it is at most this far (share of the object's size) behind the nearest surface drawn
# on its pixel: about two pixels of PICTURE_SIDE.
SEEN_TOLERANCE = 0.015
EDGE_PIXELS = 2  # of PICTURE_SIDE: the outline's blend of object and background gives no colour


@dataclass(frozen=True)
class Picture:
    """The image as the network saw it: the square crop around the object (RGB in [0, 1], top row first) and
    which of its pixels are the object."""

    rgb: np.ndarray  # (S, S, 3) float32
    mask: np.ndarray  # (S, S) bool


@dataclass(frozen=True)
class View:
    azimuth: float  # radians; 0 looks at the front (-z)
    elevation: float  # radians; > 0 looks down
    overlap: float  # the silhouettes' intersection over union at that view


def rotation(azimuth: float, elevation: float) -> np.ndarray:
    """World-to-camera rows (right, down, forward) of a camera looking at the origin from (azimuth, elevation),
    y up: the training renders' cameras (training/render.py) without their distance."""
    eye = np.array([math.cos(elevation) * math.sin(azimuth), math.sin(elevation),
                    -math.cos(elevation) * math.cos(azimuth)])
    forward = -eye
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(forward, right), forward])


def camera_distance(points: np.ndarray) -> float:
    """How far the training renders' camera stands from the origin for a shape of these points: where its
    bounding sphere fills the frame less the margin (training/render.py's viewpoints)."""
    radius = float(np.linalg.norm(points, axis=1).max())
    return radius * FRAME_MARGIN / math.sin(math.radians(FOV_DEGREES) / 2)


def _framed(points: np.ndarray, turn: np.ndarray, side: int, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Points seen through `turn` by a camera `distance` from the origin, as pixel coordinates (column, row) of
    a square crop of `side` that frames them as prepare_image frames the object, and their depth."""
    seen = points @ turn.T
    depth = seen[:, 2] + distance
    flat = seen[:, :2] / depth[:, None]
    lo, hi = flat.min(axis=0), flat.max(axis=0)
    scale = OBJECT_FRACTION * side / max(float((hi - lo).max()), 1e-9)
    return (flat - (lo + hi) / 2) * scale + side / 2, depth


def _silhouette(points: np.ndarray, turn: np.ndarray, distance: float, side: int = MASK_SIDE) -> np.ndarray:
    pixels, _ = _framed(points, turn, side, distance)
    cells = np.clip(pixels.astype(np.int64), 0, side - 1)
    mask = np.zeros((side, side), bool)
    mask[cells[:, 1], cells[:, 0]] = True
    # Close the gaps between samples: one pixel of dilation.
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _shrink(mask: np.ndarray, side: int) -> np.ndarray:
    """A boolean mask resized to side x side (a pixel set when half its area is)."""
    rows = (np.arange(side) + 0.5) * mask.shape[0] / side
    cols = (np.arange(side) + 0.5) * mask.shape[1] / side
    from scipy.ndimage import map_coordinates

    grid = np.meshgrid(rows - 0.5, cols - 0.5, indexing="ij")
    return map_coordinates(mask.astype(np.float32), grid, order=1, mode="nearest") >= 0.5


def find_view(vertices: np.ndarray, faces: np.ndarray, picture: Picture) -> View:
    """The view from which the mesh's outline best matches the picture's object."""
    points, _ = sample_surface(vertices, faces, SILHOUETTE_SAMPLES, seed=0)
    target = _shrink(picture.mask, MASK_SIDE)
    distance = camera_distance(points)

    def score(azimuth: float, elevation: float) -> View:
        return View(azimuth, elevation, _overlap(_silhouette(points, rotation(azimuth, elevation), distance), target))

    best = max((score(a, e) for a in np.arange(AZIMUTHS) * 2 * math.pi / AZIMUTHS for e in ELEVATIONS),
               key=lambda view: view.overlap)
    step_a, step_e = 2 * math.pi / AZIMUTHS / 3, float(ELEVATIONS[1] - ELEVATIONS[0]) / 3
    for _ in range(2):  # refine around the best, a third of the step each time
        best = max((score(best.azimuth + i * step_a, best.elevation + j * step_e)
                    for i in (-1, 0, 1) for j in (-1, 0, 1)), key=lambda view: view.overlap)
        step_a, step_e = step_a / 3, step_e / 3
    return best


def seen_colours(vertices: np.ndarray, faces: np.ndarray, picture: Picture, view: View) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """The vertices the view sees on the picture's object (indices) and their colours (K, 3) in [0, 1]."""
    side = picture.rgb.shape[0]
    turn = rotation(view.azimuth, view.elevation)
    samples, _ = sample_surface(vertices, faces, DEPTH_SAMPLES, seed=1)
    both = np.concatenate([samples, vertices])
    pixels, depth = _framed(both, turn, side, camera_distance(samples))  # framed together: one crop
    cells = np.clip(pixels.astype(np.int64), 0, side - 1)
    nearest = np.full(side * side, np.inf)
    flat = cells[:, 1] * side + cells[:, 0]
    np.minimum.at(nearest, flat[: len(samples)], depth[: len(samples)])
    size = float(np.ptp(vertices, axis=0).max())
    vertex_flat, vertex_depth = flat[len(samples):], depth[len(samples):]
    seen = vertex_depth <= nearest[vertex_flat] + SEEN_TOLERANCE * size
    # Inside the object's outline by a margin: pixels on it blend the object with the background (white specks).
    from scipy.ndimage import binary_erosion

    inner = binary_erosion(picture.mask, iterations=EDGE_PIXELS)
    seen &= (inner if inner.any() else picture.mask).reshape(-1)[vertex_flat]
    index = np.flatnonzero(seen)
    return index, picture.rgb.reshape(-1, 3)[vertex_flat[index]]


def image_colour_source(vertices: np.ndarray, faces: np.ndarray, picture: Picture,
                        to_source: np.ndarray | None = None) -> tuple[ColourSource | None, View]:
    """The colour source for a mesh reconstructed from `picture` (network frame): the vertices its view sees,
    with their colours, placed at `to_source` (the same vertices in the source's frame) when given."""
    view = find_view(vertices, faces, picture)
    index, colours = seen_colours(vertices, faces, picture, view)
    if not len(index):
        return None, view
    where = vertices if to_source is None else to_source
    return ColourSource(np.asarray(where[index], np.float64), colours.astype(np.float32)), view
