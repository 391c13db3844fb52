"""The messages between Blender and the backend: one dataclass each, the checks on every field, and the
conversion to and from a frame (protocol.py carries frames: JSON header plus arrays).

Standard library and numpy only: Blender imports this module, and so does the backend. Every check the wire
needs is here and nowhere else; a value that fails one raises FieldError, which names the field. Checks run
whenever a message is made, from the wire (`from_frame`) or in Python, so both ends send only what the other
accepts.

A connection opens with Handshake; anything else before it is answered with an Error. Requests carry "op"
(REQUESTS: op -> class) and the client's "id". The server answers each request with a reply of type
"reply" (the class its caller expects) or "accepted" (a job was queued), or with an Error, carrying the
request's id; a job then sends events carrying its job id (EVENTS: type -> class).
"""

from __future__ import annotations

import builtins
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from .policy import FEW_POINTS, MAX_INPUT_POINTS, MIN_POINTS, MODALITIES
from .protocol import DTYPES, Frame, plain_id
from .settings import EXTRACTION, REQUEST, Setting, SettingError

PROTOCOL_VERSION = 1
MAX_IMAGE_SIDE = 2048  # the network sees 224 x 224; the add-on sends at most 1024 px, other clients this much
MAX_POINTS = MAX_INPUT_POINTS
MAX_FACES = 5_000_000  # a mesh sent to be voxelised
MAX_TEXT = 4096  # a weights path is the longest text a message carries


class FieldError(ValueError):
    """A message field that cannot be used: `field` names it (dotted inside nested values); the text says why."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


# -- field checks: each returns the value to keep or raises _Refused with the reason -----------------------


class _Refused(Exception):
    pass


Check = Callable[[Any], Any]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def integer(lo: int, hi: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise _Refused(f"must be an integer, got {_show(value)}")
        if value < lo:
            raise _Refused(f"must be at least {lo:,}, got {value:,}")
        if value > hi:
            raise _Refused(f"must be at most {hi:,}, got {value:,}")
        return int(value)
    return check


def number(lo: float = 0.0, hi: float = math.inf, strict: bool = False) -> Check:
    """A finite number within [lo, hi] ((lo, hi) when `strict`); integers are taken as floats."""
    def check(value: Any) -> float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise _Refused(f"must be a number, got {_show(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise _Refused(f"must be finite, got {value!r}")
        if strict and not lo < value < hi:
            raise _Refused(f"must be strictly between {lo:g} and {hi:g}, got {value!r}")
        if not lo <= value <= hi:
            raise _Refused(f"must be between {lo:g} and {hi:g}, got {value!r}")
        return value
    return check


def flag(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise _Refused(f"must be true or false, got {_show(value)}")
    return bool(value)


def text(limit: int = 200, empty: bool = True) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _Refused(f"must be a string, got {_show(value)}")
        if len(value) > limit:
            raise _Refused(f"must be at most {limit} characters, got {len(value)}")
        if not value and not empty:
            raise _Refused("must not be empty")
        return value
    return check


def clipped(limit: int) -> Check:
    """Text for people: what is longer than `limit` is cut, never refused (an error must always get through)."""
    def check(value: Any) -> str:
        value = text(1 << 62)(value)
        return value if len(value) <= limit else value[:limit - 1] + "…"
    return check


def one_of(options: tuple[Any, ...]) -> Check:
    kind = type(options[0])

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, kind) or value not in options:
            raise _Refused(f"must be one of {', '.join(map(str, options))}, got {_show(value)}")
        return value
    return check


def declared(setting: Setting) -> Check:
    """A setting's check, as its declaration (common/settings.py) says."""
    def check(value: Any) -> Any:
        try:
            return setting.check(value)
        except SettingError as exc:
            raise _Refused(str(exc)) from None
    return check


def request_id(value: Any) -> int | str:
    if plain_id(value) is None:
        raise _Refused(f"must be a string of at most 200 characters or an integer below 2**53, got {_show(value)}")
    return value


