"""The original preprocessed ShapeNet layout, read per category and split, for each modality.

    <root>/metadata.yaml                    category id -> {id, name}
    <root>/<category>/{train,val,test}.lst  model ids
    <root>/<category>/<model>/points.npz    uniform points in the 1.1 box + packed occupancies
                              points_near.npz  (ours, optional) near-surface points, same format
                              pointcloud.npz   surface points + normals
                              model.binvox     32^3 voxels
                              img_choy2016/    renders 000.jpg ... + cameras.npz

Inputs go through the same preprocessing functions the add-on and the command line use; the query
points are mapped with the same loc/scale, so the labels stay exact. Models whose files are missing
or broken are skipped and counted, never fatal unless nothing is left.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from blender_occnet.common.errors import InputError
from blender_occnet.occnet.preprocess import prepare_image, prepare_pointcloud, prepare_voxels

from .scans import ScanSettings, scan_like, voxel_scan

log = logging.getLogger(__name__)

MODALITY_FILES = {"pointcloud": "pointcloud.npz", "voxels": "model.binvox", "image": "img_choy2016"}
IMAGE_SUFFIXES = (".jpg", ".png")


@dataclass
class Model:
    category: str
    model_id: str
    folder: Path


@dataclass
class Skipped:
    count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str) -> None:
        self.count += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def __str__(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.reasons.items()))


def categories_of(root: Path, wanted: list[str] | None) -> list[str]:
    """Categories from the argument, else metadata.yaml, else every sub-folder."""
    if wanted:
        missing = [c for c in wanted if not (root / c).is_dir()]
        if missing:
            raise InputError(f"{root}: no category folder {', '.join(missing)}")
        return list(wanted)
    meta = root / "metadata.yaml"
    if meta.is_file():
        listed = yaml.safe_load(meta.read_text()) or {}
        return sorted(c for c in listed if (root / c).is_dir())
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def list_models(root: str | Path, split: str, categories: list[str] | None = None) -> list[Model]:
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder does not exist (make one with `python -m training.shapes` or "
                         "`python -m training.prepare`)")
    models = []
    for category in categories_of(root, categories):
        split_file = root / category / f"{split}.lst"
        if not split_file.is_file():
            log.warning("%s: no %s split list, category skipped", root / category, split)
            continue
        ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        models += [Model(category, model_id, root / category / model_id) for model_id in ids]
    return models


class ShapeDataset:
    """Training or validation items of one split: query points with labels and the network input."""

    def __init__(self, root: str | Path, split: str, modality: str, categories: list[str] | None = None,
                 points_per_shape: int = 2048, near_surface_fraction: float = 0.5, n_input_points: int = 300,
                 pointcloud_noise: float = 0.0, cache: bool = True, limit: int = 0, image_size: int = 224,
                 voxel_shift: float = 0.0, scan_like: float = 0.0, scan_settings: ScanSettings | None = None):
        self.modality = modality
        self.scan_like = scan_like  # share of inputs (clouds, voxel grids) made as from a scan (training/scans.py)
        self.scan_settings = scan_settings or ScanSettings()
        self.voxel_shift = voxel_shift
        self.points_per_shape = points_per_shape
        self.near_surface_fraction = near_surface_fraction
        self.n_input_points = n_input_points
        self.image_size = image_size
        self.pointcloud_noise = pointcloud_noise
        self._cache: dict[tuple[Path, str], Any] | None = {} if cache else None
        self.skipped = Skipped()
        candidates = list_models(root, split, categories)
        self.models = [m for m in candidates if self._usable(m)]
        if limit:
            self.models = self.models[:limit]
        if self.skipped.count:
            log.warning("%s split %s: skipped %d of %d models (%s)", root, split, self.skipped.count,
                        len(candidates), self.skipped)
        if not self.models:
            raise InputError(f"{root}: no usable {modality} models in split {split!r}"
                             + (f" (skipped: {self.skipped})" if self.skipped.count else ""))

    def __len__(self) -> int:
        return len(self.models)

    def _usable(self, model: Model) -> bool:
        needed = ["points.npz", MODALITY_FILES[self.modality]]
        for name in needed:
            path = model.folder / name
            if not path.exists() or (path.is_file() and path.stat().st_size == 0):
                self.skipped.add(f"missing {name}")
                return False
        return True

    def _load(self, path: Path, kind: str) -> Any:
        key = (path, kind)
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        # Files are kept decoded (float16 -> float32/64, bits unpacked): decoding per item was most of
        # the loader's time.
        if kind == "labelled":
            with np.load(path, allow_pickle=False) as archive:
                points = archive["points"].astype(np.float32)
                value: Any = (points, np.unpackbits(archive["occupancies"])[: len(points)].astype(np.float32))
        elif kind == "surface":
            with np.load(path, allow_pickle=False) as archive:
                value = archive["points"].astype(np.float64)
        elif kind == "surface_normals":
            with np.load(path, allow_pickle=False) as archive:
                value = (archive["points"].astype(np.float64), archive["normals"].astype(np.float64))
        elif kind == "voxels":
            value = prepare_voxels(path)
        else:
            raise ValueError(kind)
        if self._cache is not None:
            self._cache[key] = value
        return value

    def labelled_points(self, model: Model, name: str = "points.npz") -> tuple[np.ndarray, np.ndarray]:
        points, occupancy = self._load(model.folder / name, "labelled")
        return points, occupancy

    def item(self, index: int, rng: np.random.Generator, n_points: int | None = None,
             n_input_points: int | None = None) -> dict[str, np.ndarray]:
        """One training shape: 'inputs', 'points' (T, 3) and 'occ' (T,) in the network's input frame.

        n_input_points: the input cloud's size for this item (default: the dataset's). Voxel grids are
        moved by whole cells within their free room with probability `voxel_shift` (query points alike,
        so the labels stay exact): the network learns that shapes need not sit in the grid's centre."""
        model = self.models[index]
        item = self._with_input(model, rng, lambda: self._query_points(model, rng, n_points or self.points_per_shape),
                                n_input_points)
        if self.modality == "voxels" and self.voxel_shift and rng.random() < self.voxel_shift:
            item["inputs"], offset = shift_within_grid(item["inputs"], rng)
            item["points"] = item["points"] + (offset / item["inputs"].shape[0]).astype(np.float32)
        return {key: item[key] for key in ("inputs", "points", "occ")}

    def validation_item(self, index: int, rng: np.random.Generator, n_points: int) -> dict[str, np.ndarray]:
        """The input and the first `n_points` uniform points of points.npz (what validation IoU uses), plus
        'loc' and 'scale': the map from the dataset's frame into the input's, for other data of the shape."""
        model = self.models[index]

        def uniform() -> tuple[np.ndarray, np.ndarray]:
            points, occupancy = self.labelled_points(model)
            return points[:n_points], occupancy[:n_points]

        return self._with_input(model, rng, uniform)

    def _with_input(self, model: Model, rng: np.random.Generator,
                    labelled: Callable[[], tuple[np.ndarray, np.ndarray]],
                    n_input_points: int | None = None) -> dict[str, np.ndarray]:
        try:
            prepared = self._input(model, rng, n_input_points or self.n_input_points)
            points, occupancy = labelled()
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, InputError) as exc:
            raise InputError(f"{model.folder}: broken model files ({exc})") from None
        # The input was normalised by its own loc/scale: map the labelled points the same way.
        points = ((points - prepared.loc) / prepared.scale).astype(np.float32)
        return {"inputs": prepared.array, "points": points, "occ": occupancy,
                "loc": np.asarray(prepared.loc, dtype=np.float32), "scale": np.float32(prepared.scale)}

    def _query_points(self, model: Model, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        uniform, uniform_occ = self.labelled_points(model)
        near_file = model.folder / "points_near.npz"
        n_near = int(round(n * self.near_surface_fraction)) if near_file.is_file() else 0
        pick = rng.integers(0, len(uniform), n - n_near)
        points, occupancy = [uniform[pick]], [uniform_occ[pick]]
        if n_near:
            near, near_occ = self.labelled_points(model, "points_near.npz")
            pick = rng.integers(0, len(near), n_near)
            points.append(near[pick])
            occupancy.append(near_occ[pick])
        return np.concatenate(points), np.concatenate(occupancy)

    def _input(self, model: Model, rng: np.random.Generator, n_input_points: int) -> Any:
        if self.modality == "pointcloud":
            # No draw from rng when scan_like is 0: datasets without it take the very steps they always did.
            if self.scan_like and rng.random() < self.scan_like:
                points, normals = self._load(model.folder / "pointcloud.npz", "surface_normals")
                scan = scan_like(points, normals, rng, self.scan_settings)  # with its own noise
                return prepare_pointcloud(scan, n_points=n_input_points, seed=int(rng.integers(2**31)))
            surface = self._load(model.folder / "pointcloud.npz", "surface")
            return prepare_pointcloud(surface, n_points=n_input_points, seed=int(rng.integers(2**31)),
                                      noise_std=self.pointcloud_noise)
        if self.modality == "voxels":
            solid = self._load(model.folder / "model.binvox", "voxels")
            if self.scan_like and rng.random() < self.scan_like:  # the grid a voxelised scan gives (scans.py)
                points, normals = self._load(model.folder / "pointcloud.npz", "surface_normals")
                scan = scan_like(points, normals, rng, self.scan_settings)
                grid = voxel_scan(scan, solid.loc, solid.scale, solid.array.shape[0], rng,
                                  self.scan_settings.filled)
                return replace(solid, array=grid) if grid.any() else solid
            return solid
        views = sorted(p for p in (model.folder / "img_choy2016").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not views:
            raise InputError("no rendered views")
        return prepare_image(views[int(rng.integers(len(views)))], size=self.image_size)


def shift_within_grid(grid: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The grid's content moved by a random whole number of cells per axis, never cut off; (grid, offset)."""
    occupied = np.argwhere(grid > 0.5)
    if not len(occupied):
        return grid, np.zeros(3)
    lo, hi = occupied.min(axis=0), occupied.max(axis=0)
    offset = np.array([rng.integers(-lo[a], grid.shape[a] - hi[a]) for a in range(3)])
    return np.roll(grid, tuple(int(o) for o in offset), axis=(0, 1, 2)), offset.astype(np.float64)


def collate(items: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([item[key] for item in items]) for key in items[0]}
