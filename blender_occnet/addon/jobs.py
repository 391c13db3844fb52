"""One reconstruction from click to object, shared by the modal and the synchronous operator paths:
connect (on a thread when modal), submit, follow events, then build the object on the main thread.
A failure at any point leaves the scene as it was and keeps a message that says what to do."""

from __future__ import annotations

import threading
import time
from typing import Any

import bpy

from ..backend_client import (BackendClient, BackendCrashed, BackendError, DependencyMissing, Event, Lost,
                              RequestRejected, VersionMismatch)
from ..messages import Cancelled, Progress, Result
from . import backend_session, events, geometry, live, preferences, properties, scene_io
from .backend_session import BackendSettings
from .geometry import SourceError
from .scene_io import Source

DONE = ("finished", "failed", "cancelled")
active: "ReconstructJob | None" = None  # the reconstruction the panel shows


class StartError(Exception):
    """A reconstruction that could not start; the message is for the user."""


def begin(context: bpy.types.Context, block: bool, overrides: dict[str, Any] | None = None) -> "ReconstructJob":
    """Read the active object and start its reconstruction (connecting on a thread unless `block`).
    `overrides` replaces request fields of the scene's settings (the operator's redo values).
    Raises StartError, with the scene untouched and the message kept on window_manager.occnet_job."""
    global active
    try:
        if active is not None and active.state not in DONE:
            raise StartError("a reconstruction is already running; wait for it or cancel it")
        scene, view_layer = context.scene, context.view_layer
        if scene is None or view_layer is None:
            raise StartError("no scene to reconstruct in")
        settings = scene.occnet  # type: ignore[attr-defined]
        kind = scene_io.chosen_source(settings, context.active_object)
        try:
            if kind == "IMAGE":
                source = scene_io.read_image_source(settings.image, scene.cursor.location)
            else:
                source = scene_io.read_source(context.active_object, context.evaluated_depsgraph_get(),
                                              kind if kind in ("SURFACE", "VERTICES", "VOXELIZE") else "SURFACE")
        except SourceError as exc:
            raise StartError(str(exc)) from None
    except StartError as exc:
        events.state().last_error = str(exc)
        raise
    request = {**request_settings(settings), **(overrides or {})}
    job = active = ReconstructJob(source, request, preferences.backend_settings(context), scene.name, view_layer.name,
                                  hide_source=bool(settings.hide_source))
    job.start(block)
    if job.state == "failed":
        raise StartError(job.message)
    return job


def request_settings(settings: Any) -> dict[str, Any]:
    """scene.occnet -> the backend's request fields (one to one)."""
    weights = settings.weights.strip()
    original = properties.is_original_checkpoint(weights)  # only those may need the architecture told
    return {"weights": bpy.path.abspath(weights) if weights.startswith("//") else (weights or None),
            "arch": settings.arch if original and settings.arch != "AUTO" else None,
            "device": settings.device, "resolution": int(settings.resolution),
            "threshold": float(settings.threshold), "refine_steps": int(settings.refine_steps),
            "simplify_faces": int(settings.simplify_faces), "input_points": int(settings.input_points)}


