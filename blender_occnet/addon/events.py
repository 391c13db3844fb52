"""Routes backend events to the job waiting for them. `pump()` is the one place events are drained, on
Blender's main thread: a modal operator's timer, `bpy.app.timers` in the UI, or a test calling it
(timers never fire when Blender runs as a Python module)."""

from __future__ import annotations

import queue
import time
import traceback
from typing import Any, Callable

import bpy

from ..backend_client import BackendClient, Event

Handler = Callable[[Event], bool]  # returns True when the job is over

_watched: dict[str, tuple[BackendClient, Handler]] = {}


def watch(client: BackendClient, job: str, handler: Handler) -> None:
    _watched[job] = (client, handler)


def forget(job: str) -> None:
    _watched.pop(job, None)


def state() -> Any:
    """The transient job state on the window manager (`window_manager.occnet_job`, an OCCNET_PG_job)."""
    return bpy.data.window_managers[0].occnet_job  # type: ignore[attr-defined]


def pump(timeout: float = 0.0) -> int:
    """Hand every waiting event to its job's handler; wait up to `timeout` s for the first one.

    Returns how many events were handled. Events of jobs nobody watches (cancelled, forgotten) are dropped.
    """
    deadline = time.monotonic() + timeout
    handled = 0
    while True:
        clients = {id(c): c for c, _ in _watched.values()}.values()
        for client in list(clients):
            while True:
                try:
                    event = client.events.get_nowait()
                except queue.Empty:
                    break
                handled += 1
                _dispatch(event)
        if handled or not _watched or time.monotonic() >= deadline:
            return handled
        time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))


def _dispatch(event: Event) -> None:
    entry = _watched.get(event.job)
    if entry is None:
        return
    try:
        over = entry[1](event)
    except Exception as exc:  # a bug in a handler must not stop the pump for every other job
        traceback.print_exc()
        state().last_error = f"internal error while handling {event.type} of {event.job}: {exc}"
        over = True
    if over:
        forget(event.job)


def _timer() -> float:
    pump()
    return 0.1 if _watched else 0.5


def register() -> None:
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=0.5, persistent=True)


def unregister() -> None:
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    _watched.clear()
