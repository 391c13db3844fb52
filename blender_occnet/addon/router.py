"""Where the add-on's jobs meet Blender's main thread: an EventRouter (state.Session.events) hands each backend
event to the job waiting for it, and `status()` is the window manager's job status the panel draws from."""

from __future__ import annotations

import queue
import time
import traceback
from collections.abc import Callable
from typing import Any

import bpy

from ..common.backend_client import BackendClient, Event

Handler = Callable[[Event], bool]  # returns True when the job is over


def status() -> Any:
    """The transient job status on the window manager (`window_manager.occnet_job`, an OCCNET_PG_job)."""
    return bpy.data.window_managers[0].occnet_job  # type: ignore[attr-defined]


class EventRouter:
    """The watched jobs (backend job id -> its client and handler); `pump` is the one place events are
    drained, on Blender's main thread."""

    def __init__(self) -> None:
        self._watched: dict[str, tuple[BackendClient, Handler]] = {}

    def watch(self, client: BackendClient, job: str, handler: Handler) -> None:
        self._watched[job] = (client, handler)

    def forget(self, job: str) -> None:
        self._watched.pop(job, None)

    @property
    def busy(self) -> bool:
        """Whether any job is watched."""
        return bool(self._watched)

    def clear(self) -> None:
        self._watched.clear()

    def pump(self, timeout: float = 0.0) -> int:
        """Hand every waiting event to its job's handler; wait up to `timeout` s for the first one.

        Returns how many events were handled. Events of jobs nobody watches (cancelled, forgotten) are dropped.
        """
        deadline = time.monotonic() + timeout
        handled = 0
        while True:
            clients = {id(c): c for c, _ in self._watched.values()}.values()
            for client in list(clients):
                while True:
                    try:
                        event = client.events.get_nowait()
                    except queue.Empty:
                        break
                    handled += 1
                    self._dispatch(event)
            if handled or not self._watched or time.monotonic() >= deadline:
                return handled
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def _dispatch(self, event: Event) -> None:
        entry = self._watched.get(event.job)
        if entry is None:
            return
        try:
            over = entry[1](event)
        except Exception as exc:  # a bug in a handler must not stop the pump for every other job
            traceback.print_exc()
            status().last_error = f"internal error while handling {event.type} of {event.job}: {exc}"
            over = True
        if over:
            self.forget(event.job)
