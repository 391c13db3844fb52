"""The sidebar panel (View3D > Sidebar > OccNet): source, settings, Reconstruct, progress and Cancel,
the last result or error, and a reconstructed object's live threshold and resolution."""

from __future__ import annotations

import bpy

from ..common.settings import SIDEBAR
from . import live, preferences, properties, scene_io, state

DRAWN_APART = ("resolution", "colours")  # the resolution with the cell size it gives, colours with their source


class OCCNET_PT_main(bpy.types.Panel):
    bl_idname = "OCCNET_PT_main"
    bl_label = "Occupancy Network"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "OccNet"

    def draw(self, context: bpy.types.Context) -> None:
        layout, scene, wm = self.layout, context.scene, context.window_manager
        if layout is None or scene is None or wm is None:
            return
        settings, status = scene.occnet, wm.occnet_job  # type: ignore[attr-defined]
        state.session().backend.warm_up(preferences.backend_settings(context))  # returns at once; starts it once
        obj = context.active_object
        selected = context.view_layer.objects.selected if context.view_layer is not None else ()
        layout.menu("OCCNET_MT_samples", icon="FILE_3D")
        if settings.source_kind == "IMAGE":
            layout.template_ID(settings, "image", open="image.open")
        using = scene_io.describe_source(settings, obj, selected)
        # Always visible, and what the operator will really use (scene_io.chosen_source).
        layout.label(text=f"Reconstructs {using}" if using else "Select a mesh or point cloud object",
                     icon="OBJECT_DATA" if using else "INFO")
        column = layout.column(align=True)
        column.use_property_split = True
        column.prop(settings, "weights")
        if properties.is_original_checkpoint(settings.weights):
            column.prop(settings, "arch")
        column.prop(settings, "resolution")
        kind = scene_io.chosen_source(settings, obj)
        if obj is not None and kind not in ("", "IMAGE"):
            size = scene_io.describe_size(obj, int(settings.resolution), scene)
            if size:
                column.label(text=size, icon="DRIVER_DISTANCE")
        for setting in SIDEBAR:  # the declared settings (common/settings.py), but those drawn with more
            if setting.name in DRAWN_APART or (setting.points_only and kind not in ("SURFACE", "VERTICES")):
                continue
            row = column
            if setting.unset_name:  # its switch (on: the weights' own), the value greyed out while it is on
                column.prop(settings, setting.unset_name)
                row = column.row()
                row.enabled = not getattr(settings, setting.unset_name)
            row.prop(settings, setting.name)
        if kind == "IMAGE":  # the image's colours, projected from the view its outline matches
            column.prop(settings, "colours", text="Colours from the image")
        elif obj is not None and kind in ("SURFACE", "VERTICES", "VOXELIZE", "VOXELS"):
            attribute = scene_io.colour_attribute(obj.data)
            row = column.row()
            row.enabled = attribute is not None  # nothing to take: said, not hidden
            row.prop(settings, "colours", text=f"Colours from '{attribute.name}'" if attribute is not None
                     else "Colours (the source has none)")
        if obj is None or obj.occnet.kind != "VOXELS":  # type: ignore[attr-defined]
            column.prop(settings, "source_kind")
        column.prop(settings, "hide_source")
        if status.running:
            row = layout.row(align=True)
            row.progress(factor=status.progress, type="BAR", text=status.stage or "working")
            row.operator("occnet.cancel", text="", icon="CANCEL")
        else:
            layout.operator("occnet.reconstruct", icon="MESH_ICOSPHERE")
        if status.last_result:  # with an error too when some of a batch's sources failed
            layout.label(text=status.last_result, icon="CHECKMARK")
        if status.last_error:
            box = layout.box()
            for i, line in enumerate(_wrap(status.last_error)):
                box.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
        if obj is not None and obj.occnet.kind == "RESULT":  # type: ignore[attr-defined]
            _draw_result(layout, obj, scene)


def _draw_result(layout: bpy.types.UILayout, obj: bpy.types.Object, scene: bpy.types.Scene | None) -> None:
    """A reconstructed object's own threshold, resolution and (a point cloud's) trim: changing them re-extracts it
    (live)."""
    box = layout.box()
    record = obj.occnet  # type: ignore[attr-defined]
    box.label(text=f"{obj.name} from {record.source or '?'} (live)", icon="MODIFIER")
    column = box.column(align=True)
    column.use_property_split = True
    column.prop(record, "threshold")
    column.prop(record, "resolution")
    if record.modality == "pointcloud":
        column.prop(record, "trim_unseen")
    source = bpy.data.objects.get(record.source) if record.source else None
    size = scene_io.describe_size(source or obj, int(record.resolution), scene) if scene is not None else ""
    if size:
        column.label(text=size, icon="DRIVER_DISTANCE")
    if live.pending(obj.name):
        box.label(text="Re-extracting...", icon="SORTTIME")


def _wrap(text: str, width: int = 48) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line] if line else lines


def register() -> None:
    bpy.utils.register_class(OCCNET_PT_main)


def unregister() -> None:
    bpy.utils.unregister_class(OCCNET_PT_main)
