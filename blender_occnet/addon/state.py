"""The add-on's session: everything the add-on holds while it is enabled, in one object that register() makes
(`open_session`) and unregister() tears down (`close_session`), so that disabling it leaves nothing behind.

Blender's callbacks (operators, panels, property updates, timers) receive no object of ours, so they find the
session with `session()`; it is the one module-level reference the add-on keeps.
"""

from __future__ import annotations

from typing import Any

import bpy

from .connection import Backend, BackendSettings
from .installer import Installer
from .jobs import DONE, Batch, StartError, Target
from .router import EventRouter
from .weights_download import Download


class NotEnabled(RuntimeError):
    """The add-on is not enabled (no session)."""


class Session:
    """The backend connection, the reconstruction the panel shows, the backend install and the weights download
    the preferences show, the live re-extractions in flight and the backend jobs whose events are awaited."""

    def __init__(self) -> None:
        self.backend = Backend()  # the backend client, started lazily from the preferences
        self.events = EventRouter()  # backend job id -> the handler waiting for its events
        self.batch: Batch | None = None  # the reconstruction the panel shows (running or last)
        self.install: Installer | None = None  # the backend install the preferences show (running or last)
        self.download: Download | None = None  # the weights download the preferences show (running or last)
        self.pending: dict[str, str] = {}  # live re-extractions: result object name -> backend job in flight

    @property
    def reconstructing(self) -> bool:
        return self.batch is not None and self.batch.state not in DONE

    def reconstruct(self, targets: list[Target], settings: dict[str, Any], backend: BackendSettings,
                    scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer, hide_source: bool,
                    block: bool) -> Batch:
        """Start one batch (the operator's click, or a script's call through the API): read the targets, then
        connect and queue their jobs (on a thread unless `block`). Raises StartError while one is running."""
        if self.reconstructing:
            raise StartError("a reconstruction is already running; wait for it or cancel it")
        self.batch = Batch(targets, settings, backend, self.backend, self.events, scene, view_layer, hide_source)
        self.batch.start(block)
        return self.batch

    def close(self) -> None:
        """Stop whatever runs and let go of the backend."""
        for job in (self.install, self.download):
            if job is not None and job.state not in DONE:
                job.cancel()
        if self.reconstructing:
            assert self.batch is not None
            self.batch.abandon("the add-on was disabled")
        self.events.clear()
        self.pending.clear()
        self.backend.shutdown()


_session: Session | None = None


def open_session() -> Session:
    """A new session (register())."""
    global _session
    if _session is not None:
        _session.close()
    _session = Session()
    return _session


def close_session() -> None:
    """The session's end (unregister())."""
    global _session
    old, _session = _session, None
    if old is not None:
        old.close()


def session() -> Session:
    """The current session; raises NotEnabled when the add-on is not enabled."""
    if _session is None:
        raise NotEnabled("the OccNet add-on is not enabled: enable it in Edit > Preferences > Add-ons")
    return _session


def session_or_none() -> Session | None:
    return _session
