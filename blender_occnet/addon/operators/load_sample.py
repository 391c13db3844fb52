"""occnet.load_sample: one of the bundled sample inputs, ready to reconstruct in one click (a point-cloud
object, a voxel object, or an image chosen as the source and shown as an image empty)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import bpy
from bpy.props import EnumProperty

from .. import router

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "samples"
# Modality -> the bundled file (made by `python -m training.samples`, none of them in a training split).
SAMPLES = {"pointcloud": "chair_pointcloud.ply", "voxels": "car_voxels.binvox", "image": "sofa_image.png"}


class OCCNET_OT_load_sample(bpy.types.Operator):
    """Load a bundled sample input and make it the source, to try the add-on in one click"""

    bl_idname = "occnet.load_sample"
    bl_label = "Load sample"
    bl_options = {"REGISTER", "UNDO"}

    modality: EnumProperty(  # type: ignore[valid-type]
        name="Sample", default="pointcloud",
        items=[("pointcloud", "Point cloud (chair)", "3,000 points on a chair, as a point cloud object"),
               ("voxels", "Voxels (car)", "A 32³ voxel grid of a car, as a voxel object"),
               ("image", "Image (sofa)", "A rendered image of a sofa, chosen as the source")])

    def execute(self, context: bpy.types.Context) -> set[Any]:
        path = SAMPLES_DIR / SAMPLES[self.modality]
        if not path.is_file():
            self.report({"ERROR"}, f"The sample {path.name} is missing from the extension; reinstall it")
            return {"CANCELLED"}
        scene = context.scene
        assert scene is not None
        settings = scene.occnet  # type: ignore[attr-defined]
        if self.modality == "voxels":
            # The stubs know Blender's own operators only.
            result: set[Any] = bpy.ops.occnet.import_binvox(filepath=str(path))  # type: ignore[attr-defined]
            return result
        if self.modality == "image":
            image = bpy.data.images.load(str(path), check_existing=True)
            settings.image, settings.source_kind = image, "IMAGE"
            empty: Any = bpy.data.objects.new(path.stem, None)  # the stubs do not allow an image as its data
            empty.empty_display_type, empty.empty_display_size = "IMAGE", 2.0
            empty.data = image
            empty.location = scene.cursor.location
            empty.rotation_euler = (math.pi / 2, 0.0, 0.0)  # upright, facing -y (the front view)
            (context.collection or scene.collection).objects.link(empty)
            # Selected and active, so that no object left active (an earlier result) is what Reconstruct uses.
            make_source(context, empty)
            self.report({"INFO"}, f"'{image.name}' is the source; click Reconstruct")
            return {"FINISHED"}
        return self._point_cloud(context, path)

    def _point_cloud(self, context: bpy.types.Context, path: Path) -> set[Any]:
        before = set(bpy.data.objects)
        # The samples are in the network's frame (y-up, front -z): file (x, y, z) -> Blender (-x, z, y), the
        # add-on's mapping, so the sample stands upright facing the Front view.
        bpy.ops.wm.ply_import(filepath=str(path), forward_axis="Z", up_axis="Y")
        new = [obj for obj in bpy.data.objects if obj not in before]
        if len(new) != 1 or new[0].type != "MESH":
            self.report({"ERROR"}, f"Blender could not import {path.name}")
            return {"CANCELLED"}
        obj = new[0]
        make_source(context, obj)
        bpy.ops.object.convert(target="POINTCLOUD")  # the points as what they are: a point cloud object
        settings = context.scene.occnet  # type: ignore[union-attr]
        if settings.source_kind not in ("SURFACE", "VERTICES"):
            settings.source_kind = "SURFACE"
        router.status().last_error = ""
        active = context.view_layer.objects.active  # type: ignore[union-attr]
        self.report({"INFO"}, f"Loaded '{active.name if active else obj.name}'; click Reconstruct")
        return {"FINISHED"}


def make_source(context: bpy.types.Context, obj: bpy.types.Object) -> None:
    """What a sample loaded becomes what Reconstruct uses (scene_io.chosen_targets): the only selected object,
    and the active one."""
    view_layer = context.view_layer
    assert view_layer is not None
    for other in view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    view_layer.objects.active = obj


class OCCNET_MT_samples(bpy.types.Menu):
    bl_idname = "OCCNET_MT_samples"
    bl_label = "Load sample"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        assert layout is not None
        layout.operator_enum(OCCNET_OT_load_sample.bl_idname, "modality")


CLASSES = (OCCNET_OT_load_sample, OCCNET_MT_samples)
