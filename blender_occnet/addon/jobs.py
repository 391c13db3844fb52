"""One click's reconstructions, from sources to objects: the one path the Reconstruct operator (modal or not)
and the scripting API (api.py) share. A Batch reads every source on the main thread, connects (on a
thread when modal), queues one backend job per source (the backend runs a connection's jobs in order),
follows their events, and places each result over its own source on the main thread.

A source that fails (unreadable, refused, or its job failed) leaves nothing of it in the scene and does not
stop the others; its message is kept under its name. Cancel stops what has not finished and keeps what has.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import bpy

from ..common.backend_client import (
    BackendClient,
    BackendCrashed,
    BackendError,
    DependencyMissing,
    Event,
    Lost,
    RequestRejected,
    VersionMismatch,
)
from ..common.messages import Cancelled, Progress, Result, input_warnings, job_fraction
from . import geometry, router, scene_io
from .connection import Backend, BackendSettings
from .geometry import SourceError
from .router import EventRouter
from .scene_io import Source

DONE = ("finished", "failed", "cancelled")


class StartError(Exception):
    """A reconstruction that could not start; the message is for the user."""


@dataclass(frozen=True)
class Target:
    """What to reconstruct: an object (read as `kind`: scene_io.object_kind) or an image (kind IMAGE)."""

    data: Any  # bpy.types.Object or bpy.types.Image
    kind: str


class ReconstructJob:
    """One source's part of a batch. state: waiting -> running -> finished | failed | cancelled."""

    def __init__(self, name: str, source: Source | None, message: str = ""):
        self.name, self.source = name, source  # no source: it could not be read, and `message` says why
        self.state = "waiting" if source is not None else "failed"
        self.stage, self.device, self.progress, self.message = "", "", 0.0, message  # progress: of the stage
        self.done = 0.0  # of the whole job (messages.job_fraction), forward only: what the bar shows
        self.job = ""  # the backend's job id, once queued
        self.result = ""  # the new object's name, once finished

    def end(self, state: str, message: str) -> None:
        self.state, self.message, self.stage = state, message, ""
        self.progress = 1.0 if state == "finished" else self.progress
        self.done = 1.0 if state == "finished" else self.done


