"""One preprocessing function per modality, shared by the backend, the command line and the dataset builder.

Each returns the network input and the normalisation (loc, scale) that maps the network's unit-cube
frame back to the source's frame: source = unit * scale + loc.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..common.binvox import pool_grid, read_binvox
from ..common.errors import InputError
from ..common.geometry import CHUNK_ROWS, subsample, unit_cube_frame
from ..common.policy import MAX_FIT_POINTS, MIN_POINTS
from .colours import ColourSource, colour_source, unit_colours
from .image_colours import PICTURE_SIDE, Picture
from .meshio import (
    MESH_SUFFIXES,
    MeshData,
    check_point_rows,
    normalise_mesh,
    read_normalised_mesh,
    read_point_file,
)
from .point_normals import NormalSource, normal_source
from .voxelize import voxelize_mesh

IMAGE_SIZE = 224
# Image files are decoded at most this large (the encoder sees 224 px; object cropping needs no more): an
# 8,190 px PNG of 195 KB would otherwise take gigabytes as float32 RGBA.
MAX_DECODE_SIDE = 1024
VOXEL_RESOLUTION = 32
MAX_IMAGE_PIXELS = 8192 * 8192
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

PathOrArray = str | os.PathLike | np.ndarray

if TYPE_CHECKING:
    from .config import ModelConfig


@dataclass
class PreparedInput:
    """What the network is given (without batch dimension) and the way back to the source's frame."""

    modality: str
    array: np.ndarray  # image (3, 224, 224) | pointcloud (N, 3) | voxels (32, 32, 32); float32
    loc: np.ndarray  # (3,) float64
    scale: float
    info: dict[str, int] = field(default_factory=dict)  # what preprocessing did (points given, points used)
    # The turn into the network's frame (frames.orient), None while the input is in the project's frame.
    rotation: np.ndarray | None = None
    # Point clouds prepared for fitting: every usable point (up to MAX_FIT_POINTS) in the same frame as `array`.
    observed: np.ndarray | None = None
    # The input's colours on its points, in the source's frame (colours.py): the mesh's vertices get theirs.
    colours: ColourSource | None = None
    # The normals a scan came with, in the source's frame (point_normals.py): they orient the winding guide.
    normals: NormalSource | None = None
    # An image's crop around the object, as the network saw it: the mesh's colours are read from it
    # (image_colours.py). None when no object could be told from the background.
    picture: Picture | None = None

    def to_source(self, vertices: np.ndarray) -> np.ndarray:
        """Unit-cube coordinates of the network's frame -> the source's coordinates."""
        return (self.directions_to_source(vertices) * self.scale + self.loc).astype(vertices.dtype, copy=False)

    def directions_to_source(self, vectors: np.ndarray) -> np.ndarray:
        """Directions (normals) of the network's frame -> the source's (the scale is uniform)."""
        return vectors if self.rotation is None else (vectors @ self.rotation).astype(vectors.dtype, copy=False)

    def directions_to_network(self, vectors: np.ndarray) -> np.ndarray:
        """Directions of the source's frame -> the network's (directions_to_source undone)."""
        return vectors if self.rotation is None else (vectors @ self.rotation.T).astype(vectors.dtype, copy=False)

    def given_normals(self, points: np.ndarray) -> np.ndarray | None:
        """The normals the input came with at (N, 3) points of the network's frame (the nearest input point's),
        in that frame; None when it came without."""
        if self.normals is None:
            return None
        return self.directions_to_network(self.normals.at(self.to_source(np.asarray(points, np.float64))))


# ---------------------------------------------------------------------------------------------
# Image


BLANK_IMAGE_RANGE = 4 / 255  # an image whose pixels (on white) all lie within this of each other shows nothing


