"""Where weights files are found: the bundled folder, folders the user names, or explicit paths."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from ..user_dirs import user_weights_dir
from .checkpoints import FORMAT_NAME
from .errors import CheckpointError

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "weights"
ENV_DIRS = "OCCNET_WEIGHTS_PATH"  # extra folders, separated by os.pathsep


@dataclass
class WeightsInfo:
    """What a weights file says about itself, read from its header alone (no tensors loaded)."""

    name: str
    path: Path
    modality: str = ""
    arch: str = ""
    threshold: float = 0.0
    card: dict[str, Any] = field(default_factory=dict)
    error: str = ""  # why the file is unusable, empty when it is fine

    @property
    def usable(self) -> bool:
        return not self.error

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "modality": self.modality, "arch": self.arch,
                "threshold": self.threshold, "card": self.card, "error": self.error}


def search_dirs(extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    dirs = [Path(d) for d in extra]
    dirs += [Path(d) for d in os.environ.get(ENV_DIRS, "").split(os.pathsep) if d]
    dirs += [user_weights_dir(), BUNDLED_DIR]
    return dirs


def describe(path: Path) -> WeightsInfo:
    info = WeightsInfo(path.stem, path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
        if meta.get("format") != FORMAT_NAME:
            raise ValueError("no blender-occnet metadata")
        config = json.loads(meta["config"])
        info.arch, info.modality = config["arch"], meta["modality"]
        info.threshold = float(meta["threshold"])
        info.card = json.loads(meta.get("model_card", "{}"))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        info.error = f"unusable: {exc}"
    return info


def list_weights(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> list[WeightsInfo]:
    """Every `.safetensors` file in the search folders; earlier folders shadow later ones by name."""
    seen: dict[str, WeightsInfo] = {}
    for folder in search_dirs(extra_dirs):
        if folder.is_dir():
            for path in sorted(folder.glob("*.safetensors")):
                seen.setdefault(path.stem, describe(path))
    return list(seen.values())


def resolve_weights(name_or_path: str | None, modality: str | None = None,
                    extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """A weights file from a path, a name in the search folders, or (None) the first usable one for
    `modality`."""
    if name_or_path:
        candidate = Path(name_or_path).expanduser()
        if candidate.suffix in (".pt", ".pth", ".safetensors") or os.sep in str(name_or_path):
            if not candidate.is_file():
                raise CheckpointError(f"{candidate}: no such weights file")
            return candidate
        for info in list_weights(extra_dirs):
            if info.name == name_or_path:
                if info.error:
                    raise CheckpointError(f"weights {info.name!r} ({info.path}) are {info.error}")
                return info.path
        raise CheckpointError(f"no weights named {name_or_path!r}; `python -m blender_occnet models` lists them")
    usable = [info for info in list_weights(extra_dirs) if info.usable and info.modality == modality]
    if not usable:
        raise CheckpointError(f"no {modality} weights found in {', '.join(map(str, search_dirs(extra_dirs)))}; "
                              "pass --weights PATH")
    return usable[0].path
