"""Which weights files there are and what each says about itself (its header, checked), and which one a name or
path means. The folders searched are common/weights_catalogue.py's, which the add-on reads too."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError, safe_open

from ..common.errors import CheckpointError
from ..common.geometry import subsample
from ..common.policy import MODALITIES
from ..common.user_dirs import user_weights_dir as user_weights_dir  # the command line's
from ..common.weights_catalogue import BUNDLED_DIR, search_dirs, weights_files  # the add-on's search too
from .checkpoints import FORMAT_NAME
from .config import ARCH_MODALITY, ModelConfig
from .model import check_size

if TYPE_CHECKING:
    from .preprocess import PreparedInput


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


# What a weights file's header may hold before it is read (issue 24: one bad file in a folder broke every
# handshake): its header, card and texts bounded, the card's nesting shallow, the threshold a probability.
MAX_HEADER_BYTES = 1 << 20
MAX_CARD_BYTES = 256 << 10
MAX_NESTING = 32
MAX_NAME = 200


def describe(path: Path) -> WeightsInfo:
    """What a weights file says about itself, from its header alone, every part of it bounded and checked: a
    file that is not right is listed as unusable with the reason, and never stops the listing."""
    info = WeightsInfo(path.stem[:MAX_NAME], path)
    try:
        if len(path.stem) > MAX_NAME:
            raise ValueError(f"its name is over {MAX_NAME} characters; rename it")
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
        if size > MAX_HEADER_BYTES:
            raise ValueError(f"its header is {size:,} bytes, over the {MAX_HEADER_BYTES:,} a weights file needs")
        with safe_open(str(path), framework="pt", device="cpu") as opened:
            meta = opened.metadata() or {}
        if meta.get("format") != FORMAT_NAME:
            raise ValueError("no blender-occnet metadata")
        config = json.loads(meta["config"])
        if not isinstance(config, dict) or config.get("arch") not in ARCH_MODALITY:
            raise ValueError(f"its config names no known architecture ({', '.join(sorted(ARCH_MODALITY))})")
        check_size(ModelConfig.from_dict(config))  # a network too large to build is listed as unusable, with why
        if meta.get("modality") not in MODALITIES:
            raise ValueError(f"its modality is not one of {', '.join(MODALITIES)}")
        threshold = float(meta["threshold"])
        if not 0.0 < threshold < 1.0:  # NaN fails too
            raise ValueError(f"its threshold {meta['threshold'][:20]!r} is not a probability in (0, 1)")
        card_text = meta.get("model_card", "{}")
        if len(card_text) > MAX_CARD_BYTES:
            raise ValueError(f"its model card is {len(card_text):,} bytes, over {MAX_CARD_BYTES:,}")
        card = json.loads(card_text)
        if not isinstance(card, dict):
            raise ValueError("its model card is not a JSON object")
        if _depth(card) > MAX_NESTING:
            raise ValueError(f"its model card is nested over {MAX_NESTING} deep")
        info.arch, info.modality, info.threshold, info.card = config["arch"], meta["modality"], threshold, card
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        info.error = f"unusable: {str(exc)[:300]}"
    return info


def _depth(value: Any) -> int:
    """How deeply JSON values nest, without recursion (a card nested 50,000 deep must not overflow the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING:
            return deepest
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def list_weights(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> list[WeightsInfo]:
    """Every `.safetensors` file in the search folders; earlier folders shadow later ones by name."""
    seen: dict[str, WeightsInfo] = {}
    for path in weights_files(extra_dirs):
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


# The bundled point-cloud weights come in two plane sizes (BENCHMARKS.md, "64x64 planes for dense clouds"). Fitted
# to clouds whose median spacing is FINE_SPACING or less (3,000 points over an object and more), the 64x64 planes
# (pointcloud_fine) came out as good or better on 22 of 23 bench clouds (Chamfer-L1 x10 from 3,000 points 0.0375 ->
# 0.0366, from 20,000 0.0289 -> 0.0281, the knot 0.041 -> 0.031) and the network alone meets issue 23's man-made
# target (IoU 0.90); from sparser clouds the 32x32 planes draw round shapes better (organic shapes from 1,000
# points 0.044 against 0.049). A request that names no weights gets the fine ones for a cloud this dense.
FINE_WEIGHTS = {"pointcloud": "pointcloud_fine"}
FINE_SPACING = 0.016  # box units (the unit cube's side is 1)


def finer_weights(default: Path, prepared: PreparedInput) -> Path | None:
    """The bundled fine weights for this prepared input when `default` (what a request naming no weights
    resolved to) is the bundled file of its modality and the input is dense enough for them (FINE_WEIGHTS);
    None otherwise: a user's own default weights are always kept."""
    fine = FINE_WEIGHTS.get(prepared.modality)
    if fine is None or default.resolve() != (BUNDLED_DIR / f"{prepared.modality}.safetensors").resolve():
        return None
    path = BUNDLED_DIR / f"{fine}.safetensors"
    if not path.is_file() or not describe(path).usable:
        return None
    points = prepared.observed if prepared.observed is not None else prepared.array
    return path if cloud_spacing(points) <= FINE_SPACING else None


def cloud_spacing(points: np.ndarray) -> float:
    """The median distance from a point to its nearest neighbour (infinite for fewer than two points)."""
    from scipy.spatial import cKDTree

    from .winding import TREE_POINTS, median_spacing  # (torch and scipy: loaded only when a cloud is judged)

    # Among as many points as the winding guide measures its spacing (the same figure for the same cloud).
    sample = subsample(np.asarray(points, np.float64).reshape(-1, 3), TREE_POINTS, seed=1)
    return median_spacing(cKDTree(sample), sample) if len(sample) > 1 else float("inf")
