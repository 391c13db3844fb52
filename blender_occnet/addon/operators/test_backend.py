"""occnet.test_backend: start (or reach) the backend and report its torch version, devices and weights."""

from __future__ import annotations

from typing import Any

import bpy

from ...common.backend_client import BackendError
from .. import preferences, router, state


class OCCNET_OT_test_backend(bpy.types.Operator):
    """Start the backend with the current preferences and report what it can do"""

    bl_idname = "occnet.test_backend"
    bl_label = "Test backend"

    def execute(self, context: bpy.types.Context) -> set[Any]:
        status = router.status()
        try:
            client = state.session().backend.acquire(preferences.backend_settings(context))
        except BackendError as exc:
            status.backend_info = ""
            status.last_error = str(exc)
            self.report({"ERROR"}, f"Backend test failed: {exc}")
            return {"CANCELLED"}
        info = client.info
        try:  # scanned now: weights got (or copied in) since the backend started are listed
            listed = client.list_weights()
        except BackendError as exc:
            status.backend_info = ""
            status.last_error = f"the backend could not list its weights: {exc}"
            self.report({"ERROR"}, f"Backend test failed: {status.last_error}")
            return {"CANCELLED"}
        weights = [w.name for w in listed if not w.error]
        # Broken or foreign files in a weights folder do not stop the rest from being offered.
        unusable = [f"{w.name} ({w.error})" for w in listed if w.error]
        status.backend_info = (f"torch {info.torch_version} on Python {info.python}; devices: "
                              f"{', '.join(info.devices)} (Auto uses {info.auto_device}; "
                              f"{info.cpu_threads} CPU threads); weights: {', '.join(weights) or 'none'}")
        if unusable:
            status.backend_info += f"; unusable: {'; '.join(unusable)}"
        self.report({"WARNING"} if unusable else {"INFO"}, status.backend_info)
        return {"FINISHED"}


CLASSES = (OCCNET_OT_test_backend,)
