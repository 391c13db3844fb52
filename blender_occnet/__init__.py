"""blender-occnet: Occupancy Networks in Blender (image, point cloud or voxels -> mesh).

Blender loads this package as an extension and calls register(); `python -m blender_occnet` runs the
command line in any Python with the backend's requirements. Importing it needs neither bpy nor torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"


def __getattr__(name: str) -> ModuleType:
    """`from <extension> import api`, the scripting API's public path: the add-on's api module, loaded (with bpy)
    on first use."""
    if name == "api":
        return importlib.import_module(f"{__name__}.addon.api")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register() -> None:
    """Blender's entry point; the add-on (and bpy) is imported only here."""
    from . import addon

    addon.register()


def unregister() -> None:
    from . import addon

    addon.unregister()
