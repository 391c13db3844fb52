"""Live tweaking: a reconstructed object's threshold, resolution or trim changes -> the backend re-extracts
its kept grid -> the object's mesh is replaced in place when the result arrives (through the session's
event router). The jobs in flight are the session's `pending`."""

from __future__ import annotations

import contextlib
from typing import Any

import bpy
from bpy.app.handlers import persistent

from ..common.backend_client import BackendError, Event
from ..common.messages import Cancelled, Progress, Result
from . import geometry, router, scene_io, state


def on_parameter_changed(self: Any, context: bpy.types.Context) -> None:
    request(self.id_data)


def pending(name: str) -> str:
    """The re-extraction job in flight for the object `name` ('' if none)."""
    session = state.session_or_none()
    return session.pending.get(name, "") if session is not None else ""


def request(obj: bpy.types.Object) -> str:
    """Ask for a re-extraction of `obj` with its current parameters; returns the job id ('' if none)."""
    record = obj.occnet  # type: ignore[attr-defined]
    if record.kind != "RESULT" or not record.job:
        return ""  # not (yet) a reconstruction: the add-on is setting its record
    status, session = router.status(), state.session()
    client = session.backend.current()
    if client is None or not client.alive:
        status.last_error = f"the backend that made '{obj.name}' is gone; reconstruct it again to tweak it"
        return ""
    previous = session.pending.pop(obj.name, "")
    if previous:  # only the latest setting matters
        session.events.forget(previous)
        with contextlib.suppress(BackendError):
            client.cancel(previous)
    try:
        job = client.re_extract(record.job, threshold=float(record.threshold), resolution=int(record.resolution),
                                trim_unseen=float(record.trim_unseen))
    except BackendError as exc:
        if getattr(exc, "field", "") == "job":  # made by an earlier backend, or forgotten since
            status.last_error = (f"'{obj.name}' can no longer be tweaked: the backend that made it has restarted or "
                                 "let its values go. Select its source and click Reconstruct again")
        else:
            status.last_error = f"re-extracting '{obj.name}' failed: {exc}"
        return ""
    # Plain values only: the object may be renamed, deleted or undone before the result comes (a bpy reference
    # held until then could raise, or name another object); the job it was made by finds it again.
    name, base = obj.name, str(record.job)
    session.pending[name] = job
    status.last_error = ""
    session.events.watch(client, job, lambda event: _on_event(session, name, base, event))
    return job


def _result_of(name: str, base: str) -> Any:
    """The result made by job `base`: the object `name` if it still is that one, else wherever it was renamed."""
    obj = bpy.data.objects.get(name)
    if obj is not None and obj.occnet.kind == "RESULT" and obj.occnet.job == base:
        return obj
    return next((o for o in bpy.data.objects
                 if o.occnet.kind == "RESULT" and o.occnet.job == base), None)  # type: ignore[attr-defined]


def _on_event(session: state.Session, name: str, base: str, event: Event) -> bool:
    status = router.status()
    if isinstance(event, Progress):
        status.stage = f"re-extracting {name}: {event.stage}"
        return False
    if session.pending.get(name) == event.job:
        del session.pending[name]
    status.stage = ""
    obj = _result_of(name, base)
    if not isinstance(event, Result):
        if not isinstance(event, Cancelled):
            status.last_error = f"re-extracting '{name}' failed: {event.message}"
        return True
    problem = geometry.check_result(event.vertices, event.faces)
    if obj is None or obj.type != "MESH":
        return True  # deleted (or made again) meanwhile: nothing to update
    if problem:
        status.last_error = f"re-extracting '{obj.name}': {problem}"
        return True
    scene_io.replace_geometry(obj.data, geometry.network_to_blender(event.vertices), event.faces)
    scene_io.set_colours(obj, event.colours)  # the new vertices' own, from the input's kept colours
    record = obj.occnet
    record.job = event.job  # no update callback: this asks for nothing
    used = event.settings
    record.extracted = scene_io.extraction_key(record.threshold if used.threshold is None else used.threshold,
                                               used.resolution or record.resolution, used.trim_unseen)
    stats = event.stats
    status.last_result = (f"{obj.name}: {stats.faces:,} faces, re-extracted in {stats.seconds_backend:.2f} s "
                          f"({stats.points_evaluated:,} new points)")
    # No undo step of its own: the mesh belongs to the slider's change, whose step the UI pushed. Undo goes back
    # past both at once; a step that holds the new value over the old mesh is extracted again (reconcile).
    return True


@persistent
def reconcile(*_args: Any) -> None:
    """After an undo or redo: each result whose threshold, resolution or trim is not the one its mesh was extracted
    at (a step pushed between the slider's change and its mesh) is extracted again for them."""
    for obj in bpy.data.objects:
        record = obj.occnet  # type: ignore[attr-defined]
        if record.kind == "RESULT" and record.job and record.extracted and \
                record.extracted != scene_io.extraction_key(record.threshold, record.resolution, record.trim_unseen):
            request(obj)


HANDLERS = (bpy.app.handlers.undo_post, bpy.app.handlers.redo_post)


def register() -> None:
    for handlers in HANDLERS:
        if reconcile not in handlers:
            handlers.append(reconcile)


def unregister() -> None:
    for handlers in HANDLERS:
        if reconcile in handlers:
            handlers.remove(reconcile)
