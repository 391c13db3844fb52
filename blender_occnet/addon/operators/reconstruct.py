"""occnet.reconstruct: the active object (with every other selected source) or the chosen image -> a new
mesh object each. Modal from the UI (Blender stays responsive, ESC cancels), synchronous from scripts; both
start the session's Batch, as the scripting API (../api.py) does."""

from __future__ import annotations

from typing import Any

import bpy

from ...common.settings import REDO
from .. import jobs, preferences, properties, router, scene_io, state
from .modal import TimerModal

# What the redo panel (Adjust Last Operation) offers: the declared settings that make sense after the fact
# (common/settings.py's `redo`), properties of the operator (below the class). Each starts from the scene's value
# (SKIP_SAVE: never from an earlier run's) and is sent as that request field.
REDO_PROPERTIES = properties.setting_properties(REDO, options={"SKIP_SAVE"})

SYNC_TIMEOUT = 3600.0


def begin(context: bpy.types.Context, block: bool, overrides: dict[str, Any] | None = None) -> jobs.Batch:
    """Start what the panel says Reconstruct uses (scene_io.chosen_targets) with the scene's settings;
    `overrides` replaces request fields (the redo values). Connects on a thread unless `block`. Raises
    StartError when it cannot start; a source that cannot be read fails in the batch, named."""
    scene, view_layer = context.scene, context.view_layer
    if scene is None or view_layer is None:
        raise jobs.StartError("no scene to reconstruct in")
    settings = scene.occnet  # type: ignore[attr-defined]
    targets = [jobs.Target(data, kind) for data, kind in
               scene_io.chosen_targets(settings, context.active_object, view_layer.objects.selected)]
    if not targets:
        raise jobs.StartError("select a mesh or point cloud object to reconstruct")
    request = {**properties.request_settings(settings), **(overrides or {})}
    return state.session().reconstruct(targets, request, preferences.backend_settings(context), scene, view_layer,
                                       hide_source=bool(settings.hide_source), block=block)


class OCCNET_OT_reconstruct(TimerModal, bpy.types.Operator):
    """Reconstruct a mesh from the active point cloud, mesh or voxel object (and every other selected one), or
    from the chosen image, with an Occupancy Network"""

    bl_idname = "occnet.reconstruct"
    bl_label = "Reconstruct"
    # The undo step is pushed when the operator finishes, modal or not; REGISTER puts it in the Info log and
    # gives it the redo panel, whose changes run the reconstruction again (synchronously) from the sources.
    # Several selected sources are one batch and so ONE undo step: the click made them together, and one
    # Ctrl+Z removes every result and shows every source again. A cancelled batch that kept results also
    # ends FINISHED, so its results get their undo step rather than joining the previous one.
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        scene = context.scene
        kind = scene_io.chosen_source(scene.occnet, context.active_object) if scene is not None else ""  # type: ignore[attr-defined]
        if kind == "IMAGE" and scene.occnet.image is None:  # type: ignore[union-attr]
            cls.poll_message_set("Pick an image in the OccNet panel")
            return False
        if not kind:
            cls.poll_message_set("Select a mesh or point cloud object")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[Any]:
        batch = self._begin(context, block=True)
        if batch is None:
            return {"CANCELLED"}
        jobs.wait(batch, SYNC_TIMEOUT)
        return self._end(batch)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[Any]:
        batch = self._begin(context, block=False)
        if batch is None:
            return {"CANCELLED"}
        if batch.state in jobs.DONE:  # no source could be read
            return self._end(batch)
        return self._run_modal(context, 0.1)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[Any]:
        session = state.session_or_none()
        batch = session.batch if session is not None else None
        if batch is None:  # the add-on was disabled or reloaded underneath us
            return self._stop(context, {"CANCELLED"})
        if event.type == "ESC" and event.value == "PRESS":
            batch.cancel()
        if event.type == "TIMER":
            batch.step()
            for area in context.screen.areas if context.screen else ():
                if area.type == "VIEW_3D":
                    area.tag_redraw()
            if batch.state in jobs.DONE:
                return self._stop(context, self._end(batch))
        return {"PASS_THROUGH"}

    def _overrides(self, context: bpy.types.Context) -> dict[str, Any]:
        """The redo values: the scene's settings unless this run (a redo, or a script) set them."""
        scene_settings = context.scene.occnet  # type: ignore[union-attr]
        for name in REDO_PROPERTIES:
            if not self.properties.is_property_set(name):
                setattr(self, name, getattr(scene_settings, name))
        return {setting.name: properties.setting_value(setting, self) for setting in REDO}

    def _begin(self, context: bpy.types.Context, block: bool) -> jobs.Batch | None:
        try:
            return begin(context, block, self._overrides(context))
        except jobs.StartError as exc:
            self._fail(str(exc))
            return None

    def _fail(self, message: str) -> None:
        router.status().last_error = message
        self.report({"ERROR"}, message)

    def _end(self, batch: jobs.Batch) -> set[Any]:
        made = [bpy.data.objects.get(name) for name in batch.results]
        if any(obj is not None and isinstance(obj.data, bpy.types.Mesh)
               and scene_io.RESULT_COLOURS in obj.data.color_attributes for obj in made):
            show_colours(bpy.context)
        if batch.state == "finished":
            if batch.failures:  # the others were made: a warning, and their undo step
                self.report({"WARNING"}, f"{batch.message}; {len(batch.failures)} failed: {batch.failure_summary()}")
            else:
                self.report({"INFO"}, batch.message)
            return {"FINISHED"}
        if batch.state == "cancelled":
            self.report({"WARNING"}, "Reconstruction cancelled" if len(batch.items) == 1 else batch.message)
            return {"FINISHED"} if batch.results else {"CANCELLED"}
        self._fail(batch.message)
        return {"CANCELLED"}


def show_colours(context: bpy.types.Context) -> None:
    """Solid shading draws a material's viewport colour unless told to draw colour attributes: the 3D views of this
    window that show Solid with Material colours switch to Attribute colours, so a coloured result shows at once
    (Material Preview and renders use its material). Only the button does this; the API leaves views alone."""
    for area in context.screen.areas if context.screen is not None else ():
        for space in area.spaces if area.type == "VIEW_3D" else ():
            shading = getattr(space, "shading", None)
            if shading is not None and shading.type == "SOLID" and shading.color_type == "MATERIAL":
                shading.color_type = "VERTEX"  # the UI's "Attribute": the active colour attribute


OCCNET_OT_reconstruct.__annotations__.update(REDO_PROPERTIES)
CLASSES = (OCCNET_OT_reconstruct,)
