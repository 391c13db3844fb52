"""Weights files: the original project's torch checkpoints (read safely) and our own safetensors files.

Our format is a `.safetensors` file whose metadata holds the model configuration, the modality, the
training threshold and a model card, so the backend rebuilds the network from the file alone and
loading it never unpickles anything. Original `.pt` files are read with `weights_only=True` and only
the numpy scalar types they contain allow-listed; a file that asks for anything else is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..common.errors import CheckpointError, InputError
from ..common.files import atomic_output
from .config import ARCH_MODALITY, FAMILIES, MAX_WEIGHTS_FILE_BYTES, ModelConfig, default_config
from .frames import SHAPENET_V1_FRAME
from .model import Network, build_model, check_size, state_shapes

FORMAT_NAME = "blender-occnet-weights"
FORMAT_VERSION = 1
DEFAULT_THRESHOLD = 0.2  # the paper's generation threshold on the occupancy probability


@dataclass
class Weights:
    """A network's parameters with everything needed to rebuild and use it."""

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    threshold: float = DEFAULT_THRESHOLD
    card: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def modality(self) -> str:
        return self.config.modality

    def build(self, device: str | torch.device = "cpu") -> Network:
        """The network with these weights, in eval mode, on `device`."""
        model = build_model(self.config)
        load_state_dict_checked(model, self.state_dict, self.source or "weights")
        return model.to(device).eval()


# ---------------------------------------------------------------------------------------------
# Loading


