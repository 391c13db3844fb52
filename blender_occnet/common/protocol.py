"""Framing between Blender and the backend: a JSON header plus raw array payloads. What the frames say
(the messages, their fields and checks, the protocol version) is messages.py's.

Standard library and numpy only: Blender imports this module, and so does the backend.

A frame on the wire:

    magic   4 bytes   b"OCN1"
    hlen    4 bytes   little-endian uint32, length of the JSON header (at most MAX_HEADER_BYTES)
    plen    8 bytes   little-endian uint64, total length of the payloads (at most the reader's bound for
                      what the header says the frame is: checked before any payload byte is read)
    header  hlen bytes of UTF-8 JSON: an object; its "arrays" entry lists [name, dtype, shape] per array
    payload the arrays' bytes, C order, little-endian, in the listed order, back to back

Nothing is pickled or evaluated: the header is JSON, arrays are rebuilt with np.frombuffer from a
dtype in a short allow-list and a shape whose size must account for the payload exactly.
A remote connection starts with AUTH_PREFIX + token + b"\\n" (at most MAX_AUTH_BYTES) before any frame.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

MAGIC = b"OCN1"
PREFIX = struct.Struct("<4sIQ")
MAX_HEADER_BYTES = 1 << 20  # 1 MiB of JSON is far more than any message needs
MAX_PAYLOAD_BYTES = 1 << 30  # 1 GiB: a 256-cell mesh with normals is ~100 MB
MAX_ARRAYS = 16
MAX_DIMS = 4
AUTH_PREFIX = b"OCCNET-AUTH "
MAX_AUTH_BYTES = 256

# dtype name -> numpy dtype (little-endian); nothing else is accepted.
DTYPES = {
    "bool": np.dtype("bool"),
    "uint8": np.dtype("<u1"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}


class ProtocolError(Exception):
    """A frame that breaks the format; the connection cannot be trusted to stay in sync after it."""

    def __init__(self, message: str, request_id: Any = None):
        super().__init__(message)
        self.request_id = request_id  # the frame's id, where its header could be read (the answer echoes it)


class ConnectionClosed(ProtocolError):
    """The other side closed the stream (cleanly, between frames)."""


class BadFrame(ProtocolError):
    """A frame read whole whose content is invalid: the stream is still in step, the next frame can follow."""


@dataclass
class Frame:
    """One frame as read: its JSON header (without the array listing) and its arrays (read-only views)."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def encode(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """One frame as bytes."""
    arrays = arrays or {}
    if len(arrays) > MAX_ARRAYS:
        raise ProtocolError(f"at most {MAX_ARRAYS} arrays per message, got {len(arrays)}")
    listing, chunks = [], []
    for name, array in arrays.items():
        array = np.asarray(array)
        dtype_name = _dtype_name(array.dtype)
        if array.ndim > MAX_DIMS:
            raise ProtocolError(f"array {name!r} has {array.ndim} dimensions; at most {MAX_DIMS}")
        listing.append([name, dtype_name, list(array.shape)])
        chunks.append(np.ascontiguousarray(array, dtype=DTYPES[dtype_name]).tobytes())
    full = dict(header)
    full["arrays"] = listing
    head = json.dumps(full, separators=(",", ":"), allow_nan=False).encode("utf-8")
    payload_len = sum(len(c) for c in chunks)
    if len(head) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(head)} bytes is over the {MAX_HEADER_BYTES} byte bound")
    if payload_len > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload of {payload_len} bytes is over the {MAX_PAYLOAD_BYTES} byte bound")
    return b"".join([PREFIX.pack(MAGIC, len(head), payload_len), head, *chunks])


# What a frame may carry, told from its header (None when the header cannot be read): (bytes, what it is).
PayloadBound = Callable[[dict[str, Any] | None], tuple[int, str]]


def read_frame(stream: IO[bytes], max_payload: int | PayloadBound = MAX_PAYLOAD_BYTES) -> Frame:
    """Read one frame. Raises ConnectionClosed at a clean end of stream, ProtocolError otherwise.

    max_payload: a bound for every frame, or one told from the frame's header, which is read and parsed before
    any payload byte: a frame that declares more than its kind may carry is refused unread."""
    prefix = _read_exactly(stream, PREFIX.size, allow_eof=True)
    magic, header_len, payload_len = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError(f"bad frame start {magic!r} (expected {MAGIC!r}): not this protocol, or out of sync")
    if header_len > MAX_HEADER_BYTES:
        raise ProtocolError(f"header length {header_len} is over the {MAX_HEADER_BYTES} byte bound")
    if payload_len > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload length {payload_len} is over the {MAX_PAYLOAD_BYTES} byte bound")
    header, problem = _parse_header(_read_exactly(stream, header_len))
    bound, what = max_payload(header) if callable(max_payload) else (max_payload, "a frame")
    if payload_len > bound:
        raise ProtocolError(f"payload length {payload_len:,} is over the {bound:,} bytes {what} may carry",
                            plain_id(header.get("id")) if header is not None else None)
    payload = _read_payload(stream, payload_len)
    # The whole frame is consumed: from here on a problem is a BadFrame and the stream stays in step.
    if header is None:
        raise BadFrame(problem)
    listing = _check_listing(header.pop("arrays", []), payload_len)
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for name, dtype, shape, nbytes in listing:
        arrays[name] = np.frombuffer(payload, dtype=dtype, count=nbytes // dtype.itemsize,
                                     offset=offset).reshape(shape)
        offset += nbytes
    return Frame(header, arrays)


def _parse_header(head: bytes) -> tuple[dict[str, Any] | None, str]:
    """The header as a dict, or None and why it cannot be read."""
    try:
        header = json.loads(head.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, NaN/Infinity, 1e999, 5,000 digits
        return None, f"header is not UTF-8 JSON of finite numbers ({_short(exc)})"
    except RecursionError:
        return None, "header nests too deeply"
    if not isinstance(header, dict):
        return None, "header must be a JSON object"
    return header, ""


def _check_listing(listing: Any, payload_len: int) -> list[tuple[str, np.dtype, tuple[int, ...], int]]:
    """Validate the header's array list against the declared payload length before reading it."""
    if not isinstance(listing, list) or len(listing) > MAX_ARRAYS:
        raise BadFrame(f"'arrays' must be a list of at most {MAX_ARRAYS} entries")
    checked, total, names = [], 0, set()
    for entry in listing:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                and isinstance(entry[1], str) and isinstance(entry[2], list)):
            raise BadFrame(f"array entry {entry!r} is not [name, dtype, shape]")
        name, dtype_name, shape = entry
        if name in names:
            raise BadFrame(f"array {name!r} is listed twice")
        names.add(name)
        if dtype_name not in DTYPES:
            raise BadFrame(f"array {name!r} has dtype {dtype_name!r}; allowed: {', '.join(DTYPES)}")
        if len(shape) > MAX_DIMS or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31
                                            for d in shape):
            raise BadFrame(f"array {name!r} has an invalid shape {shape!r}")
        dtype = DTYPES[dtype_name]
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dtype.itemsize
        total += nbytes
        if total > payload_len:
            raise BadFrame(f"arrays need more bytes than the declared payload of {payload_len}")
        checked.append((name, dtype, tuple(shape), nbytes))
    if total != payload_len:
        raise BadFrame(f"arrays account for {total} bytes but the payload is {payload_len}")
    return checked


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _short(exc: BaseException) -> str:
    return str(exc)[:200]


