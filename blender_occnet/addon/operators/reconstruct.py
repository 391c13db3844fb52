"""occnet.reconstruct: the active object -> a new mesh object. Modal from the UI (Blender stays
responsive, ESC cancels), synchronous from scripts; both run the same ReconstructJob."""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty

from .. import events, jobs, properties, scene_io
from .modal import TimerModal

# What the redo panel (Adjust Last Operation) offers: the settings that make sense after the fact. Each
# starts from the scene's value (SKIP_SAVE: never from an earlier run's) and is sent as that request field.
REDO_SETTINGS = ("resolution", "threshold", "refine_steps", "simplify_faces")

SYNC_TIMEOUT = 3600.0


class OCCNET_OT_reconstruct(TimerModal, bpy.types.Operator):
    """Reconstruct a mesh from the active point cloud, mesh or voxel object, or from the chosen image, with an
    Occupancy Network"""

    bl_idname = "occnet.reconstruct"
    bl_label = "Reconstruct"
    # The undo step is pushed when the operator finishes, modal or not; REGISTER puts it in the Info log and
    # gives it the redo panel, whose changes run the reconstruction again (synchronously) from the source.
    bl_options = {"REGISTER", "UNDO"}

    resolution: EnumProperty(name="Resolution", items=properties.RESOLUTIONS, default="128",  # type: ignore[valid-type]
                             options={"SKIP_SAVE"})
    threshold: FloatProperty(name="Threshold", default=0.2, min=0.01, max=0.99, precision=3,  # type: ignore[valid-type]
                             options={"SKIP_SAVE"})
    refine_steps: IntProperty(name="Refine steps", default=0, min=0, max=200,  # type: ignore[valid-type]
                              options={"SKIP_SAVE"})
    simplify_faces: IntProperty(name="Simplify to", default=0, min=0, options={"SKIP_SAVE"})  # type: ignore[valid-type]

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
        job = self._begin(context, block=True)
        if job is None:
            return {"CANCELLED"}
        jobs.wait(job, SYNC_TIMEOUT)
        return self._end(job)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[Any]:
        if self._begin(context, block=False) is None:
            return {"CANCELLED"}
        return self._run_modal(context, 0.1)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[Any]:
        job = jobs.active
        if job is None:  # the add-on was reloaded underneath us
            return self._stop(context, {"CANCELLED"})
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()
        if event.type == "TIMER":
            job.step()
            for area in context.screen.areas if context.screen else ():
                if area.type == "VIEW_3D":
                    area.tag_redraw()
            if job.state in jobs.DONE:
                return self._stop(context, self._end(job))
        return {"PASS_THROUGH"}

    def _overrides(self, context: bpy.types.Context) -> dict[str, Any]:
        """The redo values: the scene's settings unless this run (a redo, or a script) set them."""
        scene_settings = context.scene.occnet  # type: ignore[union-attr]
        for name in REDO_SETTINGS:
            if not self.properties.is_property_set(name):
                setattr(self, name, getattr(scene_settings, name))
        return {"resolution": int(self.resolution), "threshold": float(self.threshold),
                "refine_steps": int(self.refine_steps), "simplify_faces": int(self.simplify_faces)}

    def _begin(self, context: bpy.types.Context, block: bool) -> jobs.ReconstructJob | None:
        try:
            return jobs.begin(context, block, self._overrides(context))
        except jobs.StartError as exc:
            self._fail(str(exc))
            return None

    def _fail(self, message: str) -> None:
        events.state().last_error = message
        self.report({"ERROR"}, message)

    def _end(self, job: jobs.ReconstructJob) -> set[Any]:
        if job.state == "finished":
            self.report({"INFO"}, job.message)
            return {"FINISHED"}
        if job.state == "cancelled":
            self.report({"WARNING"}, "Reconstruction cancelled")
        else:
            self._fail(job.message)
        return {"CANCELLED"}


CLASSES = (OCCNET_OT_reconstruct,)