def list_of(item: Check, limit: int = 1000, length: int | None = None) -> Check:
    def check(value: Any) -> list[Any]:
        if not isinstance(value, (list, tuple)) or len(value) > limit:
            raise _Refused(f"must be a list of at most {limit} items, got {_show(value)}")
        if length is not None and len(value) != length:
            raise _Refused(f"must have {length} items, got {len(value)}")
        kept = []
        for i, entry in enumerate(value):
            try:
                kept.append(item(entry))
            except _Refused as exc:
                raise _Refused(f"item {i} {exc}") from None
            except FieldError as exc:
                raise FieldError(f"{i}.{exc.field}", f"item {i}: {exc}") from None
        return kept
    return check


def json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Refused(f"must be an object, got {_show(value)}")
    return value


def nested(cls: type[Checked]) -> Check:
    def check(value: Any) -> Checked:
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise _Refused(f"must be an object, got {_show(value)}")
        return cls.from_dict(value)
    return check


def array(*dtypes: str, shape: tuple[int | None, ...] | None = None) -> Check:
    """An array of one of the wire's dtypes (by name, see protocol.DTYPES) and, if given, a shape in which
    None stands for any length."""
    allowed = {(DTYPES[d].kind, DTYPES[d].itemsize) for d in dtypes}
    pattern = " x ".join("N" if n is None else str(n) for n in shape) if shape is not None else ""

    def check(value: Any) -> np.ndarray:
        if not isinstance(value, np.ndarray):
            raise _Refused(f"must be an array, got {type(value).__name__}")
        if (value.dtype.kind, value.dtype.itemsize) not in allowed:
            raise _Refused(f"must be an array of {' or '.join(dtypes)}, got {value.dtype}")
        if shape is not None and (value.ndim != len(shape)
                                  or any(n is not None and n != d for n, d in zip(shape, value.shape))):
            raise _Refused(f"must be {pattern}, got {' x '.join(map(str, value.shape)) or 'a scalar'}")
        return value
    return check


COUNT = integer(0, 2 ** 53)
SECONDS = number()
JOB = text(200, empty=False)


# -- the machinery: fields declared with their check, checked on construction -------------------------------


@dataclass(frozen=True)
class _Spec:
    check: Check
    key: str  # the name on the wire, when it is not the attribute's (a Python keyword)
    array: bool  # carried as an array of the frame, not in its header


def wire(check: Check, default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, key: str = "",
         array: bool = False) -> Any:
    """A message field with its check; None or "" as the default means the field may be left out."""
    metadata = {"wire": _Spec(check, key, array)}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _spec(f: dataclasses.Field[Any]) -> _Spec:
    spec = f.metadata["wire"]
    assert isinstance(spec, _Spec)
    return spec


def _key(f: dataclasses.Field[Any]) -> str:
    return _spec(f).key or f.name


def _plain(value: Any) -> Any:
    """A checked value as JSON holds it."""
    if isinstance(value, Checked):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


C = TypeVar("C", bound="Checked")


@dataclass(kw_only=True)
class Checked:
    """A value whose fields are each checked when it is made (then `check()` looks across them)."""

    STRICT: ClassVar[bool] = True  # from_dict refuses names it does not know (else it ignores them)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:  # an optional field left out
                continue
            try:
                setattr(self, f.name, _spec(f).check(value))
            except _Refused as exc:
                raise FieldError(_key(f), f"{_key(f)} {exc}") from None
            except FieldError as exc:  # inside a nested value
                raise FieldError(f"{_key(f)}.{exc.field}", f"{_key(f)}: {exc}") from None
        self.check()

    def check(self) -> None:
        """Checks across fields, after each field's own."""

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        """From wire names to values (a header without its op or type, or a nested object)."""
        known = {_key(f): f for f in dataclasses.fields(cls)}
        unknown = [name for name in values if name not in known]
        if unknown and cls.STRICT:
            name = str(unknown[0])[:60]
            raise FieldError(name, f"{name!r} is not a field of {cls.__name__}; its fields are {', '.join(known)}")
        for name, f in known.items():
            if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise FieldError(name, f"{name} is missing")
        return cls(**{f.name: values[name] for name, f in known.items() if name in values})

    def to_dict(self) -> dict[str, Any]:
        """Wire names to JSON values, leaving out the optional fields that are left out."""
        values = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _spec(f).array and not (value is None or (value == "" and f.default == "")):
                values[_key(f)] = _plain(value)
        return values


