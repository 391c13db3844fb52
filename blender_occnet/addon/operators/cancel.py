"""occnet.cancel: stop the running reconstruction (what ESC does in the modal operator)."""

from __future__ import annotations

from typing import Any

import bpy

from .. import state


class OCCNET_OT_cancel(bpy.types.Operator):
    """Cancel the running reconstruction: what has not finished is dropped, what has is kept"""

    bl_idname = "occnet.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        session = state.session_or_none()
        if session is None or not session.reconstructing:
            cls.poll_message_set("No reconstruction is running")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[Any]:
        batch = state.session().batch
        assert batch is not None
        batch.cancel()
        self.report({"INFO"}, "Cancelling the reconstruction")
        return {"FINISHED"}


CLASSES = (OCCNET_OT_cancel,)
