"""blender-occnet: Occupancy Networks in Blender (image, point cloud or voxels -> mesh).

Blender loads this package as an extension and calls register(); `python -m blender_occnet` runs the
command line in any Python with the backend's requirements. Importing it needs neither bpy nor torch.
"""

__version__ = "0.1.0"


def register() -> None:
    """Blender's entry point; the add-on (and bpy) is imported only here."""
    from . import addon

    addon.register()


def unregister() -> None:
    from . import addon

    addon.unregister()
