"""What of a mesh the input's points support: pieces of a fitted mesh that no point comes near (always dropped),
and, when the user asks for it, the surface nobody scanned (the back of a one-sided scan, the far side of a wall).

Both work in the network's frame, where the object spans about one unit, so distances are fractions of its size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..common.geometry import subsample

# A piece of a fitted mesh with no vertex this near an observed point (box units) is dropped: the fit made the
# surface pass through the points, so a piece the points never touch is the prior's (a speck the network drew
# in an empty corner of the box, as boxes fill theirs), not the scan's. Noise of 0.01 plus a cell of 128.
SUPPORT_DISTANCE = 0.03
SUPPORT_TREE_POINTS = 100_000

# A face counts as seen when its centre lies within this many median point spacings of a point (the gaps between
# neighbours of an even scan), and never nearer than a floor: a fitted mesh was projected onto the points, but the
# network alone draws its surface off them (the bundled point-cloud network up to 0.044 off a dense half sphere, 5%
# of its faces past 0.03: with a floor of 0.01 the seen side came back with four holes).
UNSEEN_NEAR_SPACINGS = 3.0
UNSEEN_NEAR_FLOOR = 0.01
UNSEEN_NEAR_FLOOR_UNFITTED = 0.05
# Within `reach` of the points, a face farther than this many spacings (and half the floor) off the plane of each
# of its OFF_NEIGHBOURS nearest points (a plane through each one's OFF_PLANE_POINTS neighbours) is not seen either:
# the network draws a scanned sheet as a slab with bubbles behind it, and the bubbles' walls where they meet the
# sheet stood 0.01-0.026 off a scanned terrain after the trim (bench_sheets.py: the relief's Chamfer-L1 x10 0.033 ->
# 0.020, Poisson 0.016). A point whose neighbours lie along a line (second spread under OFF_LINE_RATIO of the first,
# a line scan's row) has no plane: it counts the face as on it, which keeps the faces between a line scan's rows.
OFF_SPACINGS = 2.0
OFF_FLOOR_SHARE = 0.5
OFF_NEIGHBOURS = 4
OFF_PLANE_POINTS = 16
OFF_LINE_RATIO = 0.05


def drop_unsupported_pieces(vertices: np.ndarray, faces: np.ndarray, observed: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray, int]:
    """The mesh without its connected pieces that no observed point comes near (the largest piece is kept
    whatever); returns vertices, faces and how many pieces went."""
    from scipy.spatial import cKDTree

    count, piece = _vertex_pieces(faces, len(vertices))
    if count == 1:
        return vertices, faces, 0
    face_piece = piece[faces[:, 0]]
    largest = int(np.bincount(face_piece, minlength=count).argmax())
    observed = subsample(observed, SUPPORT_TREE_POINTS)
    small = piece != largest
    near = np.zeros(count, dtype=bool)
    near[largest] = True
    distance, _ = cKDTree(observed).query(vertices[small], distance_upper_bound=SUPPORT_DISTANCE, workers=-1)
    near[np.unique(piece[small][np.isfinite(distance)])] = True
    if near.all():
        return vertices, faces, 0
    return (*_keep_faces(vertices, faces, near[face_piece]), int((~near).sum()))


def trim_unseen(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, reach: float,
                fitted: bool = True) -> tuple[np.ndarray, np.ndarray, int | None]:
    """The mesh without the surface the points do not show; returns vertices, faces and how many faces went
    (None, and the mesh as it was, when no face lies near the points: there is nothing to keep).

    Unseen is farther than `reach` from every point, and than the near band (a few spacings, at least a floor that
    is wider for a mesh not `fitted`: one not projected onto the points),
    or nearer but off the points' own local planes (OFF_*: the back layer and bubble walls of a scanned sheet). The
    faces beside it that are not seen either (past the near band) go too where they lie within `reach` of it, so the
    cut follows the edge of what the scan shows instead of hanging `reach` past it. A gap between seen parts narrower
    than twice `reach` (between a line scan's rows, a small hole) has no unseen face and stays closed, as does a
    patch of unseen faces narrower than two near bands among seen ones (where the network's surface bulges off the
    points).
    """
    from scipy.spatial import cKDTree

    from .winding import median_spacing

    if not len(faces) or not len(points):
        return vertices, faces, 0
    points = subsample(points, SUPPORT_TREE_POINTS)
    tree = cKDTree(points)
    spacing = median_spacing(tree, points) if len(points) > 1 else 0.0
    near_floor = UNSEEN_NEAR_FLOOR if fitted else UNSEEN_NEAR_FLOOR_UNFITTED
    near = max(near_floor, UNSEEN_NEAR_SPACINGS * spacing)
    centres = vertices[faces].mean(axis=1)
    # Bounded: a nearest-point search from far off a one-sided scan is slow (0.4 s for 80,000 faces), and only
    # which side of the two distances a face lies on matters (infinite: past the bound).
    reach = max(reach, near)
    distance = tree.query(centres, distance_upper_bound=reach, workers=-1)[0]
    off = _off_the_points(tree, points, centres, np.isfinite(distance),
                          max(near_floor * OFF_FLOOR_SHARE, OFF_SPACINGS * spacing))
    not_seen = (distance > near) | off
    unseen = ~np.isfinite(distance) | off
    if not unseen.any():
        return vertices, faces, 0
    # Unseen patches narrower than two near bands are bulges of the network's surface off the points, or a random
    # cloud's widest gaps, where they lie among seen faces; beside a wide one they are its edge and go with it.
    unseen_patch, unseen_width = _patches(faces[unseen], centres[unseen], len(vertices))
    wide = np.zeros(len(faces), dtype=bool)
    wide[unseen] = unseen_width[unseen_patch] >= 2 * near
    if not wide.any():
        return vertices, faces, 0
    around, _ = _patches(faces[not_seen], centres[not_seen], len(vertices))
    with_wide = np.zeros(around.max() + 1, dtype=bool)
    with_wide[around[wide[not_seen]]] = True
    remove = wide.copy()
    remove[np.flatnonzero(not_seen)[with_wide[around] & unseen[not_seen]]] = True
    beside = not_seen & ~remove
    if beside.any():
        gap = cKDTree(centres[wide]).query(centres[beside], distance_upper_bound=reach, workers=-1)[0]
        remove[np.flatnonzero(beside)[np.isfinite(gap)]] = True
    if remove.all():  # a surface nowhere near the points (weights that do not fit them): an empty mesh says less
        return vertices, faces, None
    return (*_keep_faces(vertices, faces, ~remove), int(remove.sum()))


def _off_the_points(tree: Any, points: np.ndarray, centres: np.ndarray, candidates: np.ndarray, tolerance: float
                    ) -> np.ndarray:
    """For each face, whether it is a candidate that lies farther than `tolerance` off the local surface of every one
    of its OFF_NEIGHBOURS nearest points (each point's plane through its own neighbours): a shelf or the wall of a
    bubble standing off a scanned sheet, near the points but not on them."""
    off = np.zeros(len(centres), dtype=bool)
    if OFF_SPACINGS <= 0 or not candidates.any() or len(points) < OFF_PLANE_POINTS:
        return off
    which = np.flatnonzero(candidates)
    _, nearest = tree.query(centres[which], k=OFF_NEIGHBOURS, workers=-1)
    nearest = nearest.reshape(len(which), -1)  # k = 1 gives one column, not a flat array
    used, slot = np.unique(nearest, return_inverse=True)
    _, around = tree.query(points[used], k=OFF_PLANE_POINTS, workers=-1)
    spread = points[around] - points[around].mean(axis=1, keepdims=True)
    spreads, axes = np.linalg.eigh(np.einsum("nki,nkj->nij", spread, spread))
    normals = axes[:, :, 0]  # the least-spread direction
    # Neighbours along a line (a line scan's row), or all in one place, give no plane: such a point counts the face as
    # on it (height 0), so it keeps the face whatever the other neighbours say.
    flat = (spreads[:, 1] > OFF_LINE_RATIO * spreads[:, 2]) & (spreads[:, 2] > 0)
    slot = slot.reshape(len(which), -1)
    height = np.abs(np.einsum("fki,fki->fk", centres[which][:, None, :] - points[used][slot], normals[slot]))
    height[~flat[slot]] = 0.0
    off[which] = height.min(axis=1) > tolerance
    return off


def _vertex_pieces(faces: np.ndarray, vertex_count: int) -> tuple[int, np.ndarray]:
    """How many connected pieces the faces make of the vertices (a vertex no face uses is a piece of its own), and
    each vertex's piece."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    count, piece = connected_components(coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])),
                                                   shape=(vertex_count,) * 2), directed=False)
    return int(count), piece


def _patches(faces: np.ndarray, centres: np.ndarray, vertex_count: int) -> tuple[np.ndarray, np.ndarray]:
    """The patch of each of these faces (faces sharing a vertex make one) and each patch's width: its faces'
    centres' widest spread along an axis."""
    _, piece = _vertex_pieces(faces, vertex_count)
    _, patch = np.unique(piece[faces[:, 0]], return_inverse=True)
    patch = patch.reshape(-1)
    low = np.full((patch.max() + 1, 3), np.inf)
    high = np.full((patch.max() + 1, 3), -np.inf)
    np.minimum.at(low, patch, centres)
    np.maximum.at(high, patch, centres)
    return patch, (high - low).max(axis=1)


def _keep_faces(vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The faces `keep` marks, with only the vertices they use (renumbered)."""
    kept = faces[keep]
    used = np.zeros(len(vertices), dtype=bool)
    used[kept] = True
    renumber = np.cumsum(used) - 1
    return vertices[used], renumber[kept].astype(faces.dtype)