def prepare_image(image: PathOrArray, size: int = IMAGE_SIZE, object_fraction: float = 0.85,
                  crop: bool = True) -> PreparedInput:
    """RGB(A) image -> (3, size, size) float32 in [0, 1] on white, cropped to the object and padded square.

    The object is found from alpha when the image has transparent pixels, otherwise from a uniform
    background (all border pixels alike); it is then scaled so its longer side spans
    `object_fraction` of the frame. An image with neither is only padded square.
    """
    name = str(image) if not isinstance(image, np.ndarray) else "image"
    rgba = _as_rgba(image, name)
    rgb, alpha = rgba[..., :3], rgba[..., 3:4]
    rgb = rgb * alpha + (1.0 - alpha)  # composite onto white, as the training renderings are
    if float(np.ptp(rgb)) < BLANK_IMAGE_RANGE:  # else the network sees nothing and "no surface" follows
        raise InputError(f"{name}: the image appears blank (one colour throughout): it shows no object; give a "
                         "picture of the object on a plain background")
    mask = _object_mask(rgb, alpha[..., 0]) if crop else None
    # Pad with the background: white after compositing, or the uniform colour found around the object.
    background = _border_colour(rgb) if mask is not None else np.ones(3, dtype=np.float32)
    if mask is not None and mask.any():
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        rgb = rgb[r0:r1, c0:c1]
        side = int(np.ceil(max(r1 - r0, c1 - c0) / object_fraction))
    else:
        side = max(rgb.shape[:2])
    square = np.empty((side, side, 3), dtype=np.float32)
    square[...] = background
    h, w = rgb.shape[:2]
    top, left = (side - h) // 2, (side - w) // 2
    square[top:top + h, left:left + w] = rgb
    from PIL import Image

    square_bytes = Image.fromarray(np.round(square * 255).astype(np.uint8))
    resized = square_bytes.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    array = np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / 255.0
    picture = None
    if mask is not None and mask.any():
        # The same crop for the colours (image_colours.py), with which of its pixels are the object.
        square_mask = np.zeros((side, side), np.uint8)
        square_mask[top:top + h, left:left + w] = mask[r0:r1, c0:c1] * 255
        picture_side = min(side, PICTURE_SIDE)
        picture = Picture(np.asarray(square_bytes.resize((picture_side,) * 2, Image.Resampling.BILINEAR),
                                     dtype=np.float32) / 255.0,
                          np.asarray(Image.fromarray(square_mask).resize((picture_side,) * 2,
                                                                         Image.Resampling.BILINEAR)) >= 128)
    return PreparedInput("image", np.ascontiguousarray(array), np.zeros(3), 1.0, picture=picture)


def _as_rgba(image: PathOrArray, name: str) -> np.ndarray:
    """(H, W, 4) float32 in [0, 1] from a file or an array of 2, 3 or 4 channels (uint8 or float)."""
    if not isinstance(image, np.ndarray):
        array = _read_image_file(Path(image))
    else:
        array = image
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InputError(f"{name}: expected an H x W x 3 (RGB) or 4 (RGBA) image, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{name}: the image has no pixels")
    if array.shape[0] * array.shape[1] > MAX_IMAGE_PIXELS:
        raise InputError(f"{name}: {array.shape[1]}x{array.shape[0]} pixels is too large; scale it below "
                         f"8192x8192")
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        array = array.astype(np.float32) / 65535.0
    else:
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError(f"{name}: the image holds non-finite values")
    array = np.clip(array, 0.0, 1.0)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] == 3:
        array = np.concatenate([array, np.ones_like(array[..., :1])], axis=2)
    return array