class Batch:
    """The reconstructions of one click (one source or several). state: starting -> running -> finished (at
    least one result) | failed (none) | cancelled (results that finished before are kept). Drive it with
    `step()`, or `wait()` for it."""

    def __init__(self, targets: list[Target], settings: dict[str, Any], backend_settings: BackendSettings,
                 backend: Backend, events: EventRouter, scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer,
                 hide_source: bool = False):
        self.settings, self.backend_settings = settings, backend_settings
        self.backend, self.events = backend, events
        self.scene, self.view_layer = scene.name, view_layer.name
        self.hide_source = hide_source
        self.state, self.stage, self.progress, self.message = "starting", "starting the backend", 0.0, ""
        self.client: BackendClient | None = None
        self._connect_error: BackendError | None = None
        self._thread: threading.Thread | None = None
        self._cancel_requested = False
        self._started = time.monotonic()
        depsgraph = bpy.context.evaluated_depsgraph_get()
        self.items = [_read(target, depsgraph, scene) for target in targets]
        self._publish()

    @property
    def results(self) -> list[str]:
        """The names of the objects made so far, in the sources' order."""
        return [item.result for item in self.items if item.state == "finished"]

    @property
    def failures(self) -> list[ReconstructJob]:
        return [item for item in self.items if item.state == "failed"]

    def start(self, block: bool) -> None:
        """Connect and queue now (block) or connect on a thread and queue at a later step()."""
        if not any(item.state == "waiting" for item in self.items):
            self._end()  # no source could be read: no backend is needed to say so
        elif block:
            self._connect()
            self._after_connect()
        else:
            self._thread = threading.Thread(target=self._connect, name="occnet-connect", daemon=True)
            self._thread.start()

    def step(self, timeout: float = 0.0) -> str:
        """Advance (main thread only): queue the jobs once connected, then handle waiting events."""
        if self.state == "starting" and self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._thread = None
                self._after_connect()
        elif self.state == "running":
            self.events.pump(timeout)
        return self.state

    def cancel(self) -> None:
        """Stop every job not yet finished; what finished stays (the 'cancelled' events end the others)."""
        self._cancel_requested = True
        if self.state != "running":
            return
        for item in self.items:
            if item.state == "running" and self.client is not None:
                try:
                    self.client.cancel(item.job)
                except BackendError:
                    self.events.forget(item.job)
                    item.end("cancelled", "cancelled")
        self._end_when_done()

    def abandon(self, message: str) -> None:
        """Stop waiting (asking the backend to cancel what runs): every job not finished fails with `message`."""
        for item in self.items:
            if item.state not in DONE:
                if item.state == "running" and self.client is not None:
                    with contextlib.suppress(BackendError):
                        self.client.cancel(item.job)
                self.events.forget(item.job)
                item.end("failed", message)
        self._end()

    # -- internals ------------------------------------------------------------------------------------

    def _connect(self) -> None:  # may run on a thread: no bpy here
        try:
            self.client = self.backend.acquire(self.backend_settings)
        except BackendError as exc:
            self._connect_error = exc

    def _after_connect(self) -> None:
        waiting = [item for item in self.items if item.state == "waiting"]
        if self._connect_error is not None:
            for item in waiting:
                item.end("failed", with_advice(self._connect_error))
        elif self._cancel_requested:
            for item in waiting:
                item.end("cancelled", "cancelled")
        else:
            self.state = "running"
            for item in waiting:
                self._submit(item)
        self._end_when_done()

    def _submit(self, item: ReconstructJob) -> None:
        assert self.client is not None and item.source is not None
        source = item.source
        try:
            colours = source.colours if self.settings.get("colours") is not False else None  # off: not sent
            item.job = self.client.reconstruct(source.modality, source.array, source.faces, point_colours=colours,
                                               **self.settings)
        except RequestRejected as exc:
            hint = "; choose other weights in the OccNet panel or a weights folder in the preferences" \
                if exc.field == "weights" else ""
            return item.end("failed", f"the backend refused the request: {exc}{hint}")
        except BackendError as exc:
            return item.end("failed", with_advice(exc))
        item.state, item.stage = "running", "queued"
        self.events.watch(self.client, item.job, lambda event: self._on_event(item, event))
        self._publish()

    def _on_event(self, item: ReconstructJob, event: Event) -> bool:
        if isinstance(event, Progress):
            item.stage, item.progress = event.stage, event.fraction
            item.done = max(item.done, job_fraction(event.stage, event.fraction) or 0.0)
            item.device = event.device or item.device
            self._publish()
            return False
        if isinstance(event, Result) and self._cancel_requested:
            # Cancel came after the backend's last check (while meshing): the result was on its way. What had
            # not finished when Cancel was clicked leaves nothing in the scene.
            item.end("cancelled", "cancelled")
        elif isinstance(event, Result):
            try:
                self._finish(item, event)
            except Exception as exc:  # the source fails, not the batch: else it would wait for it forever
                traceback.print_exc()
                self._discard(item)
                item.end("failed", f"could not place the result of '{item.name}': {exc}")
        elif isinstance(event, Cancelled):
            item.end("cancelled", "cancelled")
        elif isinstance(event, Lost):
            item.end("failed", f"{event.message}\nReconstruct again to restart the backend; if it keeps failing, "
                               "use Test backend in the preferences")
        else:
            item.end("failed", event.message or "the backend reported an error")
        self._end_when_done()
        return True

    def _finish(self, item: ReconstructJob, result: Result) -> None:
        assert item.source is not None
        source = item.source
        vertices, faces = result.vertices, result.faces
        problem = geometry.check_result(vertices, faces)
        scene = bpy.data.scenes.get(self.scene)
        if problem or scene is None:
            return item.end("failed", problem or f"the scene '{self.scene}' is gone")
        view_layer = scene.view_layers.get(self.view_layer)
        first = not self.results  # the first result becomes the active object; later ones join the selection
        try:
            obj = scene_io.add_object(scene_io.result_name(source.name, source.modality),
                                      geometry.network_to_blender(vertices), faces, source.matrix_world,
                                      source.collections, scene, view_layer, parent=source.parent,
                                      select="ONLY" if first else "ADD")
        except (RuntimeError, ValueError, TypeError) as exc:
            return item.end("failed", f"could not create the result object: {exc}")
        item.result = obj.name  # from here a failure removes it again (_on_event)
        if result.colours is not None:
            scene_io.set_colours(obj, result.colours)
        used = result.settings
        record = obj.occnet
        # The parameters first: their update callbacks ask for a re-extraction only of a RESULT with a job.
        # A result names every value it used; the request's (or the record's default) stand in otherwise.
        record.threshold = used.threshold if used.threshold is not None else \
            self.settings.get("threshold", record.threshold)
        record.resolution = str(used.resolution or self.settings.get("resolution", record.resolution))
        record.trim_unseen = used.trim_unseen
        record.modality = source.modality
        record.weights = self.settings.get("weights") or ""
        record.extracted = scene_io.extraction_key(record.threshold, record.resolution, record.trim_unseen)
        record.source, record.job, record.kind = source.name, result.job, "RESULT"
        source_object = bpy.data.objects.get(source.object_name) if source.object_name else None
        if self.hide_source and source_object is not None and view_layer is not None \
                and source_object.name in view_layer.objects:  # else not shown here (another scene, excluded)
            # As Blender's own convert operators leave it: the source kept, hidden (part of the undo step).
            source_object.hide_set(True, view_layer=view_layer)
        stats = result.stats
        dropped = stats.input_points_dropped
        fitted = f", fitted to {stats.fit_points:,} points" if stats.fit_points else ""
        if stats.input_points_outliers:
            fitted += f" ({stats.input_points_outliers:,} stray points left out)"
        if result.colours is not None:
            fitted += ", coloured from the source"
        warning = "; ".join(input_warnings(stats.to_dict()))
        # Which weights made it: with none named, a dense cloud's are the fine planes (registry.finer_weights).
        made_by = f" by {stats.weights}" if stats.weights else ""
        item.end("finished", f"{obj.name}: {stats.faces:,} faces in {stats.seconds_backend:.2f} s{made_by}{fitted}, "
                             f"{stats.points_evaluated:,} points evaluated"
                             + (f"; {dropped:,} source point(s) with NaN or infinite coordinates left out"
                                if dropped else "")
                             + (f"; {warning}" if warning else ""))

    def _discard(self, item: ReconstructJob) -> None:
        """Remove what a failed placement made of `item`: the scene keeps nothing of a failed source."""
        made = bpy.data.objects.get(item.result) if item.result else None
        item.result = ""
        if made is not None:
            mesh = made.data
            bpy.data.objects.remove(made)
            if isinstance(mesh, bpy.types.Mesh) and mesh.users == 0:
                bpy.data.meshes.remove(mesh)

    def _end_when_done(self) -> None:
        if all(item.state in DONE for item in self.items):
            self._end()
        else:
            self._publish()

    def _end(self) -> None:
        made = self.results
        if self._cancel_requested:
            self.state = "cancelled"
        else:
            self.state = "finished" if made else "failed"
        if len(self.items) == 1:
            self.message = self.items[0].message
        elif self.state == "cancelled":
            self.message = (f"cancelled; kept {len(made)} of {len(self.items)}: {', '.join(made)}" if made
                            else "cancelled; nothing was made")
        elif self.state == "finished":
            took = time.monotonic() - self._started
            self.message = f"{len(made)} of {len(self.items)} reconstructed in {took:.1f} s: {', '.join(made)}"
        else:
            self.message = f"no source could be reconstructed: {self.failure_summary()}"
        self.stage, self.progress = "", 1.0 if self.state == "finished" else self.progress
        self._publish()

    def failure_summary(self) -> str:
        """Each failed source by name with its message; sources that failed alike share one message."""
        alike: dict[str, list[str]] = {}
        for item in self.failures:
            alike.setdefault(item.message, []).append(f"'{item.name}'")
        return "; ".join(f"{' and '.join(names)}: {message}" for message, names in alike.items())

    def _publish(self) -> None:
        """Mirror this batch on window_manager.occnet_job for the panel."""
        status = router.status()
        status.running = self.state not in DONE
        status.stage, status.progress = self._progress_text()
        if self.state == "finished":
            status.last_result = self.message
            status.last_error = f"{len(self.failures)} failed: {self.failure_summary()}" \
                if self.failures and len(self.items) > 1 else ""
        elif self.state == "failed":
            status.last_error, status.last_result = self.message, ""
        elif self.state == "cancelled":
            status.last_error = ""
            status.last_result = f"{self.items[0].name}: cancelled" if len(self.items) == 1 else self.message

    def _progress_text(self) -> tuple[str, float]:
        """What the panel's bar says: the stage (one source), or which source of how many, its stage and
        how far it is (several); and the fraction done overall."""
        if self.state != "running":
            return self.stage, self.progress
        ended = sum(item.state in DONE for item in self.items)
        current = next((item for item in self.items if item.state == "running"), None)
        if current is None:
            return self.stage, self.progress
        if len(self.items) == 1:
            stage = f"{current.stage} on {current.device.upper()}" if current.device else current.stage
            return stage, current.done
        place = self.items.index(current) + 1
        overall = (ended + current.done) / len(self.items)
        return f"{place} of {len(self.items)}: {current.name} — {current.stage} {current.progress:.0%}", overall


