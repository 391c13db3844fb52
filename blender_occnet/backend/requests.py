"""Validation of reconstruct requests: every field checked, every problem named by its field."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..occnet.config import MODALITIES, ModelConfig
from ..occnet.errors import InputError, OccNetError
from ..occnet.generation import ExtractionSettings
from ..occnet.policy import coarse_resolution
from ..occnet.preprocess import MIN_POINTS, PreparedInput, prepare_for_network, prepare_voxels_from_mesh

MAX_IMAGE_SIDE = 2048  # the network sees 224 x 224; the add-on sends at most 1024 px, other clients this much
MAX_POINTS = 5_000_000
MAX_FACES = 5_000_000  # a mesh sent to be voxelised


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
    faces: np.ndarray | None = None  # voxels only: `source` is then a mesh's vertices, voxelised here
    input_points: int = 0  # point clouds: points the encoder gets (0: the network's own rule)


def parse_settings(header: dict[str, Any], default_threshold: float | None = None) -> ExtractionSettings:
    """ExtractionSettings from request fields, each error tagged with the field it is about."""
    values: dict[str, Any] = {}
    for name, kind in (("resolution", int), ("refine_steps", int), ("simplify_faces", int), ("seed", int),
                       ("threshold", float), ("normals", bool), ("refine_method", str)):
        if header.get(name) is None:
            continue
        value = header[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise RequestError(name, f"{name} must be {'a number' if kind is float else 'a string' if kind is str else kind.__name__}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise RequestError(name, f"{name} must be finite, got {value!r}")
        values[name] = value
    if "threshold" not in values and default_threshold is not None:
        values["threshold"] = default_threshold
    if isinstance(values.get("resolution"), int) and values["resolution"] > 0:
        values["resolution_0"] = coarse_resolution(values["resolution"])
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
    if not isinstance(device, str) or not (device in ("auto", "cpu", "mps") or device.startswith("cuda")):
        raise RequestError("device", f"device must be auto, cpu, cuda or mps, got {device!r}")
    if "input" not in arrays:
        raise RequestError("input", "the request carries no 'input' array")
    source, faces = arrays["input"], arrays.get("faces")
    if faces is not None:
        _check_mesh(modality, source, faces)
    else:
        _check_source(modality, source)
    settings = parse_settings(header)  # threshold filled from the weights later when absent
    seed = header.get("seed", 0)
    input_points = header.get("input_points", 0)
    if not isinstance(input_points, int) or isinstance(input_points, bool) or not 0 <= input_points <= MAX_POINTS:
        raise RequestError("input_points", f"input_points must be an integer from 0 (automatic) to {MAX_POINTS:,}, "
                                           f"got {input_points!r}")
    return ReconstructRequest(modality, header.get("weights"), header.get("arch"), device, settings,
                              header.get("threshold") is not None, source, seed if isinstance(seed, int) else 0,
                              faces, input_points)


def _check_mesh(modality: str, vertices: np.ndarray, faces: np.ndarray) -> None:
    """A mesh to voxelise: 'input' its vertices, 'faces' its triangles."""
    if modality != "voxels":
        raise RequestError("faces", f"a mesh ('faces') is voxelised for voxel weights only, not for {modality}")
    if vertices.ndim != 2 or vertices.shape[1] != 3 or vertices.dtype.kind != "f":
        raise RequestError("input", f"a mesh's 'input' must be N x 3 float vertices, got {vertices.shape} "
                                    f"{vertices.dtype}")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
        raise RequestError("faces", f"'faces' must be M x 3 integer vertex indices, got {faces.shape} {faces.dtype}")
    if len(vertices) == 0 or len(faces) == 0:
        raise RequestError("faces" if len(vertices) else "input", "the mesh to voxelise is empty")
    if len(vertices) > MAX_POINTS or len(faces) > MAX_FACES:
        raise RequestError("faces", f"the mesh is over the {MAX_FACES:,} faces accepted; decimate it first")
    if not np.isfinite(vertices).all():
        raise RequestError("input", "the mesh's vertices hold NaN or infinite values; fix them first")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise RequestError("faces", f"face indices run outside the {len(vertices)} vertices")


def _check_source(modality: str, source: np.ndarray) -> None:
    if source.size == 0:
        raise RequestError("input", f"the {modality} array 'input' is empty")
    if modality == "pointcloud" and source.dtype.kind == "f" and source.ndim == 2:
        # Non-finite points are dropped and counted by the core's preprocessing (the one rule for them);
        # refused here only when too few usable ones would remain.
        usable = int(np.isfinite(source).all(axis=1).sum())
        if usable < MIN_POINTS:
            raise RequestError("input", f"'input' has {len(source) - usable} of {len(source)} points with NaN or "
                                        f"infinite coordinates and fewer than {MIN_POINTS} usable ones; fix the "
                                        "source first")
    elif source.dtype.kind == "f" and not np.isfinite(source).all():
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


def prepare_source(request: ReconstructRequest, config: ModelConfig) -> PreparedInput:
    """The shared preprocessing for the request's modality (what the CLI and the trainer use too), sized for
    the network that will see it."""
    try:
        if request.faces is not None:
            return prepare_voxels_from_mesh(request.source, request.faces, "the mesh")
        return prepare_for_network(config, request.modality, request.source, seed=request.seed,
                                   input_points=request.input_points)
    except InputError as exc:
        raise RequestError("input", str(exc)) from None
