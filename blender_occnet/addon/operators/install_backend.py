"""occnet.install_backend: make the managed backend environment (a venv in the extension's user folder
with PyTorch and the backend's pinned requirements). Modal from the preferences (a progress bar, the
log's last lines, Esc cancels), synchronous from scripts. Only with Blender's online access allowed."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import StringProperty

from .. import installer, preferences, router, state, torch_builds
from .modal import CancelJob, PreferencesJobModal, running, session_job


class OCCNET_OT_install_backend(PreferencesJobModal, bpy.types.Operator):
    """Create the add-on's own Python environment and install PyTorch and the backend's other requirements
    into it (downloads about 1 GB; needs online access)"""

    bl_idname = "occnet.install_backend"
    bl_label = "Install backend"
    JOB = "install"

    requirements: StringProperty(  # type: ignore[valid-type]
        name="Requirements", default="", subtype="FILE_PATH", options={"HIDDEN", "SKIP_SAVE"},
        description="A pip requirements file to install instead of the bundled one (for example a CUDA build)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if running(session_job(cls.JOB)):
            cls.poll_message_set("An install is already running")
            return False
        return True

    def _begin(self, context: bpy.types.Context) -> installer.Installer | None:
        session, status = state.session(), router.status()
        if not bpy.app.online_access:
            self._fail("Blender's online access is off, and installing the backend downloads PyTorch: "
                       "allow it in Edit > Preferences > System > Network (Allow Online Access), or set "
                       "a Python interpreter of your own that has the backend's requirements")
            return None
        if session.reconstructing:
            self._fail("a reconstruction is running; wait for it or cancel it, then install the backend")
            return None
        requirements = Path(bpy.path.abspath(self.requirements)) if self.requirements else installer.REQUIREMENTS
        if not requirements.is_file():
            self._fail(f"the requirements file {requirements} does not exist")
            return None
        status.install_log = ""
        # A backend running from the old environment would keep its files busy (Windows) when the new
        # one is swapped in; it restarts on the next reconstruction.
        session.backend.shutdown()
        session.backend.hold_warm_ups(True)  # a redraw must not start the old environment's backend again
        build = torch_builds.choose(torch_builds.detect(), preferences.get(context).torch_build)
        if not build.supported:
            session.backend.hold_warm_ups(False)
            self._fail(build.reason)
            return None
        job = session.install = installer.Installer(preferences.managed_env_dir(), requirements, build=build)
        job.start()
        return job

    def _finished(self, job: installer.Installer) -> None:
        session = state.session_or_none()
        if session is not None:
            session.backend.shutdown()  # whatever started meanwhile ran from the old environment
            session.backend.hold_warm_ups(False)
        status = router.status()
        status.install_log = "\n".join(list(job.lines)[-8:])
        if job.state == "finished":
            status.backend_info = job.message


class OCCNET_OT_cancel_install(CancelJob, bpy.types.Operator):
    """Stop the running backend install; a backend installed before stays as it was"""

    bl_idname = "occnet.cancel_install"
    bl_label = "Cancel install"

    JOB = "install"


CLASSES = (OCCNET_OT_install_backend, OCCNET_OT_cancel_install)
