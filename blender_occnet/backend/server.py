"""Transports: a child process on stdin/stdout (what the add-on starts; no port is opened) or a TCP
server for a remote GPU machine (loopback unless told otherwise, token required before anything is read).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import hmac
import os
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from .. import __version__
from ..common.messages import (
    PROTOCOL_VERSION,
    Accepted,
    Cancel,
    CancelReply,
    Error,
    FieldError,
    Handshake,
    HandshakeReply,
    ListWeights,
    ListWeightsReply,
    Message,
    Reconstruct,
    ReExtract,
    Request,
    Shutdown,
    ShutdownReply,
    WeightsEntry,
    read_request,
    request_payload_bound,
)
from ..common.protocol import (
    AUTH_PREFIX,
    MAX_AUTH_BYTES,
    BadFrame,
    ConnectionClosed,
    Frame,
    ProtocolError,
    encode,
    plain_id,
    read_frame,
)
from .convert import extraction_settings
from .engine import Engine, Job


class Session:
    """One client connection: reads requests, answers them, and carries its jobs' events back."""

    # Frames waiting for a slow client: beyond this the client is taken to have stopped reading, and its
    # connection is closed (its jobs cancelled) rather than letting it hold the worker.
    MAX_PENDING_BYTES = 256 << 20

    def __init__(self, engine: Engine, reader: IO[bytes], write: Callable[[bytes], object], remote: bool = False,
                 on_drop: Callable[[], None] | None = None, may_shut_down: bool = True,
                 budget: ReplyBudget | None = None, peer: str = "the client"):
        self.engine = engine
        self._budget = budget  # what all of a server's clients may have waiting together
        self.peer = peer  # for the log line when it is dropped
        # A shared remote server outlives any one client: only its own flag lets a client stop it.
        self.may_shut_down = may_shut_down
        self._on_drop = on_drop  # ends the reading side when a client that stopped reading is dropped
        self.remote = remote  # a TCP client: it may name weights in the server's folders only, never a path
        self.reader = reader
        self._write = write
        self._lock = threading.Condition()
        self._pending: collections.deque[bytes] = collections.deque()
        self._pending_bytes = 0
        self.open = True
        self.greeted = False  # a handshake has succeeded: until then every other request is refused
        # The worker thread never writes to the socket itself: a client that stops reading would block it.
        self._writer = threading.Thread(target=self._write_frames, name="occnet-writer", daemon=True)
        self._writer.start()

    def send(self, message: Message) -> None:
        """Queue one frame for the client (never blocks on the client)."""
        if self.remote and isinstance(message, Error):
            message = dataclasses.replace(message, message=without_paths(message.message))
        try:
            frame = encode(*message.to_frame())
        except (ProtocolError, ValueError, TypeError, RecursionError) as exc:  # never let a reply kill the server
            frame = encode(*Error(id=getattr(message, "id", None), message=f"the reply could not be encoded "
                                  f"({type(exc).__name__}: {str(exc)[:200]})").to_frame())
        with self._lock:
            if not self.open:
                return
            waiting = self._pending_bytes
        if waiting + len(frame) > self.MAX_PENDING_BYTES:
            self._drop(f"{waiting:,} bytes of replies wait unread, over the {self.MAX_PENDING_BYTES:,} one client may "
                       "have waiting")
            return
        if self._budget is not None:
            # Taken before this session's lock, and each victim dropped under its own lock only: no lock order.
            for victim, held in self._budget.take(self, len(frame)):
                victim._drop(f"{held:,} bytes of replies wait unread, the most of any client while all together "
                             f"were over the {self._budget.limit:,} this server keeps (--reply-buffer-mb)")
        with self._lock:
            if not self.open:  # dropped meanwhile (its budget already given back)
                return
            self._pending.append(frame)
            self._pending_bytes += len(frame)
            self._lock.notify_all()

    def _drop(self, reason: str) -> None:
        """The client is not reading: drop it (logged), its jobs go with it (serve() ends)."""
        with self._lock:
            if not self.open:
                return
            self.open = False
            self._pending.clear()
            self._pending_bytes = 0
            self._lock.notify_all()
        if self._budget is not None:
            self._budget.forget(self)
        print(f"blender-occnet backend: dropped {self.peer}, which stopped reading: {reason}", file=sys.stderr,
              flush=True)
        if self._on_drop is not None:
            self._on_drop()

    def _write_frames(self) -> None:
        while True:
            with self._lock:
                while not self._pending and self.open:
                    self._lock.wait()
                if not self._pending:
                    return
                frame = self._pending.popleft()
                self._pending_bytes -= len(frame)
            try:
                self._write(frame)
            except OSError:  # the client went away; its jobs are cancelled by serve()
                with self._lock:
                    self.open = False
                    self._pending.clear()
                if self._budget is not None:
                    self._budget.forget(self)
                return
            if self._budget is not None:
                self._budget.release(self, len(frame))

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until the queued frames are written (or the client is gone), then stop the writer."""
        with self._lock:
            self.open = False
            self._lock.notify_all()
        self._writer.join(timeout)

    def serve(self) -> bool:
        """Handle requests until the stream ends; True when a shutdown was asked for."""
        try:
            while True:
                try:
                    frame = read_frame(self.reader, request_payload_bound)
                except BadFrame as exc:  # the stream is still in step: answer and go on
                    self.send(Error(field="frame", message=str(exc)))
                    continue
                if self._handle(frame):
                    return True
        except ConnectionClosed:
            return False
        except ProtocolError as exc:  # out of step: the connection cannot be trusted any more
            self.send(Error(id=exc.request_id, field="frame", message=f"{exc}; closing the connection"))
            return False
        except OSError as exc:
            self.send(Error(field="frame", message=f"{exc}; closing the connection"))
            return False
        finally:
            self.flush()  # what was queued (a shutdown's reply) still goes out
            self.engine.cancel_all_from(self.send)
            if self._budget is not None:
                self._budget.forget(self)

    def _handle(self, frame: Frame) -> bool:
        """Answer one request; True when it asked for shutdown."""
        request_id = plain_id(frame.header.get("id"))  # echoed back even when the request is refused
        try:
            op = frame.header.get("op")
            if not self.greeted and op != Handshake.NAME:
                raise FieldError("op", f"a connection opens with a handshake (op 'handshake', protocol_version "
                                       f"{PROTOCOL_VERSION}); send one, then {str(op)[:60]!r} again")
            request = read_request(frame)
            if isinstance(request, Shutdown) and not self.may_shut_down:
                raise FieldError("op", "this server does not stop at a client's request (other clients' jobs "
                                       "would be lost); stop it where it runs, or start it with "
                                       "--allow-remote-shutdown")
            HANDLERS[type(request)](self, request)
            return isinstance(request, Shutdown)
        except FieldError as exc:
            self.send(Error(id=request_id, field=exc.field, message=str(exc)))
        except Exception as exc:  # never let one request take the server down
            self.send(Error(id=request_id, message=f"internal error: {type(exc).__name__}: {exc}"))
        return False

    # -- one handler per request (HANDLERS): each sends its request's answer --------------------------------

    def _handshake(self, request: Handshake) -> None:
        import torch

        from ..occnet.generation import mps_available, resolve_device

        devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
        devices += ["mps (Apple GPU)"] if mps_available() else []
        self.send(HandshakeReply(id=request.id, protocol_version=PROTOCOL_VERSION, backend_version=__version__,
                                 torch_version=torch.__version__, python=sys.version.split()[0],
                                 executable=sys.executable, devices=devices, cuda=torch.cuda.is_available(),
                                 cpu_threads=torch.get_num_threads(), auto_device=str(resolve_device("auto")),
                                 weights=self._weights()))
        self.greeted = True

    def _reconstruct(self, request: Reconstruct) -> None:
        if self.remote:
            _registry_name_only(request.weights, self.engine.weights_dirs)
        self.engine.check(request)  # unknown weights or a missing device: refused before queueing
        self._submit(request, Job(self.engine.new_job_id(), self.send, extraction_settings(request), request=request))

    def _re_extract(self, request: ReExtract) -> None:
        settings = self.engine.re_extract_settings(request.job, request, self.send)
        self._submit(request, Job(self.engine.new_job_id(), self.send, settings, source_job=request.job))

    def _submit(self, request: Request, job: Job) -> None:
        self.send(Accepted(id=request.id, job=job.id))  # before any of the job's events
        self.engine.submit(job)

    def _cancel(self, request: Cancel) -> None:
        self.send(CancelReply(id=request.id, found=self.engine.cancel(request.job, self.send)))

    def _list_weights(self, request: ListWeights) -> None:
        self.send(ListWeightsReply(id=request.id, weights=self._weights()))

    def _shutdown(self, request: Shutdown) -> None:
        self.send(ShutdownReply(id=request.id))

    def _weights(self) -> list[WeightsEntry]:
        from ..occnet.registry import list_weights

        entries = []
        for info in list_weights(self.engine.weights_dirs):
            try:
                entries.append(WeightsEntry.from_dict(info.to_dict()))
            except FieldError as exc:  # never let one file's header break the listing (and so the handshake)
                entries.append(WeightsEntry(name=info.name[:200], path=str(info.path)[:4096], modality="", arch="",
                                            threshold=0.0, card={}, error=f"unusable: {exc}"[:4096]))
        return entries


# An absolute path (POSIX or Windows), its last part kept in the second group.
_PATH = re.compile(r"(?<![\w.~])(/|[A-Za-z]:\\)(?:[^\s/\\:'\"(),;]+[/\\])+([^\s/\\:'\"(),;]*)")


def without_paths(text: str) -> str:
    """`text` with every absolute path cut to its last part: what a remote client is told never shows where the
    server keeps its files (a weights file's error named its full path on the server)."""
    return _PATH.sub(lambda found: found.group(2) or "(a folder)", text)


class ReplyBudget:
    """The bytes of replies waiting for all of a server's clients together (issue 24: each client that stopped
    reading could hold 256 MB, and nothing bounded how many did). Past the limit the client with the most waiting,
    the slowest reader, is dropped (with a log line) rather than the server's memory growing."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._held: dict[Session, int] = {}
        self._total = 0

    def take(self, session: Session, size: int) -> list[tuple[Session, int]]:
        """Count `size` more bytes for `session`; returns the sessions to drop (perhaps itself) and what they held,
        already forgotten."""
        with self._lock:
            self._held[session] = self._held.get(session, 0) + size
            self._total += size
            dropped = []
            while self._total > self.limit:
                victim = max(self._held, key=self._held.__getitem__)
                held = self._held.pop(victim)
                self._total -= held
                dropped.append((victim, held))
            return dropped

    def release(self, session: Session, size: int) -> None:
        """`size` bytes of `session`'s were written."""
        with self._lock:
            if session in self._held:
                self._held[session] -= size
                self._total -= size

    def forget(self, session: Session) -> None:
        with self._lock:
            self._total -= self._held.pop(session, 0)


DEFAULT_REPLY_BUFFER = 512 << 20  # replies waiting for all clients of a TCP server together


# The server's side of messages.REQUESTS: every request class has its handler (a test checks the two match).
HANDLERS: dict[type[Request], Callable[[Session, Any], None]] = {
    Handshake: Session._handshake, Reconstruct: Session._reconstruct, ReExtract: Session._re_extract,
    Cancel: Session._cancel, ListWeights: Session._list_weights, Shutdown: Session._shutdown}


def _registry_name_only(weights: str | None, weights_dirs: list[str]) -> None:
    """A remote request may name weights the server offers (its folders and the bundled ones), never a path
    on the server: the answer would tell whether a file exists, and what its first bytes are."""
    if weights is None:
        return
    from ..occnet.registry import list_weights

    names = [w.name for w in list_weights(weights_dirs) if w.usable]
    if weights not in names:
        raise FieldError("weights", f"this remote backend serves the weights named {', '.join(names) or '(none)'}; "
                                    f"{weights!r} is not one of them (paths on the server are never accepted)")


def serve_stdio(engine: Engine) -> None:
    """Serve the parent process over our stdin/stdout until it closes them or asks for shutdown."""
    # Keep the protocol stream to ourselves: anything printed to fd 1 later goes to stderr instead.
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    reader = os.fdopen(os.dup(0), "rb")
    Session(engine, reader, protocol_out.write).serve()
    _leave(engine)


AUTH_SECONDS = 10.0  # a connection has this long in all to send its token line
MAX_UNAUTHENTICATED = 64  # connections still to authenticate at once; a newcomer beyond makes room (_Waiting)


def serve_tcp(engine: Engine, host: str, port: int, token: str,
              ready: Callable[[int], None] | None = None, allow_shutdown: bool = False,
              reply_buffer: int = DEFAULT_REPLY_BUFFER) -> None:
    """Accept connections; each must open with AUTH_PREFIX + token + newline before anything is read.

    The token line must arrive whole within AUTH_SECONDS (a client trickling bytes gets no longer), at
    most MAX_UNAUTHENTICATED connections wait for theirs at once, and every refusal is logged with the
    peer's address and the reason (never what was sent). Running out of file descriptors pauses accepting
    instead of ending the server."""
    server = socket.create_server((host, port), reuse_port=False)
    if ready is not None:
        ready(server.getsockname()[1])
    stopping = threading.Event()
    waiting = _Waiting()
    budget = ReplyBudget(reply_buffer)

    def handle(conn: socket.socket, peer: Any) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(conn)
            evicted = waiting.add(conn)
            if evicted is not None:
                _log_refusal(evicted, f"evicted: {MAX_UNAUTHENTICATED} connections were waiting to authenticate and "
                                      "this one had waited longest")
            try:
                reason = _authenticate(conn, token, time.monotonic() + AUTH_SECONDS)
            finally:
                waiting.remove(conn)
            if reason:
                _log_refusal(peer, reason)
                try:
                    conn.settimeout(1.0)
                    conn.sendall(encode(*Error(field="token", message="authentication failed: wrong or missing "
                                                                      "token").to_frame()))
                except OSError:
                    pass
                return
            conn.settimeout(None)  # authenticated: jobs may take as long as they take
            # Closed with the connection: a socket's descriptor stays open while a file made from it is (a departed
            # client's socket had stayed in CLOSE-WAIT).
            reader = stack.enter_context(conn.makefile("rb"))
            def drop() -> None:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            session = Session(engine, reader, conn.sendall, remote=True, on_drop=drop, may_shut_down=allow_shutdown,
                              budget=budget, peer=_address(peer))
            if session.serve():
                stopping.set()
                try:
                    server.shutdown(socket.SHUT_RDWR)  # wakes the accept() below at once (close alone did not)
                except OSError:
                    pass
                server.close()

    with server:
        while not stopping.is_set():
            try:
                conn, peer = server.accept()
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    print(f"blender-occnet backend: cannot accept a connection ({exc.strerror}); pausing",
                          file=sys.stderr, flush=True)
                    time.sleep(0.1)
                    continue
                break
            try:
                threading.Thread(target=handle, args=(conn, peer), daemon=True).start()
            except RuntimeError:  # no thread to be had: refuse this one, keep serving
                _log_refusal(peer, "no thread available")
                conn.close()
    _leave(engine)


class _Waiting:
    """The connections still to send their token, oldest first. A full table makes room by closing its oldest
    idle one (as OpenSSH's MaxStartups drops; one whose bytes wait unread is passed over): a flood of idle
    connections then only ever holds the newest slots, and a real client, whose token line follows its connect
    at once, always gets through; refusing the newcomer instead let one idle connection every 10 ms lock every
    real client out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: collections.OrderedDict[socket.socket, Any] = collections.OrderedDict()

    def add(self, conn: socket.socket) -> Any:
        """Admit `conn`; returns the peer of the connection closed to make room, or None."""
        try:
            peer = conn.getpeername()
        except OSError:
            peer = None
        with self._lock:
            oldest: tuple[socket.socket, Any] | None = None
            if len(self._conns) >= MAX_UNAUTHENTICATED:
                idle = next((c for c in self._conns if not _has_sent(c)), next(iter(self._conns)))
                oldest = (idle, self._conns.pop(idle))
            self._conns[conn] = peer
        if oldest is None:
            return None
        try:
            oldest[0].shutdown(socket.SHUT_RDWR)  # its handler's read ends at once and it leaves
        except OSError:
            pass
        return oldest[1]

    def remove(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.pop(conn, None)


def _has_sent(conn: socket.socket) -> bool:
    """Whether bytes from the peer wait unread: a real client whose handler has not read its token yet (the
    server busy), which the eviction passes over for an idle connection (a loaded server had evicted real
    clients that were merely not read within the flood's window)."""
    try:  # select, not MSG_DONTWAIT: Windows has no such flag
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and bool(conn.recv(1, socket.MSG_PEEK))
    except (OSError, ValueError):
        return False


def _leave(engine: Engine) -> None:
    """Stop the engine; if its worker is still inside torch, leave without the interpreter's teardown (which
    would abort the process under it) once the streams are flushed."""
    if not engine.stop():
        sys.stderr.flush()
        os._exit(0)


def _log_refusal(peer: Any, reason: str) -> None:
    print(f"blender-occnet backend: refused {_address(peer)}: {reason}", file=sys.stderr, flush=True)


def _address(peer: Any) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)


def _authenticate(conn: socket.socket, token: str, deadline: float) -> str:
    """Read the bounded auth line only, before `deadline` in all; compare in constant time. '' when the
    token is right, else the reason for refusing."""
    line = b""
    try:
        while not line.endswith(b"\n") and len(line) < MAX_AUTH_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"no token line within {AUTH_SECONDS:g} s"
            conn.settimeout(remaining)
            chunk = conn.recv(1)  # byte by byte: the first frame may follow the newline at once
            if not chunk:
                return "closed before sending a token"
            line += chunk
            if not (line.startswith(AUTH_PREFIX) or AUTH_PREFIX.startswith(line)):
                return "did not open with a token line"  # refuse at once, read nothing more
    except TimeoutError:
        return f"no token line within {AUTH_SECONDS:g} s"
    except OSError as exc:
        return f"connection error ({exc.strerror or exc})"
    if not line.startswith(AUTH_PREFIX) or not line.endswith(b"\n"):
        return "token line too long"
    if not hmac.compare_digest(line[len(AUTH_PREFIX):-1], token.encode("utf-8")):
        return "wrong token"
    return ""
