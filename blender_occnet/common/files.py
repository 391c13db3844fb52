"""File helpers shared by every writer: outputs appear whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import InputError, OutputError


class atomic_output:
    """Context manager yielding a temporary path beside `path`, renamed onto it only on success.

    A write that fails for want of space (or any other error of the file system) becomes one OutputError that
    says so, with nothing of it left: the one rule for every writer (meshes, weights, checkpoints)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __enter__(self) -> str:
        self.folder = self.path.parent if str(self.path.parent) else Path(".")
        if not self.folder.is_dir():
            raise InputError(f"{self.path}: folder {self.folder} does not exist")
        if not os.access(self.folder, os.W_OK):
            raise InputError(f"{self.path}: folder {self.folder} is not writable")
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.folder)
        except OSError as exc:
            raise self._failed(exc) from None
        os.close(fd)
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                os.chmod(self.tmp, 0o644)  # mkstemp (and some writers) make it private; the result is ordinary
                os.replace(self.tmp, self.path)
                return
            except OSError as error:
                exc = error
        # Before the partial file goes (which frees its space): torch and safetensors report a full disk in their
        # own words ("unexpected pos 640 vs 534"), so the disk itself is asked.
        full = not isinstance(exc, OSError) and _nearly_full(self.folder)
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)
        if isinstance(exc, OSError) or full:
            raise self._failed(exc if isinstance(exc, OSError) else None) from None

    def _failed(self, exc: OSError | None) -> OutputError:
        reason = (exc.strerror or str(exc)) if exc is not None else "No space left on device"
        return OutputError(f"{self.path}: not written: {reason} (in {self.folder}; nothing of it was left there); "
                           "free some space or write it elsewhere, then run the same command again")


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL
    except OSError:
        return False


NEARLY_FULL = 1 << 20  # free bytes under which a writer's failure is taken for a full disk
