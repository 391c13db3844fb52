"""The current session's backend connection (state.Session.backend, a connection.Backend), for scripts and
benches that drive the add-on from outside: `backend_session.shutdown()` before a cold start, `current()`.
The add-on itself goes through `state.session().backend`."""

from __future__ import annotations

from ..common.backend_client import BackendClient
from . import state
from .connection import BackendSettings


def acquire(settings: BackendSettings) -> BackendClient:
    return state.session().backend.acquire(settings)


def warm_up(settings: BackendSettings) -> None:
    state.session().backend.warm_up(settings)


def current() -> BackendClient | None:
    session = state.session_or_none()
    return session.backend.current() if session is not None else None


def shutdown() -> None:
    """Close the backend; nothing to do when the add-on is not enabled (its session closed it)."""
    session = state.session_or_none()
    if session is not None:
        session.backend.shutdown()
