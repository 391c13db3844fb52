"""occnet.get_weights: download one of the authors' released weights into the user weights folder (with
the backend's interpreter, which checks and converts it), from the preferences' list; and its Cancel."""

from __future__ import annotations

import bpy
from bpy.props import StringProperty

from ...common.backend_client import BackendError
from .. import connection, preferences, state, weights_download
from .modal import CancelJob, PreferencesJobModal, running, session_job


class OCCNET_OT_get_weights(PreferencesJobModal, bpy.types.Operator):
    """Download these weights from the authors' release, check them and convert them for use (needs online
    access)"""

    bl_idname = "occnet.get_weights"
    bl_label = "Get"
    JOB = "download"

    name: StringProperty(name="Name", options={"SKIP_SAVE"})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if running(session_job(cls.JOB)):
            cls.poll_message_set("A download is already running")
            return False
        return True

    def _begin(self, context: bpy.types.Context) -> weights_download.Download | None:
        if not bpy.app.online_access:
            self._fail("Blender's online access is off, and getting weights downloads them: allow it in "
                       "Edit > Preferences > System > Network (Allow Online Access), or run `python -m "
                       "blender_occnet weights get NAME` yourself")
            return None
        names = {entry["name"]: entry for entry in weights_download.released_entries()}
        entry = names.get(self.name)
        if entry is None or not entry["loadable"]:
            self._fail(f"{self.name!r} is not released weights this version can use")
            return None
        settings = preferences.backend_settings(context)
        if settings.mode == "REMOTE":
            self._fail("a remote backend reads its own weights folder: run `python -m blender_occnet weights get "
                       f"{self.name}` on that machine")
            return None
        try:
            python = connection.local_python(settings)  # the backend's: it checks and converts what it gets
        except BackendError as exc:
            self._fail(str(exc))
            return None
        job = state.session().download = weights_download.Download(python, self.name)
        job.start()
        return job


class OCCNET_OT_cancel_weights_download(CancelJob, bpy.types.Operator):
    """Stop the running download; what arrived is kept, hidden, and the next Get resumes it"""

    bl_idname = "occnet.cancel_weights_download"
    bl_label = "Cancel download"

    JOB = "download"


CLASSES = (OCCNET_OT_get_weights, OCCNET_OT_cancel_weights_download)