def _read_image_file(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(f"{path}: no such image file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the image file is empty")
    try:
        with Image.open(path) as opened:
            img: Image.Image = opened
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise InputError(f"{path}: {img.width}x{img.height} pixels is too large; scale it below 8192x8192")
            if max(img.size) > MAX_DECODE_SIDE:
                img.draft("RGB", (MAX_DECODE_SIDE, MAX_DECODE_SIDE))  # JPEG: decode at a reduced scale
                if img.mode not in ("RGB", "RGBA", "L", "LA"):
                    img = img.convert("RGBA")
                factor = -(-max(img.size) // MAX_DECODE_SIDE)
                if factor > 1:
                    img = img.reduce(factor)  # box-averaged in the file's own mode, before widening to RGBA
            return np.asarray(img.convert("RGBA"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None


def _object_mask(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
    """Pixels of the object, or None when neither alpha nor a uniform background tells them apart."""
    if (alpha < 0.99).any():
        return alpha > 0.5
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    if np.ptp(border, axis=0).max() > 0.06:  # the border is not one colour: no background to crop
        return None
    return np.abs(rgb - np.median(border, axis=0)).max(axis=2) > 0.06


def _border_colour(rgb: np.ndarray) -> np.ndarray:
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return np.median(border, axis=0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Point cloud


def prepare_pointcloud(points: PathOrArray, n_points: int = 300, seed: int = 0,
                       noise_std: float = 0.0, at_most: bool = False, keep_observed: bool = False,
                       colours: np.ndarray | None = None, normals: np.ndarray | None = None) -> PreparedInput:
    """N x 3 points -> `n_points` points in the unit cube (bbox centre at 0, longest edge 1).

    Points with a NaN or infinite coordinate are dropped and counted (info["input_points_dropped"]): the
    one rule for them, which the command line and the add-on share. By default exactly `n_points` are
    drawn (without replacement when there are enough, with replacement otherwise), as a global encoder
    needs; `at_most` takes every point up to `n_points` instead (a local encoder uses all it has). The
    bounding box is that of every point, computed in chunks, so a cloud of millions of points costs little
    beyond itself. `noise_std` adds Gaussian noise as the reference does in training. `keep_observed` also
    keeps every usable point (a random MAX_FIT_POINTS beyond that) as `observed`, for test-time fitting.
    `colours` (one row per point of an array; a file's own are read with it) become the `colours` source,
    `normals` (the same; a PLY's nx ny nz) the `normals` source.
    """
    name = str(points) if not isinstance(points, np.ndarray) else "point cloud"
    if isinstance(points, np.ndarray):
        array = np.asarray(points)
        check_point_rows(array, name)
        coloured = None if colours is None else colour_source(array, colours, name, seed)
    else:
        read = read_point_file(points, seed=seed)  # checked as it is read
        array, coloured, normals = read.points, read.colours, read.normals
    with_normals = None if normals is None else normal_source(array, normals, name, seed)
    finite = np.empty(len(array), dtype=bool)
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for start in range(0, len(array), CHUNK_ROWS):
        chunk = np.asarray(array[start:start + CHUNK_ROWS, :3], dtype=np.float64)
        ok = np.isfinite(chunk).all(axis=1)
        finite[start:start + len(chunk)] = ok
        if ok.any():
            lo, hi = np.minimum(lo, chunk[ok].min(axis=0)), np.maximum(hi, chunk[ok].max(axis=0))
    usable = int(finite.sum())
    if usable < MIN_POINTS:
        dropped = f" ({len(array) - usable} non-finite dropped)" if usable < len(array) else ""
        raise InputError(f"{name}: {usable} usable point(s){dropped}; a point cloud needs at least "
                         f"{MIN_POINTS}: give it a denser cloud or a mesh file")
    loc, scale = unit_cube_frame(lo, hi, name)
    if not scale > 0:
        raise InputError(f"{name}: all points are at the same place; nothing to reconstruct")
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(finite) if usable < len(array) else None
    count = min(n_points, usable) if at_most else n_points
    if count == usable and at_most:
        choice = np.arange(usable)  # every point, in the source's order
    elif usable > 4 * count:
        # A subset without replacement drawn from random indices, not from a permutation of the whole
        # cloud (which would cost 8 bytes a point): redraw until enough distinct ones, then shuffle.
        choice = np.unique(rng.integers(0, usable, size=2 * count))
        while len(choice) < count:
            choice = np.unique(np.concatenate([choice, rng.integers(0, usable, size=count)]))
        choice = rng.permutation(choice)[:count]
    else:
        choice = rng.choice(usable, size=count, replace=usable < count)
    picked = np.asarray(array[rows[choice] if rows is not None else choice, :3], dtype=np.float64)
    sampled = (picked - loc) / scale  # normalise only what is kept (training calls this per item)
    if noise_std > 0:
        sampled = sampled + noise_std * rng.standard_normal(sampled.shape)
    observed = _observed_points(array, rows, usable, loc, scale, rng) if keep_observed else None
    return PreparedInput("pointcloud", sampled.astype(np.float32), loc, scale,
                         {"input_points_given": len(array), "input_points_used": int(count),
                          "input_points_dropped": len(array) - usable}, observed=observed, colours=coloured,
                         normals=with_normals)


def _observed_points(array: np.ndarray, rows: np.ndarray | None, usable: int, loc: np.ndarray, scale: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Every usable point (a random MAX_FIT_POINTS of them beyond that), normalised as the network's input,
    float32; read in chunks so a memory-mapped cloud is never copied whole in float64."""
    keep = np.sort(rng.choice(usable, MAX_FIT_POINTS, replace=False)) if usable > MAX_FIT_POINTS else None
    index = rows if keep is None else (keep if rows is None else rows[keep])
    count = usable if keep is None else MAX_FIT_POINTS
    out = np.empty((count, 3), dtype=np.float32)
    for start in range(0, count, CHUNK_ROWS):
        chunk = array[start:start + CHUNK_ROWS] if index is None else array[index[start:start + CHUNK_ROWS]]
        out[start:start + len(chunk)] = (np.asarray(chunk[:, :3], dtype=np.float64) - loc) / scale
    return out


# Stray points: a point whose OUTLIER_NEIGHBOUR-th nearest neighbour is over OUTLIER_FACTOR times as far as the
# cloud's median is left out. A scan thinner in places by 8:1 stays (its spacing grows 2.8x); stray points in
# the open (1% of a cloud, uniform in its box) are 10-20 times as far from their neighbours.
OUTLIER_NEIGHBOUR = 8
OUTLIER_FACTOR = 5.0
OUTLIER_TREE_POINTS = 200_000  # the neighbours are looked for among at most this many of the points


def without_outliers(prepared: PreparedInput, seed: int = 0) -> PreparedInput:
    """A prepared cloud (with `observed`) without its stray points, normalised again by the box of the rest (a
    far stray point would otherwise shrink the shape in the network's cube); counted in
    info["input_points_outliers"]."""
    from scipy.spatial import cKDTree

    observed = prepared.observed
    if observed is None or len(observed) <= 4 * OUTLIER_NEIGHBOUR:
        return prepared
    sample = subsample(observed, OUTLIER_TREE_POINTS, seed)
    tree = cKDTree(sample)

    def reach(points: np.ndarray) -> np.ndarray:
        out = np.empty(len(points))
        for start in range(0, len(points), CHUNK_ROWS):
            out[start:start + CHUNK_ROWS] = tree.query(points[start:start + CHUNK_ROWS], k=OUTLIER_NEIGHBOUR + 1,
                                                       workers=-1)[0][:, -1]
        return out

    observed_reach = reach(observed)
    limit = OUTLIER_FACTOR * float(np.median(observed_reach))
    kept = observed_reach <= limit
    if kept.all() or kept.sum() < MIN_POINTS:
        return prepared
    inliers = observed[kept]
    encoder_input = prepared.array[reach(prepared.array) <= limit]
    # The inliers' box, as the source's frame sees it: source = unit * scale + loc.
    inner_loc, inner_scale = unit_cube_frame(inliers.min(axis=0), inliers.max(axis=0))
    if not inner_scale > 0:
        return prepared

    def renormalised(points: np.ndarray) -> np.ndarray:
        return ((points - inner_loc) / inner_scale).astype(np.float32)

    info = {**prepared.info, "input_points_outliers": int((~kept).sum())}
    if "input_points_used" in info:
        info["input_points_used"] = len(encoder_input)
    return replace(prepared, array=renormalised(encoder_input), observed=renormalised(inliers),
                   loc=prepared.loc + inner_loc * prepared.scale, scale=prepared.scale * inner_scale, info=info)


# Separate groups: a cloud whose points fall into groups of GROUP_MIN_SHARE or more with gaps between them wider than
# what makes a point stray (OUTLIER_FACTOR times the spacing) is a scene or several objects, not one object: the
# networks see it as one shape in one cube, each object at a fraction of the detail. Looked at on GROUP_POINTS.
GROUP_MIN_SHARE = 0.1
GROUP_POINTS = 2000


def separate_groups(points: np.ndarray, seed: int = 0) -> int:
    """How many groups of at least GROUP_MIN_SHARE of the points lie apart from each other (1 for one object)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if len(points) > GROUP_POINTS:
        points = points[np.random.default_rng(seed).choice(len(points), GROUP_POINTS, replace=False)]
    if len(points) <= 4 * OUTLIER_NEIGHBOUR:
        return 1
    tree = cKDTree(points)
    spacing = float(np.median(tree.query(points, k=OUTLIER_NEIGHBOUR + 1)[0][:, -1]))
    pairs = tree.query_pairs(OUTLIER_FACTOR * spacing, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(points), len(points)))
    labels = connected_components(graph, directed=False)[1]
    return max(1, int((np.bincount(labels) >= GROUP_MIN_SHARE * len(points)).sum()))


def with_groups(prepared: PreparedInput, seed: int = 0) -> PreparedInput:
    """A prepared cloud with info["input_point_groups"] when its points form separate groups (separate_groups)."""
    groups = separate_groups(prepared.array, seed)
    return prepared if groups < 2 else replace(prepared, info={**prepared.info, "input_point_groups": groups})


def prepare_for_network(config: ModelConfig, modality: str, source: PathOrArray, seed: int = 0,
                        input_points: int = 0, colours: np.ndarray | None = None) -> PreparedInput:
    """The one rule for sizing an input for a network: what the command line and the backend both use.

    Point clouds: a global (ONet) encoder gets exactly its n_input_points (or `input_points`); a local
    (ConvONet) one every point up to `input_points`, by default up to MAX_LOCAL_INPUT_POINTS. Images:
    the network's image_size. Voxels: the 32^3 grid as it is. `colours`: one per point of a cloud given as an
    array (a file's own colours are read with it), or one per cell of a voxel grid."""
    from .config import MAX_LOCAL_INPUT_POINTS

    if modality == "pointcloud":
        if input_points < 0:
            raise InputError(f"input_points must be 0 (automatic) or positive, got {input_points}")
        if config.local:
            cap = min(input_points or MAX_LOCAL_INPUT_POINTS, MAX_LOCAL_INPUT_POINTS)
            prepared = without_outliers(prepare_pointcloud(source, n_points=cap, seed=seed, at_most=True,
                                                           keep_observed=True, colours=colours))
        else:
            prepared = prepare_pointcloud(source, n_points=min(input_points or config.n_input_points,
                                                               MAX_LOCAL_INPUT_POINTS), seed=seed, colours=colours)
        return with_groups(prepared, seed)
    if modality == "image":
        return prepare_image(source, size=config.image_size)
    if modality == "voxels":
        return prepare_voxels(source, colours=colours)
    raise InputError(f"unknown modality {modality!r}; choose one of image, pointcloud, voxels")


# ---------------------------------------------------------------------------------------------
# Voxels


def prepare_voxels(voxels: PathOrArray, colours: np.ndarray | None = None) -> PreparedInput:
    """A 32^3 occupancy grid from `.binvox`, `.npy`, a mesh file (voxelised) or an array [x, y, z]; a finer
    cube whose side is a multiple of 32 is pooled to 32^3 (binvox.pool_grid).

    Voxel (i, j, k) covers [-0.5 + i/32, -0.5 + (i+1)/32] (and likewise for j, k) in the unit cube.
    `colours`: one per cell of the grid as given, in C order ((side^3, 3) or (side, side, side, 3)); the filled
    cells' colours colour the result (a pooled cell takes its filled fine cells' mean).
    """
    loc, scale = np.zeros(3), 1.0
    if isinstance(voxels, np.ndarray):
        name, grid = "voxel grid", voxels
    else:
        path = Path(voxels)
        name = str(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        suffix = path.suffix.lower()
        if suffix == ".binvox":
            vox = read_binvox(path)
            grid = vox.data
            # The binvox box [translate, translate + scale] is the network's unit cube.
            loc, scale = vox.translate + vox.scale / 2, vox.scale
        elif suffix == ".npy":
            try:
                grid = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise InputError(f"{path}: not a readable .npy array ({exc})") from None
        elif suffix in MESH_SUFFIXES:
            grid, loc, scale = _voxelize_mesh_file(path)
        else:
            raise InputError(f"{path}: unknown voxel format {suffix!r}; use .binvox, .npy or a mesh file")
    grid = np.asarray(grid)
    if grid.dtype != bool and grid.size and not np.isfinite(grid).all():
        raise InputError(f"{name}: the voxel grid holds non-finite values")
    fine, grid = grid, pool_grid(grid, VOXEL_RESOLUTION, name)  # pool_grid also refuses a grid of another shape
    coloured = None if colours is None else _cell_colours(fine, colours, name, loc, float(scale))
    occupancy = grid.astype(bool) if grid.dtype == bool else grid >= 0.5
    return PreparedInput("voxels", occupancy.astype(np.float32), np.asarray(loc, dtype=np.float64), float(scale),
                         colours=coloured)


def _cell_colours(grid: np.ndarray, colours: np.ndarray, name: str, loc: np.ndarray,
                  scale: float) -> ColourSource | None:
    """The colour source of a voxel grid: its filled cells' centres (in the source's frame) with their colours,
    one per cell of `grid` (a cube whose side is a multiple of 32) in C order. Cells pooled into one (a finer grid)
    share their filled cells' mean."""
    values = unit_colours(np.asarray(colours).reshape(-1, np.asarray(colours).shape[-1]), name)
    if len(values) != grid.size:
        raise InputError(f"{name}: {len(values):,} colours for a grid of {grid.size:,} cells; give one per cell "
                         "(C order)")
    filled = np.flatnonzero(grid.astype(bool) if grid.dtype == bool else grid >= 0.5)
    f, side = grid.shape[0] // VOXEL_RESOLUTION, VOXEL_RESOLUTION
    # Sum the filled fine cells' colours into their coarse cell, and count them.
    coarse = np.stack(np.unravel_index(filled, grid.shape), axis=1) // f
    index = np.ravel_multi_index(tuple(coarse.T), (side,) * 3)
    counts = np.bincount(index, minlength=side ** 3)
    sums = np.stack([np.bincount(index, weights=values[filled, c], minlength=side ** 3) for c in range(3)], axis=1)
    cells = np.flatnonzero(counts)
    if not len(cells):
        return None
    centres = (np.stack(np.unravel_index(cells, (side,) * 3), axis=1) + 0.5) / side - 0.5
    return colour_source(centres * scale + loc, sums[cells] / counts[cells, None], name)


def _voxelize_mesh_file(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    mesh, loc, scale = read_normalised_mesh(path)
    return voxelize_mesh(mesh, VOXEL_RESOLUTION), loc, scale


def prepare_voxels_from_mesh(vertices: np.ndarray, faces: np.ndarray, name: str = "mesh",
                             colours: np.ndarray | None = None) -> PreparedInput:
    """A triangle mesh given as arrays (a Blender object's, say), moved into the unit cube and voxelised at
    32^3 by inside tests that tolerate holes and flipped faces; loc/scale map the result back. `colours`, one
    per vertex, colour the result."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise InputError(f"{name}: vertices must be N x 3, got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
        raise InputError(f"{name}: faces must be M x 3 integer vertex indices, got {faces.shape} {faces.dtype}")
    if len(faces) == 0:
        raise InputError(f"{name}: the mesh has no faces; voxelising needs a surface (use its points instead)")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise InputError(f"{name}: face indices run outside the {len(vertices)} vertices")
    mesh, loc, scale = normalise_mesh(MeshData(vertices, faces.astype(np.int64)), name)
    grid = voxelize_mesh(mesh, VOXEL_RESOLUTION)
    coloured = None if colours is None else colour_source(vertices, colours, name)
    return PreparedInput("voxels", grid.astype(np.float32), np.asarray(loc, dtype=np.float64), scale,
                         colours=coloured)


def guess_modality(path: str | os.PathLike[str]) -> str:
    """The modality a file most likely holds, from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix == ".binvox":
        return "voxels"
    if suffix == ".npy":
        try:
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        except (ValueError, OSError):
            return "pointcloud"
        return "voxels" if len(shape) == 3 else "pointcloud"
    return "pointcloud"
