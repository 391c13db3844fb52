"""Draining backend events on Blender's main thread: a timer while Blender's UI runs, `pump()` where no timer
fires (Blender as a Python module: tests, benches, scripts). The events go to the session's router."""

from __future__ import annotations

import bpy

from . import state


def pump(timeout: float = 0.0) -> int:
    """Hand every waiting event to its job (router.EventRouter.pump); how many there were."""
    return state.session().events.pump(timeout)


def _timer() -> float:
    session = state.session_or_none()
    if session is None:
        return 0.5
    session.events.pump()
    return 0.1 if session.events.busy else 0.5


def register() -> None:
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=0.5, persistent=True)


def unregister() -> None:
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
