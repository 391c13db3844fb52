"""The one backend connection of this Blender session: started lazily from the preferences, restarted
when it died or the preferences changed, closed on unregister. Plain data in, no bpy access here
(so a worker thread may call `acquire`)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from ..backend_client import BackendClient, BackendError, InterpreterNotFound

_lock = threading.Lock()
_client: BackendClient | None = None
_key: "BackendSettings | None" = None
_warmed: "BackendSettings | None" = None  # the settings a warm-up was last started for
_generation = 0  # counts shutdowns: a warm-up started before one must not start a backend after it
_held = False  # no warm-ups while the backend's environment is being replaced (Install backend)


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


def acquire(settings: BackendSettings, generation: int | None = None) -> BackendClient:
    """A live client for these settings: the current one, or a new one (raises BackendError). With
    `generation`, nothing is started once a shutdown has happened since that generation was read."""
    global _client, _key
    with _lock:
        if _client is not None and _client.alive and _key == settings:
            return _client
        if generation is not None and (generation != _generation or _held):
            raise BackendError("the backend was shut down since this warm-up was asked for")
        old, _client, _key = _client, None, None
        if old is not None:
            old.close(timeout=2.0)
        client = _start(settings)
        _client, _key = client, settings
        return client


def warm_up(settings: BackendSettings) -> None:
    """Start the backend in the background (the panel is showing): the first Reconstruct then finds torch
    imported instead of waiting seconds for it. Once per settings; a failure is left for Reconstruct to
    report with its message."""
    global _warmed
    # Never wait here (the panel's draw calls it): a start holding the lock is already under way.
    if not _lock.acquire(blocking=False):
        return
    try:
        if _held or _warmed == settings or (_client is not None and _client.alive and _key == settings):
            return
        _warmed, generation = settings, _generation
    finally:
        _lock.release()

    def start() -> None:
        try:
            acquire(settings, generation)
        except BackendError:
            pass

    threading.Thread(target=start, name="occnet-warm-up", daemon=True).start()


def current() -> BackendClient | None:
    """The client if one was started (alive or not); never starts one."""
    return _client


def shutdown() -> None:
    """Close the backend (unregister, or before a restart the user asked for)."""
    global _client, _key, _warmed, _generation
    with _lock:
        old, _client, _key, _warmed = _client, None, None, None
        _generation += 1
    if old is not None:
        old.close(timeout=2.0)


def hold_warm_ups(held: bool) -> None:
    """While held (the managed environment is being replaced), showing the panel starts no backend."""
    global _held
    with _lock:
        _held = held


def _start(settings: BackendSettings) -> BackendClient:
    if settings.mode == "REMOTE":
        return BackendClient.connect(settings.host, settings.port, settings.token)
    if settings.mode == "MANAGED" and not os.path.isfile(settings.python):
        raise InterpreterNotFound("the backend is not installed yet: click Install backend in Edit > Preferences > "
                                  "Add-ons > OccNet Reconstruction (it downloads PyTorch, about 1 GB), or choose "
                                  "a Python interpreter of yours there")
    if not settings.python.strip():
        raise InterpreterNotFound("no backend interpreter is set: in Edit > Preferences > Add-ons > OccNet "
                                  "Reconstruction, set 'Python interpreter' to a Python with PyTorch (or use a "
                                  "remote backend)")
    return BackendClient.start_local(settings.python.strip(), list(settings.weights_dirs), threads=settings.threads)
