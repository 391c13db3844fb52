"""The client Blender uses to talk to the backend: a child process on pipes, or a remote server.

Standard library and numpy only (Blender imports it). Every connection starts with the handshake. Requests
are messages.py's classes, answered synchronously; job events (messages.Progress, Result, Error, Cancelled,
or Lost when the backend went away) arrive on `client.events`, a thread-safe queue that Blender's main thread
drains. Every failure becomes a BackendError subclass whose message says what to do.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, TypeVar

import numpy as np

from . import EXIT_MISSING_PACKAGE
from .messages import (
    PROTOCOL_VERSION,
    Accepted,
    Cancel,
    Cancelled,
    CancelReply,
    Error,
    FieldError,
    Handshake,
    HandshakeReply,
    ListWeights,
    ListWeightsReply,
    Message,
    Progress,
    Reconstruct,
    ReExtract,
    Reply,
    Request,
    Result,
    Shutdown,
    ShutdownReply,
    WeightsEntry,
    read_event,
)
from .protocol import AUTH_PREFIX, ConnectionClosed, Frame, ProtocolError, encode, read_frame

STARTUP_TIMEOUT = 120.0  # importing torch on a cold disk can take a while
REQUEST_TIMEOUT = 30.0
STDERR_LINES = 40
PACKAGE_DIR = Path(__file__).resolve().parent.parent


class BackendError(Exception):
    """Base of every client-side failure; the message is meant for the user."""


class InterpreterNotFound(BackendError):
    pass


class DependencyMissing(BackendError):
    pass


class BackendCrashed(BackendError):
    pass


class VersionMismatch(BackendError):
    pass


class AuthenticationFailed(BackendError):
    pass


class Unreachable(BackendError):
    pass


class BackendTimeout(BackendError):
    pass


class RequestRejected(BackendError):
    """A request was refused: by the backend, or before it was sent by the checks the backend would make
    (messages.py); `field` names the offending field."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


@dataclass
class Lost:
    """The backend went away before the job ended (made here, never sent)."""

    job: str
    message: str
    type: ClassVar[str] = "lost"


Event = Progress | Result | Error | Cancelled | Lost  # what `client.events` carries; each has .job and .type
R = TypeVar("R", bound=Message)
Q = TypeVar("Q", bound=Request)


class _Waiter:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.frame: Frame | None = None


