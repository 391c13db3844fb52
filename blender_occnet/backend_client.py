"""The client Blender uses to talk to the backend: a child process on pipes, or a remote server.

Standard library and numpy only (Blender imports it). Requests are answered synchronously; job events
(progress, result, error, cancelled) arrive on `client.events`, a thread-safe queue that Blender's
main thread drains. Every failure becomes a BackendError subclass whose message says what to do.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from .backend import EXIT_MISSING_PACKAGE
from .protocol import (AUTH_PREFIX, PROTOCOL_VERSION, ConnectionClosed, Message, ProtocolError, encode,
                       read_message)

STARTUP_TIMEOUT = 120.0  # importing torch on a cold disk can take a while
REQUEST_TIMEOUT = 30.0
STDERR_LINES = 40
PACKAGE_DIR = Path(__file__).resolve().parent


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
    """The backend refused a request; `field` names the offending field."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


@dataclass
class Event:
    """A job event: type is progress, result, error, cancelled, or 'lost' when the backend went away."""

    type: str
    job: str
    header: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class _Waiter:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.message: Message | None = None


class BackendClient:
    """Use `start_local` or `connect`; then `reconstruct`, `re_extract`, `cancel`, `close`."""

    def __init__(self, reader: BinaryIO, write: Callable[[bytes], None], close: Callable[[], None],
                 process: subprocess.Popen[bytes] | None = None, description: str = "backend"):
        self.events: queue.Queue[Event] = queue.Queue()
        self.info: dict[str, Any] = {}
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
                    timeout: float = STARTUP_TIMEOUT, threads: int = 0) -> "BackendClient":
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
    def connect(cls, host: str, port: int, token: str, timeout: float = 10.0) -> "BackendClient":
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
        client._handshake(timeout)
        return client

    # -- requests -------------------------------------------------------------------------------------

    def reconstruct(self, modality: str, source: np.ndarray, faces: np.ndarray | None = None,
                    **settings: Any) -> str:
        """Queue a reconstruction; returns its job id. With `faces` (voxels only) `source` is a mesh's vertices,
        voxelised by the backend. Settings: weights, arch, device, resolution, threshold, refine_steps,
        simplify_faces, normals, seed."""
        arrays = {"input": source} if faces is None else {"input": source, "faces": faces}
        reply = self._request({"op": "reconstruct", "modality": modality, **settings}, arrays)
        job = str(reply.get("job"))
        self._jobs.add(job)
        return job

    def re_extract(self, job: str, **settings: Any) -> str:
        """Extract a finished job's shape again with other settings (threshold, resolution, ...)."""
        reply = self._request({"op": "re_extract", "job": job, **settings})
        new_job = str(reply.get("job"))
        self._jobs.add(new_job)
        return new_job

    def cancel(self, job: str) -> bool:
        return bool(self._request({"op": "cancel", "job": job}).get("found"))

    def list_weights(self) -> list[dict[str, Any]]:
        return list(self._request({"op": "list_weights"}).get("weights", []))

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
                self._request({"op": "shutdown"}, timeout=timeout)
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
            self.info = self._request({"op": "handshake", "protocol_version": PROTOCOL_VERSION,
                                       "client": "blender-occnet"}, timeout=timeout)
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

    def _request(self, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None,
                 timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
        if self._dead is not None:
            raise self._dead
        request_id = next(self._ids)
        waiter = _Waiter()
        with self._waiters_lock:
            self._waiters[request_id] = waiter
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
            raise BackendTimeout(f"the {self.description} did not answer {header.get('op')!r} within {timeout:g} s")
        message = waiter.message
        if message is None:
            raise self._dead or BackendCrashed(f"the {self.description} went away")
        if message.type == "error":
            raise RequestRejected(str(message.get("message")), str(message.get("field") or ""))
        return message.header

    def _read_loop(self) -> None:
        while True:
            try:
                message = read_message(self._reader)
            except (ConnectionClosed, ProtocolError, OSError, ValueError) as exc:
                self._connection_lost(exc)
                return
            request_id = message.get("id")
            if request_id is not None and message.type in ("reply", "accepted", "error"):
                with self._waiters_lock:
                    waiter = self._waiters.pop(request_id, None)
                if waiter is not None:
                    waiter.message = message
                    waiter.done.set()
                continue
            if message.type == "error" and message.get("field") == "token":
                # A refused remote connection answers once, before any request id exists.
                self._dead = AuthenticationFailed("the remote backend refused the token; copy the token it printed "
                                                  "at start into the add-on's preferences")
                self._wake_all()
                return
            job = message.get("job")
            if job is not None:
                self.events.put(Event(message.type, str(job), message.header, message.arrays))

    def _connection_lost(self, exc: BaseException) -> None:
        if self._closing:
            self._wake_all()
            return
        self._wait_for_exit()
        if self._dead is None:
            self._dead = BackendCrashed(f"the {self.description} closed the connection ({exc})")
        for job in list(self._jobs):
            self.events.put(Event("lost", job, {"message": str(self._dead)}))
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

    def _drain_stderr(self, stream: BinaryIO) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self._stderr.append(line)
            if os.environ.get("OCCNET_BACKEND_ECHO"):
                print(f"[backend] {line}", file=sys.stderr)