def _read(target: Target, depsgraph: bpy.types.Depsgraph, scene: bpy.types.Scene) -> ReconstructJob:
    """A target's source, read now; one that cannot be read is a job failed from the start."""
    name = str(getattr(target.data, "name", "?"))
    try:
        if target.kind == "IMAGE":
            source = scene_io.read_image_source(target.data, scene.cursor.location)
        else:
            kind = target.kind if target.kind in scene_io.READ_KINDS else "SURFACE"  # VOXELS: the object says so
            source = scene_io.read_source(target.data, depsgraph, kind)
    except SourceError as exc:
        return ReconstructJob(name, None, str(exc))
    except RuntimeError as exc:  # Blender could not give its geometry: this source fails, not the click
        return ReconstructJob(name, None, f"could not read '{name}': {exc}")
    return ReconstructJob(source.name, source)


def with_advice(exc: BackendError) -> str:
    """The client's message, plus where to fix it when the interpreter itself is the problem."""
    if isinstance(exc, (BackendCrashed, DependencyMissing, VersionMismatch)):
        return f"{exc}\nCheck the Python interpreter in Edit > Preferences > Add-ons > OccNet Reconstruction " \
               "(Test backend shows what it finds)"
    return str(exc)


def wait(batch: Batch, timeout: float) -> str:
    """Step a batch until it is over (the synchronous path); a backend that stays silent fails it."""
    deadline = time.monotonic() + timeout
    while batch.step(timeout=0.2) not in DONE:
        if time.monotonic() > deadline:
            batch.abandon(f"no result within {timeout:.0f} s; the job was cancelled")
    return batch.state
