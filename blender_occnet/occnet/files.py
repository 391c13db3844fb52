"""File helpers shared by every writer: outputs appear whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import InputError


class atomic_output:
    """Context manager yielding a temporary path beside `path`, renamed onto it only on success."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __enter__(self) -> str:
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not folder.is_dir():
            raise InputError(f"{self.path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise InputError(f"{self.path}: folder {folder} is not writable")
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=folder)
        os.close(fd)
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            os.chmod(self.tmp, 0o644)  # mkstemp (and some writers) make it private; the result is ordinary
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.unlink(self.tmp)
