"""blender-occnet: Occupancy Networks in Blender (image, point cloud or voxels -> mesh).

Blender loads this package as an extension and calls register(); `python -m blender_occnet` runs the
command line in any Python with the backend's requirements. Importing it needs neither bpy nor torch.
"""

__version__ = "0.1.0"