def load_weights(path: str | os.PathLike[str], arch: str | None = None) -> Weights:
    """Load our `.safetensors` weights or an original `.pt` checkpoint (format sniffed from content).

    `arch` is needed only for original checkpoints whose architecture cannot be told from the keys;
    when given for one that can, it must agree.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (an interrupted download or copy?)")
    # A file named .safetensors is read as one whatever its bytes say (a damaged header then gets a clear
    # message rather than torch.load's own attempt at it).
    if path.suffix.lower() == ".safetensors" or _looks_like_safetensors(path):
        weights = load_safetensors_weights(path)
        if arch is not None and arch != weights.config.arch:
            raise CheckpointError(f"{path}: holds a {weights.config.arch} model, not {arch}")
        return weights
    return load_original_checkpoint(path, arch)


def load_safetensors_weights(path: Path) -> Weights:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT_NAME:
                raise CheckpointError(
                    f"{path}: a .safetensors file without blender-occnet metadata (no model configuration); "
                    f"convert an original checkpoint with `python -m blender_occnet convert IN.pt OUT.safetensors`")
            version = int(metadata.get("format_version", "0"))
            if version > FORMAT_VERSION:
                raise CheckpointError(f"{path}: written by a newer blender-occnet (format {version}, this one "
                                      f"reads up to {FORMAT_VERSION}); update the extension")
            try:
                config = ModelConfig.from_dict(json.loads(metadata["config"]))
                threshold = float(metadata.get("threshold", DEFAULT_THRESHOLD))
                card = json.loads(metadata.get("model_card", "{}"))
            except (KeyError, json.JSONDecodeError, InputError, TypeError) as exc:
                raise CheckpointError(f"{path}: its metadata is damaged ({exc}); re-export the weights") from None
            _check_size(config, path)  # before any tensor is read
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({exc}); "
                              "re-export or re-copy it") from None
    _check_threshold(threshold, path)
    _check_tensors(tensors, path)
    _check_widths(config, tensors, path)
    # Weights stored in half precision (see save_weights) compute in float32 like every other.
    tensors = {k: v.float() if v.dtype == torch.float16 else v for k, v in tensors.items()}
    return Weights(config, tensors, threshold, card, source=str(path))


def _check_widths(config: ModelConfig, tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """The config's widths against the tensors that carry them (its family's), before anything is built."""
    for key, axis, name, factor in config.family.widths:
        tensor = tensors.get(key)
        if tensor is not None and tensor.ndim > axis and int(tensor.shape[axis]) != factor * getattr(config, name):
            raise CheckpointError(f"{path}: its configuration says {name} {getattr(config, name)} but {key} has "
                                  f"shape {tuple(tensor.shape)}; the file is damaged or was edited")


def load_original_checkpoint(path: Path, arch: str | None = None, released: ModelConfig | None = None) -> Weights:
    """An original Occupancy Networks `.pt` file (a dict with `model`, or a bare state_dict).

    released: the configuration of the authors' release the file claims to be (a download): every key and
    shape must be that architecture's, checked before a config is read off the file's tensors."""
    data = _safe_torch_load(path)
    state_dict = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state_dict, dict) or not state_dict or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{path}: no state_dict found (expected a dict with a 'model' entry of "
                              "tensors, as the original project saves)")
    state_dict = _strip_prefix(state_dict)
    _check_tensors(state_dict, path)
    try:
        inferred = infer_arch(state_dict)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if arch is not None and arch not in ARCH_MODALITY:
        default_config(arch)  # raises with the valid names
    if arch is not None and inferred is not None and not _same_keys(inferred, arch):
        raise CheckpointError(f"{path}: holds an {inferred} model, not {arch}; pass --arch {inferred}")
    arch = arch or inferred
    if arch is None:
        raise CheckpointError(f"{path}: cannot tell the architecture from its keys; pass --arch "
                              f"({', '.join(ARCH_MODALITY)})")
    if released is not None:
        check_state_dict(released, state_dict, str(path))
    try:
        config = infer_config(arch, state_dict)
    except InputError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    _check_size(config, path)
    # The authors trained on ShapeNetCore v1 (up +y, front +x); frames.py turns inputs to match. A training
    # checkpoint of this project (it records its config) stands in the project's frame.
    ours = isinstance(data, dict) and "config" in data and "state" in data
    card: dict[str, Any] = {"source": f"{'training' if ours else 'original'} checkpoint {path.name}"}
    if not ours:
        card["frame"] = dict(SHAPENET_V1_FRAME)
    weights = Weights(config, state_dict, DEFAULT_THRESHOLD, card, source=str(path))
    # Fail here, at load time, with the key names rather than later inside the backend.
    check_state_dict(config, state_dict, str(path))
    return weights


def _check_size(config: ModelConfig, path: Path) -> None:
    try:
        check_size(config)
    except InputError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _check_tensors(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """No tensor of a network is empty: a file of zero-size tensors is made to pass shape checks cheaply while
    its shapes ask for a huge network."""
    empty = [key for key, tensor in tensors.items() if tensor.numel() == 0]
    if empty:
        raise CheckpointError(f"{path}: {len(empty)} tensor(s) hold no values ({_some(empty)}); a network's never "
                              "do: the file is damaged or not a weights file")


MAX_ARCHIVE_BYTES = MAX_WEIGHTS_FILE_BYTES  # what the members of a `.pt` archive may inflate to


def _check_archive(path: Path) -> None:
    """A zip `.pt` (torch's format since 1.6) whose members would inflate past MAX_ARCHIVE_BYTES is refused from
    its directory alone, before torch.load reads any member whole (a 7 MB file of deflated zeros made 7 GB)."""
    if not zipfile.is_zipfile(path):
        return  # torch's legacy format: tensors are read as the file holds them
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)}); is it a weights "
                              "file, and complete?") from None
    if total > MAX_ARCHIVE_BYTES:
        raise CheckpointError(f"{path}: refused: its members would inflate to {total:,} bytes, over the "
                              f"{MAX_ARCHIVE_BYTES:,} any weights file needs; the file is damaged or not a weights "
                              "file")


def _safe_torch_load(path: Path) -> Any:
    _check_torch_format(path)
    _check_archive(path)
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:
            raise CheckpointError(
                f"{path}: refused: it asks to import {found.group(1)} while loading, which a weights file "
                "never needs and which could run code on your machine. It was not loaded. Use the original "
                "authors' released files or weights exported by blender-occnet.") from None
        reason = re.search(r"WeightsUnpickler error: \s*(.+)", str(exc))
        raise CheckpointError(
            f"{path}: not loaded: the safe reader stopped at {reason.group(1).strip() if reason else 'its content'}"
            ". The file is damaged, not a PyTorch checkpoint, or holds Python objects beyond tensors and "
            "numbers.") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            UnicodeDecodeError, SafetensorError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: "
                              f"{_first_line(exc)}); is it a weights file, and complete?") from None


def _check_torch_format(path: Path) -> None:
    """torch.save writes a zip archive, or (the legacy format) a pickle of protocol 2 or later; anything else is
    not a checkpoint, which the safe unpickler meets with an arbitrary exception (a text file: KeyError: 101)."""
    with open(path, "rb") as handle:
        head = handle.read(32)
    if head.startswith(b"PK") or head.startswith(b"\x80"):
        return
    text = head.decode("ascii") if all(32 <= b < 127 or b in b"\t\r\n" for b in head) else None
    what = f"it is text ({text.strip()[:20]!r}...)" if text is not None else \
        "its bytes are neither a zip archive nor a pickle, the two formats torch.save writes"
    raise CheckpointError(f"{path}: not a PyTorch checkpoint: {what}; use the authors' released .pt files or "
                          "weights exported by blender-occnet")


def _numpy_scalar_globals() -> list[Any]:
    """What pickling a numpy scalar (like the original's `loss_val_best`) refers to; nothing more."""
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        from numpy._core.multiarray import scalar  # type: ignore[attr-defined]
        # Files written under numpy 1 name it numpy.core.multiarray.scalar.
        allowed: list[Any] = [scalar, (scalar, "numpy.core.multiarray.scalar")]
    else:
        from numpy.core.multiarray import scalar  # type: ignore[attr-defined]
        allowed = [scalar]
    allowed.append(np.dtype)
    allowed += [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
    return allowed


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 2 <= header_len <= 100_000_000 and head[8:9] == b"{"


def _strip_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # DistributedDataParallel saves keys as "module.encoder...": accept those too.
    if all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def infer_arch(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """Tell the architecture from the key names (the first family whose signature they carry), or None.
    A family may raise for a kind of its files that is recognised and not supported (ConvONet's scene models)."""
    for family in FAMILIES.values():
        if family.signature(state_dict.keys()):
            return family.recognise(state_dict)
    return None


def _same_keys(inferred: str, arch: str) -> bool:
    """Whether `arch` may be what a file of the `inferred` kind holds (ConvONet's one and three planes share
    keys)."""
    return _keys_of(inferred) == _keys_of(arch)


def _keys_of(arch: str) -> str:
    return default_config(arch).architecture.keys_like or arch


def infer_config(arch: str, state_dict: Mapping[str, torch.Tensor]) -> ModelConfig:
    """The architecture's config with what its family reads off the tensors (smaller custom models load too)."""
    config = default_config(arch)
    return ModelConfig.from_dict({**config.to_dict(), **config.family.read_config(state_dict)})


def load_state_dict_checked(model: Network, state_dict: Mapping[str, torch.Tensor],
                            source: str) -> None:
    """Load strictly; on mismatch name the missing and unexpected keys or the first wrong shape."""
    check_state_dict(model.config, state_dict, source)
    model.load_state_dict(dict(state_dict), strict=True)


def check_state_dict(config: ModelConfig, state_dict: Mapping[str, torch.Tensor], source: str,
                     hint: str = "Is --arch right?") -> None:
    """Every key and shape of the network `config` builds, and nothing else, without building it; `hint` ends
    the message with what to do."""
    expected = state_shapes(config)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_some(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_some(unexpected)}")
        raise CheckpointError(f"{source}: does not fit the {config.arch} architecture: "
                              f"{'; '.join(parts)}. {hint}")
    for key, shape in expected.items():
        if tuple(state_dict[key].shape) != shape:
            raise CheckpointError(f"{source}: {key} has shape {tuple(state_dict[key].shape)}, the architecture "
                                  f"expects {shape}. {hint}")


# ---------------------------------------------------------------------------------------------
# Saving


def save_weights(path: str | os.PathLike[str], weights: Weights, half: bool = False) -> None:
    """Write our `.safetensors` format atomically (a crash never leaves half a file at `path`).

    half: store float32 tensors as float16 (half the size; loading turns them back into float32). For
    weights that ship in the extension; a tensor float16 cannot hold stays float32."""
    _check_threshold(weights.threshold, path)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(weights.config.to_dict(), sort_keys=True),
        "modality": weights.modality,
        "threshold": repr(float(weights.threshold)),
        "model_card": json.dumps(weights.card, sort_keys=True),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in weights.state_dict.items()}
    if half:
        tensors = {k: v.half() if v.dtype == torch.float32 and _fits_half(v) else v for k, v in tensors.items()}
    with atomic_output(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def _fits_half(tensor: torch.Tensor) -> bool:
    return bool(tensor.numel() == 0 or tensor.abs().max() < torch.finfo(torch.float16).max)


def convert_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                       arch: str | None = None) -> Weights:
    """Original `.pt` -> our `.safetensors`, every tensor kept under its name with its values."""
    weights = load_weights(src, arch)
    weights.card = {**weights.card, "converted_from": Path(src).name, "source_sha256": file_sha256(Path(src))}
    save_weights(dst, weights)
    return weights


def _check_threshold(threshold: float, path: Any) -> None:
    if not (isinstance(threshold, float) and math.isfinite(threshold) and 0.0 < threshold < 1.0):
        raise CheckpointError(f"{path}: threshold {threshold!r} is not a probability in (0, 1)")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _some(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
