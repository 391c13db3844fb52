"""Live tweaking: a reconstructed object's threshold or resolution changes -> the backend re-extracts
its kept grid -> the object's mesh is replaced in place when the result arrives (through events.pump)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import bpy

from ..backend_client import BackendError, Event
from ..messages import Cancelled, Progress, Result
from . import backend_session, events, geometry, scene_io

_pending: dict[str, str] = {}  # object name -> re-extraction job in flight
_quiet = False


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Set an object's recorded parameters without asking for a re-extraction."""
    global _quiet
    before, _quiet = _quiet, True
    try:
        yield
    finally:
        _quiet = before


def on_parameter_changed(self: Any, context: bpy.types.Context) -> None:
    if not _quiet:
        request(self.id_data)


def pending(name: str) -> str:
    return _pending.get(name, "")


def request(obj: bpy.types.Object) -> str:
    """Ask for a re-extraction of `obj` with its current parameters; returns the job id ('' if none)."""
    record = obj.occnet  # type: ignore[attr-defined]
    if record.kind != "RESULT" or not record.job:
        return ""
    state = events.state()
    client = backend_session.current()
    if client is None or not client.alive:
        state.last_error = f"the backend that made '{obj.name}' is gone; reconstruct it again to tweak it"
        return ""
    previous = _pending.pop(obj.name, "")
    if previous:  # only the latest setting matters
        events.forget(previous)
        with contextlib.suppress(BackendError):
            client.cancel(previous)
    try:
        job = client.re_extract(record.job, threshold=float(record.threshold), resolution=int(record.resolution))
    except BackendError as exc:
        if getattr(exc, "field", "") == "job":  # made by an earlier backend, or forgotten since
            state.last_error = (f"'{obj.name}' can no longer be tweaked: the backend that made it has restarted or "
                                "let its values go. Select its source and click Reconstruct again")
        else:
            state.last_error = f"re-extracting '{obj.name}' failed: {exc}"
        return ""
    _pending[obj.name] = job
    state.last_error = ""
    events.watch(client, job, lambda event: _on_event(obj.name, event))
    return job


def _on_event(name: str, event: Event) -> bool:
    state = events.state()
    if isinstance(event, Progress):
        state.stage = f"re-extracting {name}: {event.stage}"
        return False
    if _pending.get(name) == event.job:
        del _pending[name]
    state.stage = ""
    obj = bpy.data.objects.get(name)
    if not isinstance(event, Result):
        if not isinstance(event, Cancelled):
            state.last_error = f"re-extracting '{name}' failed: {event.message}"
        return True
    problem = geometry.check_result(event.vertices, event.faces)
    if obj is None or obj.type != "MESH":
        return True  # deleted or renamed meanwhile: nothing to update
    if problem:
        state.last_error = f"re-extracting '{name}': {problem}"
        return True
    scene_io.replace_geometry(obj.data, geometry.network_to_blender(event.vertices), event.faces)
    with quiet():
        obj.occnet.job = event.job
    stats = event.stats
    state.last_result = (f"{name}: {stats.faces:,} faces, re-extracted in {stats.seconds_backend:.2f} s "
                         f"({stats.points_evaluated:,} new points)")
    if bpy.ops.ed.undo_push.poll():
        bpy.ops.ed.undo_push(message="OccNet re-extraction")
    return True


def unregister() -> None:
    _pending.clear()