M = TypeVar("M", bound="Message")


@dataclass(kw_only=True, eq=False)
class Message(Checked):
    """A frame's content: the header names the message by KIND ("op" or "type") = NAME."""

    KIND: ClassVar[str] = "type"
    NAME: ClassVar[str] = ""

    @property
    def type(self) -> str:
        return self.NAME

    def to_frame(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {_key(f): getattr(self, f.name) for f in dataclasses.fields(self)
                  if _spec(f).array and getattr(self, f.name) is not None}
        return {self.KIND: self.NAME, **self.to_dict()}, arrays

    @classmethod
    def from_frame(cls: builtins.type[M], header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> M:
        if header.get(cls.KIND) != cls.NAME:
            raise FieldError(cls.KIND, f"expected {cls.KIND} {cls.NAME!r}, got {_show(header.get(cls.KIND))}")
        carried = {_key(f) for f in dataclasses.fields(cls) if _spec(f).array}
        for name in arrays:
            if name not in carried:
                raise FieldError(name, f"{cls.NAME} carries no array {name!r}")
        for name in header:
            if name in carried:
                raise FieldError(name, f"{name} must be sent as an array, not in the header")
        return cls.from_dict({**{k: v for k, v in header.items() if k != cls.KIND}, **arrays})


# -- the contract's values ------------------------------------------------------------------------------


T = TypeVar("T", bound=type)


def with_settings(settings: tuple[Setting, ...], *, optional: bool) -> Callable[[T], T]:
    """A field for each declared setting (common/settings.py), checked as declared, added to a class before
    @dataclass makes it: `optional` ones default to None (left out), the others to their declared default."""
    def add(cls: T) -> T:
        annotations = dict(cls.__dict__.get("__annotations__", {}))
        for setting in settings:
            kind = setting.kind.__name__
            annotations[setting.name] = f"{kind} | None" if optional or setting.default is None else kind
            setattr(cls, setting.name, wire(declared(setting), None if optional else setting.default))
        cls.__annotations__ = annotations
        return cls
    return add


@dataclass(kw_only=True)
@with_settings(EXTRACTION, optional=True)
class Settings(Checked):
    """How to extract the surface: a field for each `extraction` setting of common/settings.py (the core's
    ExtractionSettings, field for field). In a request each field may be left out: a reconstruction then takes
    the core's default (the threshold: the weights' own), a re-extraction the job's earlier value. A result
    carries every value it used."""

    if TYPE_CHECKING:  # the fields are the declarations' (with_settings): typed by them at run time only
        def __getattr__(self, name: str) -> Any: ...


SETTINGS = tuple(f.name for f in dataclasses.fields(Settings))


@dataclass(kw_only=True)
class WeightsEntry(Checked):
    """A weights file the backend offers (registry.WeightsInfo)."""

    name: str = wire(text())
    path: str = wire(text(MAX_TEXT))
    modality: str = wire(text())  # "" when the file is unusable
    arch: str = wire(text())
    threshold: float = wire(number(0.0, 1.0))
    card: dict[str, Any] = wire(json_object, factory=dict)  # the model card, as the file holds it
    error: str = wire(text(MAX_TEXT), "")  # why the file is unusable; "" when it is fine


def _scalars(value: Any) -> dict[str, Any]:
    values = json_object(value)
    if len(values) > 64 or not all(isinstance(k, str) and len(k) <= 100 and isinstance(v, (int, float, str, bool))
                                   for k, v in values.items()):
        raise _Refused("must hold at most 64 named numbers, strings or flags")
    return values


def input_warnings(stats: Mapping[str, Any]) -> list[str]:
    """What the person should know about the input a result came from, a line each: the command line, a batch
    and the add-on all say these (from a job's stats: Stats.to_dict() or the core's)."""
    warnings = []
    given = stats.get("input_points_given")
    if given is not None and given < FEW_POINTS:
        warnings.append(f"only {given:,} points: too few for the network to tell the shape (it learned from 300 to "
                        "20,000), so most of the mesh is its guess and may come in pieces; give it a cloud of "
                        f"{FEW_POINTS:,} points or more")
    if stats.get("trim_not_points"):
        warnings.append("Trim unseen applies to point clouds only: this mesh is left whole")
    if stats.get("trim_nothing_near"):
        warnings.append("Trim unseen left the mesh whole: no part of it lies near the points (these weights do not "
                        "fit the cloud); set Fit to points to On or choose other weights")
    groups = stats.get("input_point_groups")
    if groups is not None and groups > 1:
        warnings.append(f"the points form {groups} separate groups far apart, a scene or several objects: the "
                        "network reconstructs them as one shape, each at a fraction of the detail; crop the scan "
                        "to one object (or split the file)")
    return warnings


@dataclass(kw_only=True)
class Stats(Checked):
    """What a job measured: the core's extraction statistics and the backend's own. Statistics not named
    here (a newer core's) travel in `extra`; on the wire they all sit side by side."""

    faces: int = wire(COUNT)
    vertices: int = wire(COUNT)
    points_evaluated: int = wire(COUNT)  # network evaluations this job made
    points_reused: int = wire(COUNT)  # values an earlier extraction of the same shape had made
    points_total: int = wire(COUNT)
    device: str = wire(text())  # where the network ran
    seconds_backend: float = wire(SECONDS)  # from the job's start to its result
    seconds_encode: float = wire(SECONDS, 0.0)
    seconds_evaluate: float = wire(SECONDS, 0.0)
    seconds_meshing: float = wire(SECONDS, 0.0)
    seconds_total: float = wire(SECONDS, 0.0)  # the extraction's
    input_points_dropped: int = wire(COUNT, 0)  # points with NaN or infinite coordinates left out
    input_points_given: int | None = wire(COUNT, None)  # point clouds only
    input_points_used: int | None = wire(COUNT, None)
    model_cached: bool | None = wire(flag, None)  # reconstructions only: the network was loaded already
    seconds_load: float | None = wire(SECONDS, None)
    seconds_simplify: float | None = wire(SECONDS, None)  # the optional steps, when they ran
    seconds_refine: float | None = wire(SECONDS, None)
    refine_passes: int | None = wire(COUNT, None)
    seconds_normals: float | None = wire(SECONDS, None)
    seconds_fit: float | None = wire(SECONDS, None)  # reconstructions whose features were fitted to the points
    fit_steps: int | None = wire(COUNT, None)
    fit_points: int | None = wire(COUNT, None)  # observed points the fit drew from
    ensemble: int = wire(COUNT, 1)  # shifted encodings the field averaged (occnet/shifts.py)
    input_points_outliers: int | None = wire(COUNT, None)  # stray points left out (preprocess.without_outliers)
    input_point_groups: int | None = wire(COUNT, None)  # 2 or more: a scene or several objects (preprocess)
    pieces_unsupported: int | None = wire(COUNT, None)  # pieces of a fitted mesh no point came near, dropped
    faces_unseen_trimmed: int | None = wire(COUNT, None)  # faces trim_unseen removed (support.py), when asked
    trim_not_points: bool | None = wire(flag, None)  # asked of an input that is not a point cloud: not trimmed
    trim_nothing_near: bool | None = wire(flag, None)  # no face lay near the points: not trimmed
    seconds_trim: float | None = wire(SECONDS, None)
    # Reconstructions only: the weights file's name (a dense cloud's may be finer); as long as a path may be.
    weights: str = wire(text(MAX_TEXT), "")
    extra: dict[str, Any] = wire(_scalars, factory=dict)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Stats:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in values.items() if k in known},
                   extra={k: v for k, v in values.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        return {**values.pop("extra", {}), **values}


# -- requests (client -> server) ------------------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class Request(Message):
    KIND: ClassVar[str] = "op"
    id: int | str | None = wire(request_id, None)  # echoed in the answer


def _same_version(value: Any) -> int:
    version = integer(0, 2 ** 31)(value)
    if version != PROTOCOL_VERSION:
        raise _Refused(f"is {version}, but this side speaks protocol {PROTOCOL_VERSION}; update the extension and "
                       "the backend together")
    return version


@dataclass(kw_only=True, eq=False)
class Handshake(Request):
    """Every connection's first request: the server answers HandshakeReply, or an Error naming the version."""

    NAME = "handshake"
    STRICT = False  # a newer client's extra fields must not hide the version it speaks
    protocol_version: int = wire(_same_version)
    client: str = wire(text(), "")


@dataclass(kw_only=True, eq=False)
@with_settings(REQUEST, optional=False)
class Reconstruct(Request, Settings):
    """A reconstruction of `input` (answered Accepted, then the job's events), with the `request` settings of
    common/settings.py (device, input_points, fit: each sent, its default when not given). With `faces` (voxel
    weights only) `input` is a mesh's vertices, voxelised by the backend."""

    NAME = "reconstruct"
    modality: str = wire(one_of(MODALITIES))
    input: np.ndarray = wire(array(*DTYPES), array=True)
    faces: np.ndarray | None = wire(array("int32", "int64", shape=(None, 3)), None, array=True)
    # A name, or (local backends only) a path; None: the first (registry.finer_weights may pick a finer bundled one)
    weights: str | None = wire(text(MAX_TEXT), None)
    arch: str | None = wire(text(), None)  # for original .pt checkpoints whose architecture is not told
    # One sRGB red, green, blue per point of a cloud, vertex of a mesh to voxelise or cell of a voxel grid (C order):
    # bytes, or floats in [0, 1].
    point_colours: np.ndarray | None = wire(array("uint8", "float32", shape=(None, 3)), None, array=True)

    def check(self) -> None:
        if self.faces is not None:
            self._check_mesh(self.input, self.faces)
        else:
            self._check_source(self.input)
        if self.point_colours is not None:
            self._check_colours(self.point_colours)

    def _check_colours(self, colours: np.ndarray) -> None:
        if self.modality == "image":
            raise FieldError("point_colours", "colours belong to a point cloud's points, a mesh's vertices or a "
                                              "voxel grid's cells, not to image input")
        if self.modality == "voxels" and self.faces is None:  # a grid: one per cell, in C order
            if len(colours) != self.input.size:
                raise FieldError("point_colours", f"'point_colours' of a voxel grid must be one per cell: "
                                                  f"{len(colours):,} for {self.input.size:,} cells")
        elif len(colours) != len(self.input):
            raise FieldError("point_colours", f"'point_colours' must be one per point: {len(colours):,} for "
                                              f"{len(self.input):,} points")
        if colours.dtype.kind == "f" and not (np.isfinite(colours).all() and colours.min() >= 0
                                              and colours.max() <= 1):
            raise FieldError("point_colours", "float 'point_colours' must lie in [0, 1] (send bytes as uint8)")

    def _check_mesh(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        if self.modality != "voxels":
            raise FieldError("faces", f"a mesh ('faces') is voxelised for voxel weights only, not for {self.modality}")
        if vertices.ndim != 2 or vertices.shape[1] != 3 or vertices.dtype.kind != "f":
            raise FieldError("input", f"a mesh's 'input' must be N x 3 float vertices, got {vertices.shape} "
                                      f"{vertices.dtype}")
        if len(vertices) == 0 or len(faces) == 0:
            raise FieldError("faces" if len(vertices) else "input", "the mesh to voxelise is empty")
        if len(vertices) > MAX_POINTS or len(faces) > MAX_FACES:
            raise FieldError("faces", f"the mesh is over the {MAX_FACES:,} faces accepted; decimate it first")
        if not np.isfinite(vertices).all():
            raise FieldError("input", "the mesh's vertices hold NaN or infinite values; fix them first")
        if faces.min() < 0 or faces.max() >= len(vertices):
            raise FieldError("faces", f"face indices run outside the {len(vertices)} vertices")

    def _check_source(self, source: np.ndarray) -> None:
        modality = self.modality
        if source.size == 0:
            raise FieldError("input", f"the {modality} array 'input' is empty")
        if modality == "pointcloud" and (source.ndim != 2 or source.shape[1] != 3):
            # Before counting points: a 3 x N array read as 3 points had been told "0 of 3 points with NaN".
            raise FieldError("input", f"a point cloud 'input' must be N x 3, one point a row, got {source.shape}"
                                      + ("; transpose it" if source.ndim == 2 and source.shape[0] == 3 else ""))
        if modality == "pointcloud" and source.dtype.kind == "f":
            # Non-finite points are dropped and counted by the core's preprocessing (the one rule for them);
            # refused here only when too few usable ones would remain.
            usable = int(np.isfinite(source).all(axis=1).sum())
            if usable < MIN_POINTS:
                raise FieldError("input", f"'input' has {len(source) - usable} of {len(source)} points with NaN or "
                                          f"infinite coordinates and fewer than {MIN_POINTS} usable ones; fix the "
                                          "source first")
        elif source.dtype.kind == "f" and not np.isfinite(source).all():
            bad = int((~np.isfinite(source)).any(axis=-1).sum()) if source.ndim > 1 else \
                int((~np.isfinite(source)).sum())
            raise FieldError("input", f"'input' holds NaN or infinite values ({bad} of {len(source)} rows); "
                                      "remove them from the source first")
        if modality == "pointcloud":
            if source.ndim != 2 or source.shape[1] != 3:
                raise FieldError("input", f"a point cloud 'input' must be N x 3, got {source.shape}")
            if len(source) > MAX_POINTS:
                raise FieldError("input", f"{len(source):,} points is over the {MAX_POINTS:,} accepted; subsample")
        elif modality == "image":
            if source.ndim != 3 or source.shape[2] not in (3, 4):
                raise FieldError("input", f"an image 'input' must be H x W x 3 or 4, got {source.shape}")
            if max(source.shape[:2]) > MAX_IMAGE_SIDE:
                raise FieldError("input", f"the image is {source.shape[1]}x{source.shape[0]}; the largest accepted "
                                          f"is {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} (the network sees 224x224: scale "
                                          "it down)")
        elif source.shape != (32, 32, 32):
            raise FieldError("input", f"a voxel 'input' must be 32 x 32 x 32, got {source.shape}")


@dataclass(kw_only=True, eq=False)
class ReExtract(Request, Settings):
    """Extract a finished job's shape again, with the settings given here in place of its own (answered
    Accepted, then the new job's events)."""

    NAME = "re_extract"
    job: str = wire(JOB)


@dataclass(kw_only=True, eq=False)
class Cancel(Request):
    """Stop a queued or running job (answered CancelReply; the job then sends Cancelled)."""

    NAME = "cancel"
    job: str = wire(JOB)


@dataclass(kw_only=True, eq=False)
class ListWeights(Request):
    """The weights the backend offers (answered ListWeightsReply)."""

    NAME = "list_weights"


@dataclass(kw_only=True, eq=False)
class Shutdown(Request):
    """Ask the backend to stop serving (answered ShutdownReply)."""

    NAME = "shutdown"


# -- answers and events (server -> client) ---------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class Reply(Message):
    """The answer to one request (its id): which class, the caller knows from what it asked."""

    NAME = "reply"
    id: int | str | None = wire(request_id, None)


@dataclass(kw_only=True, eq=False)
class HandshakeReply(Reply):
    """What the backend is and can do."""

    STRICT = False  # a newer backend may say more
    protocol_version: int = wire(integer(0, 2 ** 31))
    backend_version: str = wire(text())
    torch_version: str = wire(text())
    python: str = wire(text())
    executable: str = wire(text(MAX_TEXT))
    devices: list[str] = wire(list_of(text()))  # "cpu", "cuda:0 (name)", "mps (Apple GPU)"
    cuda: bool = wire(flag)
    cpu_threads: int = wire(integer(1, 100_000))
    auto_device: str = wire(text())  # where device "auto" runs
    weights: list[WeightsEntry] = wire(list_of(nested(WeightsEntry)))


@dataclass(kw_only=True, eq=False)
class CancelReply(Reply):
    found: bool = wire(flag)  # False: no such job queued or running


@dataclass(kw_only=True, eq=False)
class ListWeightsReply(Reply):
    weights: list[WeightsEntry] = wire(list_of(nested(WeightsEntry)))


@dataclass(kw_only=True, eq=False)
class ShutdownReply(Reply):
    pass


@dataclass(kw_only=True, eq=False)
class Accepted(Message):
    """A reconstruction or re-extraction was queued as `job`."""

    NAME = "accepted"
    id: int | str | None = wire(request_id, None)
    job: str = wire(JOB)


@dataclass(kw_only=True, eq=False)
class Progress(Message):
    NAME = "progress"
    job: str = wire(JOB)
    stage: str = wire(text())  # loading, encoding, evaluating, meshing, ..., done
    fraction: float = wire(number(0.0, 1.0))  # of the stage
    device: str = wire(text(), "")  # where the network runs, once its model is loaded


# The stages a job's Progress passes through, in order, each with about the share of the job it takes (a stage's
# own fraction restarts at 0): what a bar over the whole job shows, forward only. Optional stages are skipped.
JOB_STAGES = (("loading", 0.05), ("encoding", 0.05), ("fitting", 0.15), ("evaluating", 0.55), ("meshing", 0.05),
              ("simplifying", 0.03), ("refining", 0.05), ("projecting", 0.02), ("normals", 0.02),
              ("colouring", 0.03), ("done", 0.0))


def job_fraction(stage: str, fraction: float) -> float | None:
    """How far a job is, 0 to 1, at `fraction` of `stage` (None for a stage not in JOB_STAGES)."""
    start = 0.0
    for name, share in JOB_STAGES:
        if name == stage:
            return 1.0 if name == "done" else min(1.0, start + share * min(max(fraction, 0.0), 1.0))
        start += share
    return None


@dataclass(kw_only=True, eq=False)
class Result(Message):
    """A job's mesh in the source's frame, what it measured and the settings it used."""

    NAME = "result"
    job: str = wire(JOB)  # also the id to re-extract this shape from
    vertices: np.ndarray = wire(array("float32", shape=(None, 3)), array=True)
    faces: np.ndarray = wire(array("int32", shape=(None, 3)), array=True)
    normals: np.ndarray | None = wire(array("float32", shape=(None, 3)), None, array=True)
    # sRGB red, green, blue per vertex, from the input's colours (when it had them and settings.colours was on).
    colours: np.ndarray | None = wire(array("uint8", shape=(None, 3)), None, array=True)
    stats: Stats = wire(nested(Stats))
    settings: Settings = wire(nested(Settings))
    loc: list[float] = wire(list_of(number(-math.inf), length=3))  # the normalisation: source = unit * scale + loc
    scale: float = wire(number(0.0, strict=True))

    def check(self) -> None:
        if self.normals is not None and self.normals.shape != self.vertices.shape:
            raise FieldError("normals", f"normals must be one per vertex, got {len(self.normals)} for "
                                        f"{len(self.vertices)} vertices")
        if self.colours is not None and len(self.colours) != len(self.vertices):
            raise FieldError("colours", f"colours must be one per vertex, got {len(self.colours)} for "
                                        f"{len(self.vertices)} vertices")


@dataclass(kw_only=True, eq=False)
class Error(Message):
    """A refused request (its id) or a failed job (its job); `field` names what to fix, "" when nothing
    in the request is to blame."""

    NAME = "error"
    id: int | str | None = wire(request_id, None)
    job: str = wire(text(), "")
    field: str = wire(clipped(200), "")  # clipped, not refused: it may name a field of the request refused
    message: str = wire(clipped(1 << 16))


@dataclass(kw_only=True, eq=False)
class Cancelled(Message):
    NAME = "cancelled"
    job: str = wire(JOB)
    during: str = wire(one_of(("queued", "running")), key="while")  # where the job was when it stopped


REQUESTS: dict[str, type[Request]] = {cls.NAME: cls for cls in (Handshake, Reconstruct, ReExtract, Cancel,
                                                                  ListWeights, Shutdown)}
EVENTS: dict[str, type[Message]] = {cls.NAME: cls for cls in (Accepted, Progress, Result, Error, Cancelled)}


# What a request's frame may carry, by its kind, checked before any payload byte is read (issue 24: every frame
# could declare 1 GiB, read whole before a check). A Reconstruct carries its input at most as large as its
# checks above accept, in the widest dtype; a request without arrays a little (its check names what it has).
_WIDEST = max(dtype.itemsize for dtype in DTYPES.values())
_COLOURS = MAX_POINTS * 3 * 4  # point_colours, float32 at widest, one a point or vertex
_CELLS = 32 ** 3  # a voxel grid's, with a colour each at most
NO_ARRAYS_PAYLOAD = 64 << 10
RECONSTRUCT_PAYLOAD = {"pointcloud": MAX_POINTS * 3 * _WIDEST + _COLOURS, "image": MAX_IMAGE_SIDE ** 2 * 4 * _WIDEST,
                       "voxels": _CELLS * _WIDEST + _CELLS * 3 * 4,
                       "mesh": (MAX_POINTS + MAX_FACES) * 3 * _WIDEST + _COLOURS}


def request_payload_bound(header: Mapping[str, Any] | None) -> tuple[int, str]:
    """The most payload bytes a request with this header may carry, and what it is (protocol.read_frame's bound)."""
    op = header.get("op") if header is not None else None
    if op != Reconstruct.NAME or header is None:
        return NO_ARRAYS_PAYLOAD, f"a {_show(op)} request" if isinstance(op, str) else "a request"
    listing = header.get("arrays")
    mesh = isinstance(listing, list) and any(isinstance(e, list) and e[:1] == ["faces"] for e in listing)
    kind = "mesh" if mesh else header.get("modality")
    if kind not in RECONSTRUCT_PAYLOAD:
        return NO_ARRAYS_PAYLOAD, "a reconstruct request of no known modality"
    return RECONSTRUCT_PAYLOAD[kind], f"a {kind} reconstruct request"


def read_request(frame: Frame) -> Request:
    """The request a frame holds, by its op; FieldError names what is wrong with it."""
    return _read(frame, REQUESTS, Request.KIND, "operation")


def read_event(frame: Frame) -> Message:
    """The event (or accepted, or error) a frame holds, by its type; FieldError names what is wrong with it.
    A reply is read by the class its caller expects, not here."""
    return _read(frame, EVENTS, Message.KIND, "message type")


def _read(frame: Frame, table: Mapping[str, type[M]], key: str, what: str) -> M:
    name = frame.header.get(key)
    cls = table.get(name) if isinstance(name, str) else None
    if cls is None:
        raise FieldError(key, f"unknown {what} {_show(name)}; known: {', '.join(table)}")
    return cls.from_frame(frame.header, frame.arrays)
