"""occnet.import_binvox: a .binvox file -> a voxel source object (a cube per filled cell, each face
carrying its cell's index) that occnet.reconstruct sends as modality voxels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy
import numpy as np
from bpy.props import StringProperty
from bpy_extras.io_utils import ImportHelper
from mathutils import Matrix

from ...common.binvox import pool_grid, read_binvox
from ...common.errors import InputError
from .. import geometry, scene_io


def load_grid(path: str) -> tuple[np.ndarray, np.ndarray, float]:
    """The file's 32^3 grid [x, y, z] (finer grids whose size is a multiple of 32 are pooled), its centre
    and size in the network frame."""
    vox = read_binvox(path)
    grid = pool_grid(vox.data, geometry.VOXELS, Path(path).name)  # the rule the command line applies too
    return grid, vox.translate + vox.scale / 2, vox.scale


class OCCNET_OT_import_binvox(bpy.types.Operator, ImportHelper):  # type: ignore[misc]
    """Import a .binvox voxel grid as a voxel source for reconstruction"""

    bl_idname = "occnet.import_binvox"
    bl_label = "Import .binvox"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".binvox"
    filter_glob: StringProperty(default="*.binvox", options={"HIDDEN"})  # type: ignore[valid-type]
    if TYPE_CHECKING:
        filepath: str  # declared by ImportHelper

    def execute(self, context: bpy.types.Context) -> set[Any]:
        try:
            grid, centre, size = load_grid(self.filepath)
        except InputError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        cells = np.argwhere(grid)
        if len(cells) == 0:
            self.report({"ERROR"}, f"{Path(self.filepath).name} has no filled voxels")
            return {"CANCELLED"}
        vertices, quads, index = geometry.voxel_cubes(cells)
        location = geometry.network_to_blender(np.asarray(centre, np.float64)[None])[0]
        matrix = Matrix.LocRotScale(location, None, (size, size, size))
        scene, collection = context.scene, context.collection
        assert scene is not None
        names = (collection.name if collection is not None and not collection.is_embedded_data else "",)
        obj = scene_io.add_object(Path(self.filepath).stem, vertices, quads, matrix, names,
                                  scene, context.view_layer, smooth=False)
        attribute: Any = obj.data.attributes.new(scene_io.VOXEL_ATTRIBUTE, "INT", "FACE")  # type: ignore[union-attr]
        attribute.data.foreach_set("value", index)
        obj.occnet.kind = "VOXELS"  # type: ignore[attr-defined]
        self.report({"INFO"}, f"Imported {len(cells):,} voxels as '{obj.name}'")
        return {"FINISHED"}


def menu_import(self: Any, context: bpy.types.Context) -> None:
    self.layout.operator(OCCNET_OT_import_binvox.bl_idname, text="Voxels for OccNet (.binvox)")


CLASSES = (OCCNET_OT_import_binvox,)