class ReconstructJob:
    """state: starting -> running -> finished | failed | cancelled. Drive it with `step()`."""

    def __init__(self, source: Source, settings: dict[str, Any], backend: BackendSettings, scene: str,
                 view_layer: str, hide_source: bool = False):
        self.source, self.settings, self.backend = source, settings, backend
        self.hide_source = hide_source
        self.scene, self.view_layer = scene, view_layer
        self.state, self.stage, self.progress, self.message = "starting", "starting the backend", 0.0, ""
        self.job = ""
        self.result = ""  # the new object's name
        self.client: BackendClient | None = None
        self._connect_error: BackendError | None = None
        self._thread: threading.Thread | None = None
        self._cancel_requested = False
        self._publish()

    def start(self, block: bool) -> None:
        """Connect and submit now (block) or connect on a thread and submit at a later step()."""
        if block:
            self._connect()
            self._after_connect()
        else:
            self._thread = threading.Thread(target=self._connect, name="occnet-connect", daemon=True)
            self._thread.start()

    def step(self, timeout: float = 0.0) -> str:
        """Advance (main thread only): submit once connected, then handle waiting events."""
        if self.state == "starting" and self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._thread = None
                self._after_connect()
        elif self.state == "running":
            events.pump(timeout)
        return self.state

    def cancel(self) -> None:
        if self.state == "starting":
            self._cancel_requested = True
        elif self.state == "running" and self.client is not None:
            try:
                self.client.cancel(self.job)  # the 'cancelled' event ends the job
            except BackendError:
                events.forget(self.job)
                self._end("cancelled", "cancelled")

    def abandon(self, message: str) -> None:
        """Stop waiting for this job (asking the backend to cancel it) and mark it failed."""
        self.cancel()
        events.forget(self.job)
        self._end("failed", message)

    # -- internals ------------------------------------------------------------------------------------

    def _connect(self) -> None:  # may run on a thread: no bpy here
        try:
            self.client = backend_session.acquire(self.backend)
        except BackendError as exc:
            self._connect_error = exc

    def _after_connect(self) -> None:
        if self._connect_error is not None:
            return self._end("failed", with_advice(self._connect_error))
        if self._cancel_requested:
            return self._end("cancelled", "cancelled")
        assert self.client is not None
        try:
            self.job = self.client.reconstruct(self.source.modality, self.source.array, self.source.faces,
                                               **self.settings)
        except RequestRejected as exc:
            hint = "; choose other weights in the OccNet panel or a weights folder in the preferences" \
                if exc.field == "weights" else ""
            return self._end("failed", f"the backend refused the request: {exc}{hint}")
        except BackendError as exc:
            return self._end("failed", with_advice(exc))
        self.state, self.stage = "running", "queued"
        events.watch(self.client, self.job, self._on_event)
        self._publish()

    def _on_event(self, event: Event) -> bool:
        if isinstance(event, Progress):
            self.stage, self.progress = event.stage, event.fraction
            if event.device:  # the sidebar shows where the network runs
                self.stage = f"{self.stage} on {event.device.upper()}"
            self._publish()
            return False
        if isinstance(event, Result):
            self._finish(event)
        elif isinstance(event, Cancelled):
            self._end("cancelled", "cancelled")
        elif isinstance(event, Lost):
            self._end("failed", f"{event.message}\nReconstruct again to restart the backend; if it keeps failing, use "
                                "Test backend in the preferences")
        else:
            self._end("failed", event.message or "the backend reported an error")
        return True

    def _finish(self, result: Result) -> None:
        vertices, faces = result.vertices, result.faces
        problem = geometry.check_result(vertices, faces)
        scene = bpy.data.scenes.get(self.scene)
        if problem or scene is None:
            return self._end("failed", problem or f"the scene '{self.scene}' is gone")
        view_layer = scene.view_layers.get(self.view_layer)
        try:
            obj = scene_io.add_object(scene_io.result_name(self.source.name, self.source.modality),
                                      geometry.network_to_blender(vertices), faces, self.source.matrix_world,
                                      self.source.collections, scene, view_layer, parent=self.source.parent)
        except (RuntimeError, ValueError, TypeError) as exc:
            return self._end("failed", f"could not create the result object: {exc}")
        used = result.settings
        with live.quiet():
            record = obj.occnet
            record.kind, record.job, record.source = "RESULT", result.job, self.source.name
            record.weights = self.settings.get("weights") or ""
            record.threshold = used.threshold if used.threshold is not None else self.settings["threshold"]
            record.resolution = str(used.resolution or self.settings["resolution"])
        self.result = obj.name
        source_object = bpy.data.objects.get(self.source.object_name) if self.source.object_name else None
        if self.hide_source and source_object is not None and view_layer is not None:
            # As Blender's own convert operators leave it: the source kept, hidden (part of the undo step).
            source_object.hide_set(True, view_layer=view_layer)
        stats = result.stats
        dropped = stats.input_points_dropped
        self._end("finished", f"{obj.name}: {stats.faces:,} faces in {stats.seconds_backend:.2f} s, "
                              f"{stats.points_evaluated:,} points evaluated"
                              + (f"; {dropped:,} source point(s) with NaN or infinite coordinates left out"
                                 if dropped else ""))

    def _end(self, state: str, message: str) -> None:
        self.state, self.message, self.stage = state, message, ""
        self.progress = 1.0 if state == "finished" else self.progress
        self._publish()

    def _publish(self) -> None:
        """Mirror this job on window_manager.occnet_job for the panel."""
        wm_state = events.state()
        wm_state.running = self.state not in DONE
        wm_state.stage, wm_state.progress = self.stage, self.progress
        if self.state == "finished":
            wm_state.last_result, wm_state.last_error = self.message, ""
        elif self.state == "failed":
            wm_state.last_error = self.message
        elif self.state == "cancelled":
            wm_state.last_error = ""
            wm_state.last_result = f"{self.source.name}: cancelled"


def with_advice(exc: BackendError) -> str:
    """The client's message, plus where to fix it when the interpreter itself is the problem."""
    if isinstance(exc, (BackendCrashed, DependencyMissing, VersionMismatch)):
        return f"{exc}\nCheck the Python interpreter in Edit > Preferences > Add-ons > OccNet Reconstruction " \
               "(Test backend shows what it finds)"
    return str(exc)


def wait(job: ReconstructJob, timeout: float) -> str:
    """Step a job until it is over (the synchronous path); a backend that stays silent fails it."""
    deadline = time.monotonic() + timeout
    while job.step(timeout=0.2) not in DONE:
        if time.monotonic() > deadline:
            job.abandon(f"no result within {timeout:.0f} s; the job was cancelled")
    return job.state


def unregister() -> None:
    global active
    active = None
