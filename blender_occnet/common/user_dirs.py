"""Per-user folders shared by the command line, the backend and the add-on (stdlib only, so Blender's
Python can import it without torch)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_USER_WEIGHTS = "OCCNET_WEIGHTS_DIR"  # where downloaded weights go (and are found), instead of the default


def user_weights_dir() -> Path:
    """The per-user folder for downloaded weights: $OCCNET_WEIGHTS_DIR, else the platform's user data
    folder (Linux ~/.local/share, macOS ~/Library/Application Support, Windows %APPDATA%)."""
    if os.environ.get(ENV_USER_WEIGHTS):
        return Path(os.environ[ENV_USER_WEIGHTS]).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "blender-occnet" / "weights"
