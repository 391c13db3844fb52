"""Each weights file's frame: inputs turned into it and meshes back, with hand-set networks whose output
is known exactly, so a wrong turn or a mirror shows as a shape in the wrong place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blender_occnet.common.errors import CheckpointError
from blender_occnet.occnet.checkpoints import Weights, convert_checkpoint, load_weights
from blender_occnet.occnet.frames import PROJECT_FRAME, SHAPENET_V1_FRAME, rotation
from blender_occnet.occnet.generation import ExtractionSettings, Reconstructor
from blender_occnet.occnet.model import Network
from blender_occnet.occnet.preprocess import prepare_pointcloud, prepare_voxels
from tests.helpers import (
    ELL_SLAB,
    ELL_TOWER,
    box_distance,
    corner_network,
    ell_grid,
    randomized_model,
    read_box,
    save_original_checkpoint,
    small_config,
    voxel_reading_network,
)

FRONTS = ("-z", "+z", "+x", "-x")
SETTINGS = ExtractionSettings(threshold=0.5, resolution=64, normals=True)


def reconstructor(model: Network, frame: dict | None) -> Reconstructor:
    card = {} if frame is None else {"frame": frame}
    return Reconstructor(Weights(model.config, model.state_dict(), 0.5, card), device="cpu")


@pytest.mark.parametrize("front", FRONTS)
def test_a_frame_is_a_rotation_that_takes_the_project_front_to_the_network_front(front: str) -> None:
    turn = rotation({"up": "+y", "front": front})
    assert np.allclose(turn @ turn.T, np.eye(3)) and np.isclose(np.linalg.det(turn), 1.0)
    axis, sign = {"+x": (0, 1), "-x": (0, -1), "+z": (2, 1), "-z": (2, -1)}[front]
    expected_front = np.zeros(3)
    expected_front[axis] = sign
    assert np.allclose(turn @ [0, 0, -1], expected_front) and np.allclose(turn @ [0, 1, 0], [0, 1, 0])
    assert np.array_equal(rotation(None), np.eye(3)) and np.array_equal(rotation(PROJECT_FRAME), np.eye(3))


@pytest.mark.parametrize("frame", [{"up": "+y", "front": "+y"}, {"up": "up", "front": "-z"}, "y-up", {"up": "+y"}])
def test_a_malformed_frame_is_named(frame: object) -> None:
    prepared = prepare_voxels(ell_grid())
    with pytest.raises(CheckpointError, match="frame"):
        reconstructor(voxel_reading_network(), frame).encode(prepared)  # type: ignore[arg-type]


@pytest.mark.parametrize("front", FRONTS)
def test_voxels_come_back_where_they_are_whatever_the_network_frame(front: str) -> None:
    """The grid is turned into the network's frame and the mesh back: the L lands on its own voxels
    with outward normals for every front; a flip on any axis would put the tower elsewhere."""
    made = reconstructor(voxel_reading_network(), {"up": "+y", "front": front}).encode(
        prepare_voxels(ell_grid())).extract(SETTINGS)
    boxes = [read_box(ELL_SLAB), read_box(ELL_TOWER)]
    cell = 1.1 / 64
    assert np.abs(box_distance(made.vertices, boxes)).max() < cell
    lo, hi = np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)
    assert np.allclose(made.vertices.min(axis=0), lo, atol=cell)
    assert np.allclose(made.vertices.max(axis=0), hi, atol=cell)
    # Outward: stepping along the normal leaves the L, stepping against it enters it.
    assert made.normals is not None
    step = 0.5 * cell
    assert (box_distance(made.vertices + step * made.normals, boxes) > 0).mean() > 0.97
    assert (box_distance(made.vertices - step * made.normals, boxes) < 0).mean() > 0.97


def test_a_network_standing_in_the_shapenet_v1_frame_faces_the_project_front() -> None:
    """The corner network fills y - z - x > 0.3 of its own frame. Told its front is +x (ShapeNetCore v1),
    that corner is at project (x, y, z) with y - x + z > 0.3: the back, top, -x side."""
    cloud = prepare_pointcloud((np.random.default_rng(0).random((500, 3)) - 0.5).astype(np.float32), n_points=500)
    signs = {}
    for name, frame in (("project", None), ("v1", SHAPENET_V1_FRAME)):
        made = reconstructor(corner_network(), frame).encode(cloud).extract(SETTINGS)
        signs[name] = np.sign(made.vertices.mean(axis=0) - cloud.loc).tolist()
    assert signs == {"project": [-1, 1, -1], "v1": [-1, 1, 1]}


def test_original_checkpoints_and_their_conversions_carry_the_shapenet_v1_frame(tmp_path: Path) -> None:
    model = randomized_model(small_config("onet-pointcloud"))
    original = tmp_path / "onet.pt"
    save_original_checkpoint(original, model)
    assert load_weights(original).card["frame"] == SHAPENET_V1_FRAME
    convert_checkpoint(original, tmp_path / "onet.safetensors")
    assert load_weights(tmp_path / "onet.safetensors").card["frame"] == SHAPENET_V1_FRAME
    # A training checkpoint of this project (it records its config) is in the project's frame.
    import torch

    torch.save({"model": model.state_dict(), "optimizer": {}, "step": 3, "state": {}, "config": "{}"},
               tmp_path / "best.pt")
    assert "frame" not in load_weights(tmp_path / "best.pt").card


@pytest.mark.parametrize("front", FRONTS)
def test_a_relative_frame_turns_data_of_one_frame_into_weights_of_another(front: str) -> None:
    from blender_occnet.occnet.frames import frame_of, relative_frame

    frame = {"up": "+y", "front": front}
    assert frame_of(rotation(frame)) == frame
    assert relative_frame(frame, frame) == PROJECT_FRAME  # data already stands as the weights do
    assert relative_frame(None, frame) == frame
    # v1 data for project-frame weights: the inverse turn of v1's.
    assert np.allclose(rotation(relative_frame(SHAPENET_V1_FRAME, None)), rotation(SHAPENET_V1_FRAME).T)
