"""What the add-on's modal operators share: a window-manager timer that wakes `modal` while work runs on
another thread or process, removed when the operator ends."""

from __future__ import annotations

from typing import Any

import bpy


class TimerModal:
    """Mix into a bpy.types.Operator: `_run_modal` from invoke, `_stop` from modal when it ends."""

    _timer: Any = None

    def _run_modal(self, context: bpy.types.Context, interval: float) -> set[Any]:
        wm = context.window_manager
        assert wm is not None
        self._timer = wm.event_timer_add(interval, window=context.window)
        wm.modal_handler_add(self)  # type: ignore[arg-type]
        return {"RUNNING_MODAL"}

    def _stop(self, context: bpy.types.Context, result: set[Any]) -> set[Any]:
        if self._timer is not None and context.window_manager is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        return result
