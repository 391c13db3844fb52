"""Which way a network's shapes stand: each weights file's frame, and the turn from the project's frame.

Every input the project hands a network, and every mesh it returns, is in one frame: up +y, front -z
(the procedural training shapes and ShapeNetCore v2; the add-on turns Blender's z-up, -y-front scene into
it). Weights trained on other data may stand otherwise: the authors' released ShapeNet weights were
trained on ShapeNetCore v1, whose README says its models are "pre-aligned so that the up direction is
the +Y axis, and the front is the +X axis". A weights file records its frame in its model card
(`"frame": {"up": "+y", "front": "+x"}`); the reconstructor turns inputs into that frame and the mesh
back, so a chair modelled facing the front reaches every network facing that network's front.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..common.errors import CheckpointError

if TYPE_CHECKING:
    from .preprocess import PreparedInput

PROJECT_FRAME = {"up": "+y", "front": "-z"}
SHAPENET_V1_FRAME = {"up": "+y", "front": "+x"}  # the released ONet and ConvONet ShapeNet weights
AXES = {"+x": (0, 1), "-x": (0, -1), "+y": (1, 1), "-y": (1, -1), "+z": (2, 1), "-z": (2, -1)}


def _unit(name: Any, role: str) -> np.ndarray:
    if name not in AXES:
        raise CheckpointError(f"model card frame: {role} must be one of {', '.join(AXES)}, got {name!r}")
    axis, sign = AXES[name]
    vector = np.zeros(3)
    vector[axis] = sign
    return vector


def rotation(frame: Any) -> np.ndarray:
    """The rotation R (3, 3) taking the project's frame into `frame` (p_network = R @ p_project): a
    signed permutation; the identity for no frame or the project's own."""
    if frame is None:
        return np.eye(3)
    if not isinstance(frame, dict):
        raise CheckpointError(f"model card frame must be {{'up': ..., 'front': ...}}, got {frame!r}")
    up, front = _unit(frame.get("up"), "up"), _unit(frame.get("front"), "front")
    if abs(float(up @ front)) > 0:
        raise CheckpointError(f"model card frame: up {frame.get('up')} and front {frame.get('front')} must be "
                         "different axes")
    # The project's x, y, z are (up x back), up, back with back = -front (right-handed).
    return np.stack([np.cross(up, -front), up, -front], axis=1)


def orient(prepared: PreparedInput, frame: Any) -> PreparedInput:
    """The input turned into the network's frame; its to_source turns meshes back. Images are views
    and stay as they are (only the mesh is turned)."""
    turn = rotation(frame)
    if np.array_equal(turn, np.eye(3)):
        return prepared
    array, observed = prepared.array, prepared.observed
    if prepared.modality == "pointcloud":
        array = (array @ turn.T).astype(np.float32)
        observed = None if observed is None else (observed @ turn.T).astype(np.float32)
    elif prepared.modality == "voxels":
        array = _turn_grid(array, turn)
    return replace(prepared, array=array, rotation=turn, observed=observed)


def _turn_grid(grid: np.ndarray, turn: np.ndarray) -> np.ndarray:
    """A cubic grid indexed [x, y, z] turned by a signed permutation (cells are symmetric about the
    centre, so a flip is exact)."""
    source_axis = np.abs(turn).argmax(axis=1)  # network axis a reads the project's axis source_axis[a]
    turned = np.transpose(grid, source_axis)
    flips = tuple(a for a in range(3) if turn[a, source_axis[a]] < 0)
    return np.ascontiguousarray(np.flip(turned, axis=flips) if flips else turned)


def frame_of(turn: np.ndarray) -> dict[str, str]:
    """The frame whose rotation() is `turn` (a signed permutation)."""
    names = {value: name for name, value in AXES.items()}

    def name(vector: np.ndarray) -> str:
        axis = int(np.abs(vector).argmax())
        return names[(axis, int(np.sign(vector[axis])))]

    return {"up": name(turn @ [0.0, 1.0, 0.0]), "front": name(turn @ [0.0, 0.0, -1.0])}


def relative_frame(data_frame: Any, weights_frame: Any) -> dict[str, str]:
    """The frame to give weights standing in `weights_frame` so that inputs standing in `data_frame` (not
    the project's) reach them right: the rotation from the data's frame to the weights'."""
    return frame_of(rotation(weights_frame) @ rotation(data_frame).T)
