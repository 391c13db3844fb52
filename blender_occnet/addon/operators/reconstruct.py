"""occnet.reconstruct: the active object -> a new mesh object. Modal from the UI (Blender stays
responsive, ESC cancels), synchronous from scripts; both run the same ReconstructJob."""

from __future__ import annotations

from typing import Any

import bpy

from .. import events, jobs, scene_io
from .modal import TimerModal

SYNC_TIMEOUT = 3600.0


class OCCNET_OT_reconstruct(TimerModal, bpy.types.Operator):
    """Reconstruct a mesh from the active point cloud, mesh or voxel object, or from the chosen image, with an
    Occupancy Network"""

    bl_idname = "occnet.reconstruct"
    bl_label = "Reconstruct"
    bl_options = {"UNDO"}  # the undo step is pushed when the operator finishes, modal or not

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        scene = context.scene
        if scene is not None and scene.occnet.source_kind == "IMAGE":  # type: ignore[attr-defined]
            if scene.occnet.image is None:  # type: ignore[attr-defined]
                cls.poll_message_set("Pick an image in the OccNet panel")
                return False
            return True
        obj = context.active_object
        if obj is None or obj.type not in scene_io.SOURCE_TYPES:
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

    def _begin(self, context: bpy.types.Context, block: bool) -> jobs.ReconstructJob | None:
        try:
            return jobs.begin(context, block)
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