class BackendClient:
    """Use `start_local` or `connect`; then `reconstruct`, `re_extract`, `cancel`, `close`."""

    def __init__(self, reader: IO[bytes], write: Callable[[bytes], object], close: Callable[[], None],
                 process: subprocess.Popen[bytes] | None = None, description: str = "backend"):
        self.events: queue.Queue[Event] = queue.Queue()
        self.info: HandshakeReply  # what the backend is and can do; set by the handshake every constructor makes
        self.description = description
        self._reader, self._write, self._close = reader, write, close
        self._process = process
        self._write_lock = threading.Lock()
        self._waiters: dict[int, _Waiter] = {}
        self._waiters_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._closing = False
        self._dead: BackendError | None = None
        self._jobs: set[str] = set()
        if process is not None and process.stderr is not None:
            threading.Thread(target=self._drain_stderr, args=(process.stderr,), daemon=True).start()
        threading.Thread(target=self._read_loop, name="occnet-client-reader", daemon=True).start()

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def start_local(cls, python: str, weights_dirs: tuple[str, ...] | list[str] = (),
                    timeout: float = STARTUP_TIMEOUT, threads: int = 0) -> BackendClient:
        """Start `python -m <this package>.backend serve --stdio` and shake hands; `threads` > 0 sets its CPU
        threads (0: the backend's default, every core but one)."""
        command = [python, "-m", f"{PACKAGE_DIR.name}.backend", "serve", "--stdio"]
        if threads > 0:
            command += ["--threads", str(threads)]
        for folder in weights_dirs:
            command += ["--weights-dir", str(folder)]
        env = dict(os.environ)
        # The child runs this very copy of the package, whatever the interpreter.
        env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_DIR.parent)] + ([env["PYTHONPATH"]]
                                                                          if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONHOME", None)  # Blender sets it for its own Python; another interpreter must not inherit it
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       env=env, cwd=str(PACKAGE_DIR.parent), creationflags=flags)
        except FileNotFoundError:
            raise InterpreterNotFound(f"the Python interpreter {python!r} was not found; set it in the add-on's "
                                      "preferences or use Install backend") from None
        except PermissionError:
            raise InterpreterNotFound(f"{python!r} cannot be run (permission denied); choose another "
                                      "interpreter") from None
        assert process.stdin is not None and process.stdout is not None
        stdin = process.stdin

        def write(data: bytes) -> None:
            stdin.write(data)
            stdin.flush()

        def close() -> None:
            try:
                stdin.close()
            except OSError:
                pass

        client = cls(process.stdout, write, close, process, f"backend ({python})")
        client._handshake(timeout)
        return client

    @classmethod
    def connect(cls, host: str, port: int, token: str, timeout: float = 10.0) -> BackendClient:
        """Connect to a remote `serve --port` backend and authenticate with its token."""
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise Unreachable(f"cannot reach the backend at {host}:{port} ({exc.strerror or exc}); is it "
                              "running, and is the host and port right?") from None
        sock.settimeout(None)
        try:
            sock.sendall(AUTH_PREFIX + token.encode("utf-8") + b"\n")
        except OSError as exc:
            raise Unreachable(f"the backend at {host}:{port} closed the connection ({exc})") from None

        def close() -> None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

        client = cls(sock.makefile("rb"), sock.sendall, close, None, f"backend at {host}:{port}")
        try:
            client._handshake(timeout)
        except BackendCrashed:
            client.close()
            # A remote server closes a connection before its handshake when it makes room for newer ones (too
            # many connections waiting to authenticate: a flood), not because it died; its log says which.
            raise Unreachable(f"the backend at {host}:{port} closed the connection before answering: it is "
                              "refusing connections (too many unauthenticated ones, or it is stopping; its log "
                              "says which); try again") from None
        return client

    # -- requests -------------------------------------------------------------------------------------

    def reconstruct(self, modality: str, source: np.ndarray, faces: np.ndarray | None = None,
                    **settings: Any) -> str:
        """Queue a reconstruction; returns its job id. With `faces` (voxels only) `source` is a mesh's vertices,
        voxelised by the backend. Settings: messages.Reconstruct's other fields (weights, arch, device,
        input_points, and messages.Settings': resolution, threshold, refine_steps, ...)."""
        return self._submit(_request_of(Reconstruct, modality=modality, input=source, faces=faces, **settings))

    def re_extract(self, job: str, **settings: Any) -> str:
        """Extract a finished job's shape again with other settings (messages.Settings' fields)."""
        return self._submit(_request_of(ReExtract, job=job, **settings))

    def cancel(self, job: str) -> bool:
        return self._request(_request_of(Cancel, job=job), CancelReply).found

    def list_weights(self) -> list[WeightsEntry]:
        return self._request(ListWeights(), ListWeightsReply).weights

    def wait_event(self, timeout: float | None = None) -> Event:
        """The next job event (blocking); Blender's main thread uses events.get_nowait() instead."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise BackendTimeout(f"no answer from the {self.description} within {timeout:g} s") from None

    @property
    def alive(self) -> bool:
        return self._dead is None and not self._closing

    def close(self, timeout: float = 5.0) -> None:
        """A local backend is asked to shut down and waited for; a remote one is only disconnected from
        (it serves other artists too)."""
        if self.alive and self._process is not None:
            try:
                self._request(Shutdown(), ShutdownReply, timeout=timeout)
            except BackendError:
                pass
        self._closing = True
        self._close()
        if self._process is not None:
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    # -- internals -------------------------------------------------------------------------------------

    def _handshake(self, timeout: float) -> None:
        try:
            self.info = self._request(Handshake(protocol_version=PROTOCOL_VERSION, client="blender-occnet"),
                                      HandshakeReply, timeout=timeout)
        except RequestRejected as exc:
            self.close()
            if exc.field == "protocol_version":
                raise VersionMismatch(str(exc)) from None
            if exc.field == "token":
                raise AuthenticationFailed("the remote backend refused the token; copy the token it printed "
                                           "at start into the add-on's preferences") from None
            raise
        except BackendTimeout:
            self.close(timeout=1.0)
            raise

    def _submit(self, request: Reconstruct | ReExtract) -> str:
        return self._request(request, Accepted).job  # the reader notes it among the jobs not yet ended

    def _request(self, request: Request, answer: type[R], timeout: float = REQUEST_TIMEOUT) -> R:
        """Send `request` and wait for its answer, read as `answer` (or as the Error that refuses it)."""
        if self._dead is not None:
            raise self._dead
        request_id = next(self._ids)
        waiter = _Waiter()
        with self._waiters_lock:
            self._waiters[request_id] = waiter
        header, arrays = request.to_frame()
        frame = encode({**header, "id": request_id}, arrays)
        try:
            with self._write_lock:
                self._write(frame)
        except OSError:
            self._wait_for_exit()
            raise self._dead or BackendCrashed(f"the {self.description} stopped accepting requests") from None
        if not waiter.done.wait(timeout):
            with self._waiters_lock:
                self._waiters.pop(request_id, None)
            raise BackendTimeout(f"the {self.description} did not answer {request.NAME!r} within {timeout:g} s")
        if waiter.frame is None:
            raise self._dead or BackendCrashed(f"the {self.description} went away")
        header, arrays = waiter.frame.header, waiter.frame.arrays
        try:
            if header.get("type") == Error.NAME:
                error: Error = Error.from_frame(header, arrays)
                raise RequestRejected(error.message, error.field)
            return answer.from_frame(header, arrays)
        except FieldError as exc:
            raise VersionMismatch(f"the {self.description} answered {request.NAME!r} with a message this add-on "
                                  f"cannot read ({exc}); install the same version of the extension and the "
                                  "backend") from None

    def _read_loop(self) -> None:
        while True:
            try:
                frame = read_frame(self._reader)
            except (ConnectionClosed, ProtocolError, OSError, ValueError) as exc:
                self._connection_lost(exc)
                return
            header = frame.header
            request_id = header.get("id")
            if request_id is not None and header.get("type") in (Reply.NAME, Accepted.NAME, Error.NAME):
                job = header.get("job")
                if header.get("type") == Accepted.NAME and isinstance(job, str):
                    # Here, not in _submit: the job's last event may follow at once, and is read by this thread.
                    self._jobs.add(job)
                with self._waiters_lock:
                    waiter = self._waiters.pop(request_id, None)
                if waiter is not None:
                    waiter.frame = frame
                    waiter.done.set()
                continue
            if header.get("type") == Error.NAME and header.get("field") == "token":
                # A refused remote connection answers once, before any request id exists.
                self._dead = AuthenticationFailed("the remote backend refused the token; copy the token it printed "
                                                  "at start into the add-on's preferences")
                self._wake_all()
                return
            event = _job_event(frame)
            if event is not None:
                if not isinstance(event, Progress):
                    self._jobs.discard(event.job)  # ended: no Lost for it if the backend goes away later
                self.events.put(event)

    def _connection_lost(self, exc: BaseException) -> None:
        if self._closing:
            self._wake_all()
            return
        self._wait_for_exit()
        if self._dead is None:
            self._dead = BackendCrashed(f"the {self.description} closed the connection ({exc})")
        for job in list(self._jobs):
            self.events.put(Lost(job, str(self._dead)))
        self._wake_all()

    def _wait_for_exit(self) -> None:
        """Turn the child's exit into the right error, with the end of what it printed."""
        if self._process is None or self._dead is not None:
            return
        try:
            code = self._process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            return
        threading.Event().wait(0.2)  # let the stderr thread read the last lines
        tail = self.stderr_tail()
        if code == EXIT_MISSING_PACKAGE:
            self._dead = DependencyMissing(tail or "the backend interpreter lacks PyTorch; use Install backend")
        else:
            how = f"signal {-code}" if code < 0 else f"exit status {code}"
            self._dead = BackendCrashed(f"the {self.description} stopped ({how}). Its last output:\n{tail}"
                                        if tail else f"the {self.description} stopped ({how}) without a message")

    def _wake_all(self) -> None:
        with self._waiters_lock:
            waiters, self._waiters = list(self._waiters.values()), {}
        for waiter in waiters:
            waiter.done.set()

    def _drain_stderr(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self._stderr.append(line)
            if os.environ.get("OCCNET_BACKEND_ECHO"):
                print(f"[backend] {line}", file=sys.stderr)


def _request_of(cls: type[Q], **fields: Any) -> Q:
    """A request from keyword arguments named as its fields; one that fails a check is refused here, as the
    backend would refuse it."""
    try:
        return cls.from_dict(fields)
    except FieldError as exc:
        raise RequestRejected(str(exc), exc.field) from None


def _job_event(frame: Frame) -> Event | None:
    """A job's event, or None for a frame that is no job's (nobody waits for it). An event this side cannot
    read ends its job with an Error that says so."""
    job = frame.header.get("job")
    try:
        event = read_event(frame)
    except FieldError as exc:
        if not isinstance(job, str) or not job or len(job) > 200:
            return None
        return Error(job=job, field=exc.field, message=f"the backend sent a {str(frame.header.get('type'))[:40]} this "
                                                       f"add-on cannot read ({exc}); install the same version of the "
                                                       "extension and the backend")
    return event if isinstance(event, (Progress, Result, Error, Cancelled)) and event.job else None
