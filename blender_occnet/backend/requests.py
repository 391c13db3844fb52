"""Validation of reconstruct requests: every field checked, every problem named by its field."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..occnet.config import MODALITIES
from ..occnet.errors import InputError, OccNetError
from ..occnet.generation import ExtractionSettings
from ..occnet.preprocess import PreparedInput, prepare_image, prepare_pointcloud, prepare_voxels

MAX_IMAGE_SIDE = 2048  # the network sees 224 x 224; Blender sends images scaled down to this
MAX_POINTS = 5_000_000


class RequestError(OccNetError):
    """A request field that cannot be used; `field` names it for the client."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class ReconstructRequest:
    modality: str
    weights: str | None
    arch: str | None
    device: str
    settings: ExtractionSettings
    threshold_given: bool  # when False the weights' own threshold applies
    source: np.ndarray
    seed: int


def parse_settings(header: dict[str, Any], default_threshold: float | None = None) -> ExtractionSettings:
    """ExtractionSettings from request fields, each error tagged with the field it is about."""
    values: dict[str, Any] = {}
    for name, kind in (("resolution", int), ("refine_steps", int), ("simplify_faces", int), ("seed", int),
                       ("threshold", float), ("normals", bool)):
        if header.get(name) is None:
            continue
        value = header[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise RequestError(name, f"{name} must be {'a number' if kind is float else kind.__name__}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise RequestError(name, f"{name} must be finite, got {value!r}")
        values[name] = value
    if "threshold" not in values and default_threshold is not None:
        values["threshold"] = default_threshold
    if isinstance(values.get("resolution"), int) and values["resolution"] > 0:
        values["resolution_0"] = min(32, values["resolution"])
    try:
        return ExtractionSettings(**values)
    except InputError as exc:
        # ExtractionSettings' messages start with the field's name.
        field = str(exc).split()[0]
        raise RequestError(field if field in values else "settings", str(exc)) from None


def parse_reconstruct(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> ReconstructRequest:
    modality = header.get("modality")
    if modality not in MODALITIES:
        raise RequestError("modality", f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    for name in ("weights", "arch"):
        if header.get(name) is not None and not isinstance(header[name], str):
            raise RequestError(name, f"{name} must be a string")
    device = header.get("device", "auto")
    if not isinstance(device, str) or not (device in ("auto", "cpu") or device.startswith("cuda")):
        raise RequestError("device", f"device must be auto, cpu or cuda, got {device!r}")
    if "input" not in arrays:
        raise RequestError("input", "the request carries no 'input' array")
    source = arrays["input"]
    _check_source(modality, source)
    settings = parse_settings(header)  # threshold filled from the weights later when absent
    seed = header.get("seed", 0)
    return ReconstructRequest(modality, header.get("weights"), header.get("arch"), device, settings,
                              header.get("threshold") is not None, source, seed if isinstance(seed, int) else 0)


def _check_source(modality: str, source: np.ndarray) -> None:
    if source.size == 0:
        raise RequestError("input", f"the {modality} array 'input' is empty")
    if source.dtype.kind == "f" and not np.isfinite(source).all():
        bad = int((~np.isfinite(source)).any(axis=-1).sum()) if source.ndim > 1 else int((~np.isfinite(source)).sum())
        raise RequestError("input", f"'input' holds NaN or infinite values ({bad} of {len(source)} rows); "
                                    "remove them from the source first")
    if modality == "pointcloud":
        if source.ndim != 2 or source.shape[1] != 3:
            raise RequestError("input", f"a point cloud 'input' must be N x 3, got {source.shape}")
        if len(source) > MAX_POINTS:
            raise RequestError("input", f"{len(source):,} points is over the {MAX_POINTS:,} accepted; subsample")
    elif modality == "image":
        if source.ndim != 3 or source.shape[2] not in (3, 4):
            raise RequestError("input", f"an image 'input' must be H x W x 3 or 4, got {source.shape}")
        if max(source.shape[:2]) > MAX_IMAGE_SIDE:
            raise RequestError("input", f"the image is {source.shape[1]}x{source.shape[0]}; the largest accepted is "
                                        f"{MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} (the network sees 224x224: scale it "
                                        "down)")
    elif source.shape != (32, 32, 32):
        raise RequestError("input", f"a voxel 'input' must be 32 x 32 x 32, got {source.shape}")


def prepare_source(request: ReconstructRequest, n_points: int) -> PreparedInput:
    """The shared preprocessing for the request's modality (what the CLI and the trainer use too)."""
    try:
        if request.modality == "pointcloud":
            return prepare_pointcloud(request.source, n_points=n_points, seed=request.seed)
        if request.modality == "image":
            return prepare_image(request.source)
        return prepare_voxels(request.source)
    except InputError as exc:
        raise RequestError("input", str(exc)) from None
