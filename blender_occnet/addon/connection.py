"""The backend connection of one add-on session (state.Session.backend): started lazily from the
preferences, restarted when it died or the preferences changed, closed when the session ends. Plain data
in, no bpy here (so a worker thread may call `acquire`)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from ..common.backend_client import BackendClient, BackendError, InterpreterNotFound


@dataclass(frozen=True)
class BackendSettings:
    """What the preferences say about the backend, read on the main thread."""

    mode: str = "LOCAL"  # MANAGED (the add-on's own environment), LOCAL (the user's interpreter) or REMOTE
    python: str = ""
    host: str = "127.0.0.1"
    port: int = 8765
    token: str = ""
    weights_dirs: tuple[str, ...] = ()
    threads: int = 0  # CPU threads of a local backend; 0: every core but one


class Backend:
    """At most one live client, for the settings it was started with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: BackendClient | None = None
        self._key: BackendSettings | None = None  # the settings `_client` was started for
        self._warmed: BackendSettings | None = None  # the settings a warm-up was last started for
        self._generation = 0  # counts shutdowns: a warm-up started before one must not start a backend after it
        self._held = False  # no warm-ups while the backend's environment is being replaced (Install backend)

    @property
    def settings(self) -> BackendSettings | None:
        """The settings the current client was started with (None when there is none)."""
        return self._key

    def acquire(self, settings: BackendSettings, generation: int | None = None) -> BackendClient:
        """A live client for these settings: the current one, or a new one (raises BackendError). With
        `generation`, nothing is started once a shutdown has happened since that generation was read; a
        shutdown that comes while a backend starts (seconds: torch imports) closes it as soon as it is up."""
        with self._lock:
            if self._client is not None and self._client.alive and self._key == settings:
                return self._client
            if generation is not None and (generation != self._generation or self._held):
                raise BackendError("the backend was shut down since this warm-up was asked for")
            started_in = self._generation
            old, self._client, self._key = self._client, None, None
            if old is not None:
                old.close(timeout=2.0)
            client = _start(settings)
            if self._generation != started_in:  # the add-on was disabled (or the backend restarted) meanwhile
                client.close(timeout=2.0)
                raise BackendError("the backend was shut down while it started")
            self._client, self._key = client, settings
            return client

    def warm_up(self, settings: BackendSettings) -> None:
        """Start the backend in the background (the panel is showing): the first Reconstruct then finds torch
        imported instead of waiting seconds for it. Once per settings; a failure is left for Reconstruct to
        report with its message."""
        # Never wait here (the panel's draw calls it): a start holding the lock is already under way.
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._held or self._warmed == settings or (self._client is not None and self._client.alive
                                                          and self._key == settings):
                return
            self._warmed, generation = settings, self._generation
        finally:
            self._lock.release()

        def start() -> None:
            try:
                self.acquire(settings, generation)
            except BackendError:
                pass

        threading.Thread(target=start, name="occnet-warm-up", daemon=True).start()

    def current(self) -> BackendClient | None:
        """The client if one was started (alive or not); never starts one."""
        return self._client

    # How long a shutdown waits for the lock: longer means a backend is starting on another thread, which then
    # sees the new generation and closes what it started; Blender's main thread never waits seconds for it.
    SHUTDOWN_WAIT = 0.5

    def shutdown(self) -> None:
        """Close the backend (the session's end, or before a restart the user asked for). Never waits for a
        start under way (its thread closes that backend once it is up)."""
        self._generation += 1  # only the main thread writes it; a start under way reads it when it is done
        self._warmed = None
        if not self._lock.acquire(timeout=self.SHUTDOWN_WAIT):
            return
        try:
            old, self._client, self._key = self._client, None, None
        finally:
            self._lock.release()
        if old is not None:
            old.close(timeout=2.0)

    def hold_warm_ups(self, held: bool) -> None:
        """While held (the managed environment is being replaced), showing the panel starts no backend."""
        with self._lock:
            self._held = held


def _start(settings: BackendSettings) -> BackendClient:
    if settings.mode == "REMOTE":
        return BackendClient.connect(settings.host, settings.port, settings.token)
    return BackendClient.start_local(local_python(settings), list(settings.weights_dirs), threads=settings.threads)


def local_python(settings: BackendSettings) -> str:
    """The interpreter a local backend (and a weights download) runs with; raises InterpreterNotFound saying
    what to do when there is none yet."""
    if settings.mode == "MANAGED" and not os.path.isfile(settings.python):
        raise InterpreterNotFound("the backend is not installed yet: click Install backend in Edit > Preferences > "
                                  "Add-ons > OccNet Reconstruction (it downloads PyTorch, about 1 GB), or choose "
                                  "a Python interpreter of yours there")
    if not settings.python.strip():
        raise InterpreterNotFound("no backend interpreter is set: in Edit > Preferences > Add-ons > OccNet "
                                  "Reconstruction, set 'Python interpreter' to a Python with PyTorch (or use a "
                                  "remote backend)")
    return settings.python.strip()