def plain_id(value: Any) -> Any:
    """A request id safe to echo back: a short string or an integer JSON can carry exactly, else None."""
    if isinstance(value, str) and len(value) <= 200:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2 ** 53:
        return value
    return None


def _read_exactly(stream: IO[bytes], n: int, allow_eof: bool = False) -> bytes:
    return bytes(_read_into_buffer(stream, n, allow_eof))


def _read_payload(stream: IO[bytes], n: int) -> memoryview:
    """The payload, read-only, read straight into one buffer: it costs its size once (joining chunks had cost
    it twice)."""
    return memoryview(_read_into_buffer(stream, n)).toreadonly()


def _read_into_buffer(stream: IO[bytes], n: int, allow_eof: bool = False) -> bytearray:
    buffer = bytearray(n)
    view, done = memoryview(buffer), 0
    while done < n:
        got = stream.readinto(view[done:done + (1 << 24)])  # type: ignore[attr-defined]
        if not got:
            if allow_eof and done == 0:
                raise ConnectionClosed("the other side closed the connection")
            raise ProtocolError(f"stream ended {n - done} bytes short of a {n}-byte block (truncated frame)")
        done += got
    return buffer


def _dtype_name(dtype: np.dtype) -> str:
    for name, allowed in DTYPES.items():
        if dtype.kind == allowed.kind and dtype.itemsize == allowed.itemsize:
            return name
    raise ProtocolError(f"arrays of dtype {dtype} cannot be sent; use one of {', '.join(DTYPES)}")
