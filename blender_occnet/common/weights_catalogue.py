"""Where weights files are looked for, the same for the add-on (the Weights field's suggestions) and the torch
side (occnet/registry.py, which reads each file's header), and the catalogue of the authors' released weights
(occnet/released.py downloads them; the preferences list them)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .user_dirs import user_weights_dir

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "weights"
ENV_DIRS = "OCCNET_WEIGHTS_PATH"  # extra folders, separated by os.pathsep
WEIGHTS_SUFFIX = ".safetensors"  # this project's format
ORIGINAL_SUFFIXES = (".pt", ".pth")  # the original projects' checkpoints
RELEASED = Path(__file__).resolve().parent / "released_weights.json"


def search_dirs(extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """The folders searched, in order: `extra` (the preferences' folder, --weights-dir), $OCCNET_WEIGHTS_PATH's,
    the user weights folder (downloads), the bundled weights."""
    dirs = [Path(d) for d in extra]
    dirs += [Path(d) for d in os.environ.get(ENV_DIRS, "").split(os.pathsep) if d]
    dirs += [user_weights_dir(), BUNDLED_DIR]
    return dirs


def weights_files(extra: Iterable[str | os.PathLike[str]] = (),
                  suffixes: tuple[str, ...] = (WEIGHTS_SUFFIX,)) -> list[Path]:
    """The files with these suffixes in the search folders, folder by folder, each folder's sorted by name (a
    name in an earlier folder shadows the same name in a later one: the reader keeps the first)."""
    return [path for folder in search_dirs(extra) if folder.is_dir()
            for path in sorted(folder.iterdir()) if path.suffix in suffixes]


def is_original_checkpoint(weights: str) -> bool:
    """Whether a weights name or path is an original .pt file (whose architecture may need telling)."""
    return weights.strip().lower().endswith(ORIGINAL_SUFFIXES)


def released_catalogue() -> list[dict[str, Any]]:
    """released_weights.json's entries: every file the authors released, with its address and architecture."""
    entries: list[dict[str, Any]] = json.loads(RELEASED.read_text(encoding="utf-8"))["weights"]
    return entries
