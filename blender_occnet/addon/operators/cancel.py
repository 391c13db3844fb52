"""occnet.cancel: stop the running reconstruction (what ESC does in the modal operator)."""

from __future__ import annotations

from typing import Any

import bpy

from .. import jobs


class OCCNET_OT_cancel(bpy.types.Operator):
    """Cancel the running reconstruction; the scene stays as it was"""

    bl_idname = "occnet.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if jobs.active is None or jobs.active.state in jobs.DONE:
            cls.poll_message_set("No reconstruction is running")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[Any]:
        assert jobs.active is not None
        jobs.active.cancel()
        self.report({"INFO"}, "Cancelling the reconstruction")
        return {"FINISHED"}


CLASSES = (OCCNET_OT_cancel,)
