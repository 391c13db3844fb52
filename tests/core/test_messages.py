"""The Blender-backend messages (messages.py), without a backend process: every message survives a frame, every
field check refuses a bad value naming its field, the tables cover every class, and Blender can import it."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blender_occnet.common import messages as m
from blender_occnet.common import protocol

REPO = Path(__file__).resolve().parents[2]

WEIGHTS = m.WeightsEntry(name="pc", path="/w/pc.safetensors", modality="pointcloud", arch="onet-pointcloud",
                         threshold=0.5, card={"summary": "test", "history": [{"step": 1}]})
STATS = m.Stats(faces=12, vertices=8, points_evaluated=35937, points_reused=0, points_total=35937, device="cpu",
                seconds_backend=0.25, model_cached=False, seconds_load=0.1, input_points_given=500,
                input_points_used=500, extra={"seconds_write": 0.01})
CLOUD = np.random.default_rng(0).random((100, 3)).astype(np.float32)

SAMPLES: list[m.Message] = [
    m.Handshake(id=1, protocol_version=m.PROTOCOL_VERSION, client="blender-occnet"),
    m.Reconstruct(id=2, modality="pointcloud", input=CLOUD, weights="pc", device="cuda:1", input_points=50,
                  resolution=256, threshold=0.3, refine_steps=30, refine_method="optimise", simplify_faces=5000,
                  normals=True, seed=7),
    m.Reconstruct(id="two", modality="voxels", input=CLOUD, faces=np.array([[0, 1, 2]], np.int32)),
    m.ReExtract(id=3, job="job-1", threshold=0.4, refine_method="project"),
    m.Cancel(id=4, job="job-1"),
    m.ListWeights(id=5),
    m.Shutdown(id=6),
    m.HandshakeReply(id=1, protocol_version=m.PROTOCOL_VERSION, backend_version="0.1.0", torch_version="2.13.0",
                     python="3.11.9", executable="/usr/bin/python3", devices=["cpu", "cuda:0 (H200)"], cuda=True,
                     cpu_threads=7, auto_device="cuda:0", weights=[WEIGHTS]),
    m.CancelReply(id=4, found=True),
    m.ListWeightsReply(id=5, weights=[WEIGHTS, m.WeightsEntry(name="bad", path="/w/bad.safetensors", modality="",
                                                              arch="", threshold=0.0, error="unusable: no header")]),
    m.ShutdownReply(id=6),
    m.Accepted(id=2, job="job-1"),
    m.Progress(job="job-1", stage="evaluating", fraction=0.5, device="cpu"),
    m.Progress(job="job-1", stage="loading", fraction=0.0),
    m.Result(job="job-1", vertices=CLOUD[:3], faces=np.array([[0, 1, 2]], np.int32), normals=CLOUD[3:6],
             stats=STATS, settings=m.Settings(threshold=0.5, resolution=128, refine_steps=0, refine_method="project",
                                              simplify_faces=0, normals=True, seed=0),
             loc=[0.5, -1.0, 2.0], scale=2.5),
    m.Error(id=2, field="weights", message="no weights named 'x'"),
    m.Error(job="job-1", message="internal error in the backend"),
    m.Cancelled(job="job-1", during="running"),
]


def through_the_wire(message: m.Message) -> m.Message:
    """`message` encoded, read back as a frame, and made again: by the tables, or (a reply) by its class."""
    frame = protocol.read_frame(io.BytesIO(protocol.encode(*message.to_frame())))
    if isinstance(message, m.Request):
        return m.read_request(frame)
    if isinstance(message, m.Reply):
        return type(message).from_frame(frame.header, frame.arrays)
    return m.read_event(frame)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return bool(a == b) and type(a) is type(b)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda message: type(message).__name__)
def test_every_message_survives_the_wire(message: m.Message) -> None:
    again = through_the_wire(message)
    assert same(message, again), (message, again)


def test_the_samples_cover_every_message_and_the_tables_every_class() -> None:
    def concrete(cls: type) -> set[type]:
        found = set()
        for sub in cls.__subclasses__():
            found |= {sub} | concrete(sub)
        return found

    every = {cls for cls in concrete(m.Message) if cls not in (m.Request, m.Reply)}
    assert {type(s) for s in SAMPLES} == every
    requests = {cls for cls in every if issubclass(cls, m.Request)}
    replies = {cls for cls in every if issubclass(cls, m.Reply)}
    assert set(m.REQUESTS.values()) == requests and all(m.REQUESTS[cls.NAME] is cls for cls in requests)
    assert set(m.EVENTS.values()) == every - requests - replies
    assert all(m.EVENTS[cls.NAME] is cls for cls in m.EVENTS.values())


def test_the_wire_names_are_todays() -> None:
    """What went over the wire before the messages were classes still does (a backend and an add-on of the
    same protocol version understand each other)."""
    header, arrays = SAMPLES[1].to_frame()
    assert header["op"] == "reconstruct" and set(arrays) == {"input"} and header["resolution"] == 256
    assert m.Cancelled(job="j", during="queued").to_frame()[0] == {"type": "cancelled", "job": "j", "while": "queued"}
    assert "device" not in m.Progress(job="j", stage="loading", fraction=0.0).to_frame()[0]  # until it is known
    assert m.Error(id=1, message="x").to_frame()[0] == {"type": "error", "id": 1, "message": "x"}
    stats = m.Stats.from_dict({**STATS.to_dict(), "seconds_new": 1.5})
    assert stats.extra == {"seconds_write": 0.01, "seconds_new": 1.5} and stats.to_dict()["seconds_new"] == 1.5


GOOD = {"modality": "voxels", "input": np.zeros((32, 32, 32), np.uint8)}
MESH = {"modality": "voxels", "input": CLOUD[:4].copy(), "faces": np.array([[0, 1, 2], [0, 2, 3]], np.int32)}


@pytest.mark.parametrize("cls,values,field", [
    (m.Reconstruct, {**GOOD, "threshold": 1.5}, "threshold"),
    (m.Reconstruct, {**GOOD, "threshold": 0}, "threshold"),
    (m.Reconstruct, {**GOOD, "threshold": "0.5"}, "threshold"),
    (m.Reconstruct, {**GOOD, "resolution": 100}, "resolution"),
    (m.Reconstruct, {**GOOD, "resolution": 64.0}, "resolution"),
    (m.Reconstruct, {**GOOD, "resolution": True}, "resolution"),
    (m.Reconstruct, {**GOOD, "refine_steps": 10 ** 9}, "refine_steps"),
    (m.Reconstruct, {**GOOD, "refine_steps": -1}, "refine_steps"),
    (m.Reconstruct, {**GOOD, "refine_method": "adam"}, "refine_method"),
    (m.Reconstruct, {**GOOD, "simplify_faces": 2}, "simplify_faces"),
    (m.Reconstruct, {**GOOD, "simplify_faces": 10 ** 12}, "simplify_faces"),
    (m.Reconstruct, {**GOOD, "normals": 1}, "normals"),
    (m.Reconstruct, {**GOOD, "seed": 2 ** 64}, "seed"),
    (m.Reconstruct, {**GOOD, "device": "cudaX"}, "device"),
    (m.Reconstruct, {**GOOD, "device": "tpu"}, "device"),
    (m.Reconstruct, {**GOOD, "weights": 3}, "weights"),
    (m.Reconstruct, {**GOOD, "weights": "w" * 5000}, "weights"),
    (m.Reconstruct, {**GOOD, "arch": ["x"]}, "arch"),
    (m.Reconstruct, {**GOOD, "input_points": m.MAX_POINTS + 1}, "input_points"),
    (m.Reconstruct, {**GOOD, "id": 2 ** 60}, "id"),
    (m.Reconstruct, {**GOOD, "id": [1]}, "id"),
    (m.Reconstruct, {**GOOD, "modality": "meshes"}, "modality"),
    (m.Reconstruct, {**GOOD, "colour": "red"}, "colour"),
    (m.Reconstruct, {"modality": "voxels"}, "input"),
    (m.Reconstruct, {**GOOD, "input": [[0.0] * 3] * 10}, "input"),
    (m.Reconstruct, {**GOOD, "input": np.zeros((64, 64, 64), np.uint8)}, "input"),
    (m.Reconstruct, {**GOOD, "input": np.zeros((32, 32, 32), np.float16)}, "input"),
    (m.Reconstruct, {**GOOD, "input": np.full((32, 32, 32), np.nan, np.float32)}, "input"),
    (m.Reconstruct, {"modality": "pointcloud", "input": np.zeros((0, 3), np.float32)}, "input"),
    (m.Reconstruct, {"modality": "pointcloud", "input": np.full((100, 3), np.nan, np.float32)}, "input"),
    (m.Reconstruct, {"modality": "pointcloud", "input": np.zeros((100, 2), np.float32)}, "input"),
    (m.Reconstruct, {"modality": "image", "input": np.zeros((4000, 4000, 3), np.uint8)}, "input"),
    (m.Reconstruct, {"modality": "image", "input": np.zeros((64, 64, 2), np.uint8)}, "input"),
    (m.Reconstruct, {**MESH, "modality": "pointcloud"}, "faces"),
    (m.Reconstruct, {**MESH, "faces": np.array([[0, 1, 8]], np.int32)}, "faces"),
    (m.Reconstruct, {**MESH, "faces": np.zeros((0, 3), np.int32)}, "faces"),
    (m.Reconstruct, {**MESH, "faces": np.zeros((2, 3), np.float32)}, "faces"),
    (m.Reconstruct, {**MESH, "faces": np.zeros((2, 4), np.int32)}, "faces"),
    (m.Reconstruct, {**MESH, "input": np.full((4, 3), np.nan, np.float32)}, "input"),
    (m.Reconstruct, {**MESH, "input": np.zeros((4, 3), np.int32)}, "input"),
    (m.ReExtract, {"job": "job-1", "resolution": 48}, "resolution"),
    (m.ReExtract, {"threshold": 0.3}, "job"),
    (m.ReExtract, {"job": ""}, "job"),
    (m.Cancel, {"job": 5}, "job"),
    (m.Handshake, {"protocol_version": m.PROTOCOL_VERSION + 1}, "protocol_version"),
    (m.Handshake, {"protocol_version": "1"}, "protocol_version"),
    (m.Handshake, {}, "protocol_version"),
    (m.Progress, {"job": "j", "stage": "meshing", "fraction": 1.5}, "fraction"),
    (m.Progress, {"job": "j", "stage": "meshing", "fraction": float("nan")}, "fraction"),
    (m.Cancelled, {"job": "j", "while": "later"}, "while"),
    (m.Error, {"message": 5}, "message"),
    (m.CancelReply, {"found": "yes"}, "found"),
    (m.HandshakeReply, {**SAMPLES[7].to_frame()[0], "devices": "cpu"}, "devices"),
    (m.HandshakeReply, {**SAMPLES[7].to_frame()[0], "weights": [{"name": "x"}]}, "weights.0.path"),
    (m.Result, {**SAMPLES[14].to_frame()[0], **SAMPLES[14].to_frame()[1],
                "vertices": CLOUD[:3].astype(np.float64)}, "vertices"),
    (m.Result, {**SAMPLES[14].to_frame()[0], **SAMPLES[14].to_frame()[1], "faces": np.zeros((1, 4), np.int32)},
     "faces"),
    (m.Result, {**SAMPLES[14].to_frame()[0], **SAMPLES[14].to_frame()[1], "normals": CLOUD[:2]}, "normals"),
    (m.Result, {**SAMPLES[14].to_frame()[0], **SAMPLES[14].to_frame()[1], "loc": [0, 0]}, "loc"),
    (m.Result, {**SAMPLES[14].to_frame()[0], **SAMPLES[14].to_frame()[1], "scale": 0}, "scale"),
    (m.Result, {**SAMPLES[14].to_frame()[0], **SAMPLES[14].to_frame()[1],
                "stats": {**STATS.to_dict(), "faces": -1}}, "stats.faces"),
    (m.Result, {**SAMPLES[14].to_frame()[0], **SAMPLES[14].to_frame()[1], "settings": {"threshold": 2}},
     "settings.threshold"),
])
def test_each_check_refuses_a_bad_value_naming_its_field(cls: type[m.Message], values: dict[str, Any],
                                                         field: str) -> None:
    values = {k: v for k, v in values.items() if k not in ("op", "type")}
    with pytest.raises(m.FieldError) as caught:
        cls.from_dict(values)
    assert caught.value.field == field, str(caught.value)


def test_frames_are_refused_where_they_break_the_contract() -> None:
    def frame(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> protocol.Frame:
        return protocol.read_frame(io.BytesIO(protocol.encode(header, arrays)))

    for header, field in (({"op": "delete_everything"}, "op"), ({"op": 3}, "op"), ({}, "op"),
                          ({"op": "reconstruct", "modality": "voxels", "input": [1]}, "input")):
        with pytest.raises(m.FieldError) as caught:
            m.read_request(frame(header))
        assert caught.value.field == field
    with pytest.raises(m.FieldError, match="carries no array 'extra'"):
        m.read_request(frame({"op": "reconstruct", "modality": "voxels"}, {"input": GOOD["input"], "extra": CLOUD}))
    with pytest.raises(m.FieldError, match="expected type 'reply'"):
        m.CancelReply.from_frame({"type": "accepted", "id": 1, "job": "j"}, {})
    with pytest.raises(m.FieldError) as caught:
        m.read_event(frame({"type": "reply", "id": 1}))
    assert caught.value.field == "type"
    # A newer side may add fields to the handshake without hiding its version.
    assert m.read_request(frame({"op": "handshake", "protocol_version": m.PROTOCOL_VERSION, "later": 1})).id is None


def test_settings_are_the_cores_extraction_settings() -> None:
    """Each Settings field is an ExtractionSettings field of the same name (the backend maps one onto the other)."""
    from blender_occnet.occnet.generation import ExtractionSettings

    assert set(m.SETTINGS) <= {f.name for f in dataclasses.fields(ExtractionSettings)}


def test_messages_import_without_torch_or_bpy() -> None:
    code = ("import sys; sys.modules['torch'] = None; sys.modules['bpy'] = None\n"
            "import blender_occnet.common.messages as m\n"
            "from blender_occnet.common.settings import SETTINGS\n"
            "assert 'torch' not in [n for n in sys.modules if sys.modules[n] is not None]\n"
            "print(SETTINGS['resolution'].values)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip().startswith("(32, 64"), result.stderr


def test_a_transposed_cloud_is_told_to_be_n_by_3_not_counted_as_three_points() -> None:
    """Issue 24 item 10: a 3 x N array was answered '0 of 3 points with NaN or infinite coordinates'."""
    with pytest.raises(m.FieldError, match=r"must be N x 3, one point a row, got \(3, 1000\); transpose it") as caught:
        m.Reconstruct.from_dict({"modality": "pointcloud", "input": CLOUD[:, :3].repeat(10, axis=0).T.copy()})
    assert caught.value.field == "input" and "NaN" not in str(caught.value)


def test_the_largest_request_each_check_accepts_fits_its_payload_bound() -> None:
    """The server refuses a frame declaring more than its kind may carry (issue 24 item 5); the bound must hold the
    largest request the checks accept: 5M float64 points with their float32 colours, a mesh of 5M vertices and
    faces with colours, a 2048-px RGBA float64 image, a float64 voxel grid."""
    largest = {"pointcloud": m.MAX_POINTS * 3 * (8 + 4), "image": m.MAX_IMAGE_SIDE ** 2 * 4 * 8, "voxels": 32 ** 3 * 8,
               "mesh": (m.MAX_POINTS + m.MAX_FACES) * 3 * 8 + m.MAX_POINTS * 3 * 4}
    for kind, size in largest.items():
        header = {"op": "reconstruct", "modality": "voxels" if kind == "mesh" else kind,
                  "arrays": [["input", "float64", [1, 3]]] + ([["faces", "int64", [1, 3]]] if kind == "mesh" else [])}
        assert m.request_payload_bound(header)[0] >= size, kind
    assert m.request_payload_bound({"op": "handshake"})[0] == m.request_payload_bound(None)[0] == 64 << 10
