"""The job engine: one worker thread runs reconstructions in order; models and finished jobs are cached.

Transport-agnostic: each job carries the `send` function of the connection that asked for it.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.errors import Cancelled, CheckpointError, InputError, OccNetError
from ..common.messages import Cancelled as CancelledEvent
from ..common.messages import Error, FieldError, Message, Progress, Reconstruct, Result, Settings, Stats
from ..occnet.checkpoints import load_weights
from ..occnet.fitting import FitRefused
from ..occnet.generation import EncodedShape, ExtractionSettings, MeshResult, Reconstructor, resolve_device
from ..occnet.registry import finer_weights, resolve_weights
from ..occnet.shifts import EnsembleRefused
from .convert import extraction_settings, prepare_input, used_settings

Send = Callable[[Message], None]

MAX_MODELS = 4
MAX_CACHED_JOBS = 32
MAX_CACHED_BYTES = 512 * 1024 * 1024
PROGRESS_INTERVAL = 0.05  # seconds between progress events of one stage


@dataclass
class Job:
    id: str
    send: Send
    settings: ExtractionSettings  # a reconstruction whose request gives no threshold takes the weights' own
    request: Reconstruct | None = None  # a new reconstruction
    source_job: str | None = None  # or a re-extraction of this finished job
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class FinishedJob:
    shape: EncodedShape
    reconstructor: Reconstructor
    settings: ExtractionSettings
    owner: Send  # the connection that made it: only it may re-extract this shape

    @property
    def nbytes(self) -> int:
        colours = self.shape.prepared.colours if self.shape.prepared is not None else None
        # int64 key + float64 value per evaluated point; a coloured input's points twice (their search tree's copy)
        return len(self.shape.store) * 16 + 4096 + \
            (2 * colours.points.nbytes + colours.colours.nbytes if colours is not None else 0)


class Engine:
    def __init__(self, weights_dirs: list[str] | None = None):
        self.weights_dirs = list(weights_dirs or [])
        self._queue: collections.deque[Job] = collections.deque()
        self._lock = threading.Condition()
        self._running: Job | None = None
        self._models: collections.OrderedDict[tuple[str, int, str | None, str], Reconstructor] = \
            collections.OrderedDict()
        self._finished: collections.OrderedDict[str, FinishedJob] = collections.OrderedDict()
        self._ids = itertools.count(1)
        # Job ids carry this backend's own random tag: a restarted backend never gives out an id that an
        # earlier one did, so a result never re-extracts another job's shape.
        self._instance = secrets.token_hex(4)
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name="occnet-worker", daemon=True)
        self._worker.start()

    # -- called by connections ------------------------------------------------------------------

    def new_job_id(self) -> str:
        return f"job-{self._instance}-{next(self._ids)}"

    def submit(self, job: Job) -> None:
        with self._lock:
            self._queue.append(job)
            self._lock.notify()

    def cancel(self, job_id: str, owner: Send) -> bool:
        """Cancel one of `owner`'s jobs: a queued one at once, a running one at its next batch; False if it
        has none of that id (another connection's jobs are not its to cancel, and their ids are not told)."""
        with self._lock:
            for job in self._queue:
                if job.id == job_id and job.send == owner:
                    self._queue.remove(job)
                    job.send(CancelledEvent(job=job.id, during="queued"))
                    return True
            if self._running is not None and self._running.id == job_id and self._running.send == owner:
                self._running.cancel.set()
                return True
        return False

    def cancel_all_from(self, send: Send) -> None:
        """A connection went away: drop its queued jobs, stop its running one and forget its finished ones (only it
        could re-extract them; kept, they held its memory and, through `send`, its connection open)."""
        with self._lock:
            # == not `is`: each `session.send` is a new bound-method object, equal to the others of its session.
            self._queue = collections.deque(j for j in self._queue if j.send != send)
            if self._running is not None and self._running.send == send:
                self._running.cancel.set()
            for job_id in [k for k, finished in self._finished.items() if finished.owner == send]:
                del self._finished[job_id]

    def finished_job(self, job_id: str) -> FinishedJob | None:
        with self._lock:
            return self._finished.get(job_id)

    def stop(self, wait: float = 10.0) -> bool:
        """Drop queued jobs, cancel the running one and wait up to `wait` seconds for the worker to leave
        torch. Returns whether it did: exiting while it still computes aborts the process (libtorch
        terminates from a thread pool torn down under it)."""
        with self._lock:
            self._stopping = True
            self._queue.clear()
            if self._running is not None:
                self._running.cancel.set()
            self._lock.notify()
        if threading.current_thread() is not self._worker:
            self._worker.join(wait)
        return not self._worker.is_alive()

    # -- the worker -------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job = self._running = self._queue.popleft()
            try:
                self._run(job)
            except Cancelled:
                job.send(CancelledEvent(job=job.id, during="running"))
            except FieldError as exc:
                job.send(Error(job=job.id, field=exc.field, message=str(exc)))
            except OccNetError as exc:
                job.send(Error(job=job.id, field=_field_of(exc), message=str(exc)))
            except Exception as exc:  # keep serving whatever happens inside one job
                traceback.print_exc(file=sys.stderr)
                job.send(Error(job=job.id, message=f"internal error in the backend: {type(exc).__name__}: {exc}"))
            finally:
                with self._lock:
                    self._running = None

    def _run(self, job: Job) -> None:
        started = time.perf_counter()
        progress = _Throttled(job)
        cancelled = job.cancel.is_set
        stats: dict[str, Any] = {}
        settings = job.settings
        if job.request is not None:
            request = job.request
            progress("loading", 0.0)
            path, device = self.check(request)
            reconstructor, stats["model_cached"], stats["seconds_load"] = self._model(request, path, device)
            prepared = prepare_input(request, reconstructor.weights.config)
            fine = finer_weights(path, prepared) if request.weights is None else None
            if fine is not None:  # the bundled 64x64 planes for a dense cloud (the input is prepared alike)
                path = fine
                reconstructor, stats["model_cached"], stats["seconds_load"] = self._model(request, path, device)
            progress.device = str(reconstructor.device)
            if request.threshold is None:
                settings = dataclasses.replace(settings, threshold=reconstructor.weights.threshold)
            if cancelled():
                raise Cancelled("cancelled")
            progress("encoding", 0.0)
            try:
                shape = reconstructor.encode(prepared, fit=request.fit,
                                             progress=progress, should_cancel=cancelled,
                                             fit_threshold=settings.threshold, ensemble=request.ensemble)
            except FitRefused as exc:
                raise FieldError("fit", str(exc)) from None
            except EnsembleRefused as exc:
                raise FieldError("ensemble", str(exc)) from None
        else:
            finished = self._kept(job.source_job or "", job.send)
            shape, reconstructor = finished.shape, finished.reconstructor
            progress.device = str(reconstructor.device)
            shape.encode_seconds = 0.0  # neither encoded nor fitted again: the kept field says it was fitted
            shape.fit_stats = {k: v for k, v in shape.fit_stats.items() if k != "seconds_fit"}
        stats["weights"] = Path(reconstructor.weights.source).stem
        mesh = shape.extract(settings, progress=progress, should_cancel=cancelled)
        self._remember(job.id, FinishedJob(shape, reconstructor, settings, job.send))
        stats.update(mesh.stats)
        stats["device"] = str(reconstructor.device)
        stats["seconds_backend"] = round(time.perf_counter() - started, 4)
        job.send(_result(job.id, mesh, shape, settings, stats))

    def check(self, request: Reconstruct) -> tuple[Path, str]:
        """The weights file and device a request names; raises FieldError at once when either is wrong."""
        try:
            device = str(resolve_device(request.device))
        except InputError as exc:
            raise FieldError("device", str(exc)) from None
        try:
            path = resolve_weights(request.weights, request.modality, self.weights_dirs)
        except CheckpointError as exc:
            raise FieldError("weights", str(exc)) from None
        return path, device

    def _model(self, request: Reconstruct, path: Path, device: str) -> tuple[Reconstructor, bool, float]:
        """The network of the weights file `path` on `device`: from the cache, or loaded (and cached) now."""
        started = time.perf_counter()
        # The modification time is part of the key: retrained weights saved over a file are reloaded.
        key = (str(path.resolve()), path.stat().st_mtime_ns, request.arch, device)
        with self._lock:
            reconstructor = self._models.get(key)
            if reconstructor is not None:
                self._models.move_to_end(key)
        cached = reconstructor is not None
        if reconstructor is None:
            try:
                reconstructor = Reconstructor(load_weights(path, request.arch), device)
            except CheckpointError as exc:
                raise FieldError("weights", str(exc)) from None
            with self._lock:
                self._models[key] = reconstructor
                while len(self._models) > MAX_MODELS:
                    self._models.popitem(last=False)
        if reconstructor.modality != request.modality:
            raise FieldError("weights", f"{path.name} takes {reconstructor.modality} input, not "
                                        f"{request.modality}; choose {request.modality} weights")
        return reconstructor, cached, round(time.perf_counter() - started, 4)

    def _remember(self, job_id: str, finished: FinishedJob) -> None:
        """Keep finished jobs for re-extraction, evicting the oldest beyond the count and memory bounds."""
        with self._lock:
            self._finished[job_id] = finished
            total = sum(f.nbytes for f in self._finished.values())
            while len(self._finished) > 1 and (len(self._finished) > MAX_CACHED_JOBS or total > MAX_CACHED_BYTES):
                _, evicted = self._finished.popitem(last=False)
                total -= evicted.nbytes

    def re_extract_settings(self, job_id: str, given: Settings, owner: Send) -> ExtractionSettings:
        """The settings of a re-extraction: the finished job's, with the fields the request gives."""
        return extraction_settings(given, self._kept(job_id, owner).settings)

    def _kept(self, job_id: str, owner: Send) -> FinishedJob:
        """One of `owner`'s finished jobs. Another connection's is answered as unknown: a client never sees
        (or learns of) another client's shape."""
        finished = self.finished_job(job_id)
        if finished is None or finished.owner != owner:
            raise FieldError("job", f"job {job_id!r} is not available for re-extraction (unknown, failed, or "
                                    "evicted from the cache); reconstruct again")
        return finished


class _Throttled:
    """Progress events for a job: every stage change, and within a stage at most every 50 ms."""

    def __init__(self, job: Job):
        self.job, self.stage, self.last = job, "", 0.0
        self.device = ""  # where the network runs, once the model is loaded

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage == self.stage and now - self.last < PROGRESS_INTERVAL:
            return
        self.stage, self.last = stage, now
        self.job.send(Progress(job=self.job.id, stage=stage, fraction=min(1.0, max(0.0, round(fraction, 4))),
                               device=self.device))


def _result(job_id: str, mesh: MeshResult, shape: EncodedShape, settings: ExtractionSettings,
            stats: dict[str, Any]) -> Result:
    prepared = shape.prepared
    return Result(job=job_id, vertices=mesh.vertices, faces=mesh.faces, normals=mesh.normals, colours=mesh.colours,
                  stats=Stats.from_dict(stats), settings=used_settings(settings),
                  loc=prepared.loc.tolist() if prepared is not None else [0.0, 0.0, 0.0],
                  scale=prepared.scale if prepared is not None else 1.0)


def _field_of(exc: OccNetError) -> str:
    return "weights" if isinstance(exc, CheckpointError) else ""
