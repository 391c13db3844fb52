"""Where results land and which way they face, in real Blender, with hand-set networks whose output is
known exactly: any offset, stretch or mirror is then the add-on's frame handling, not the weights."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest

from blender_occnet.common.binvox import write_binvox
from blender_occnet.occnet.checkpoints import Weights, save_weights
from blender_occnet.occnet.model import Network
from tests.blender.blender_helpers import add_vertex_cloud
from tests.blender.test_reconstruct import assert_result

pytestmark = pytest.mark.usefixtures("installed")

# Network frame: up +y, front -z. Blender: up +z, front -y (what the Front view looks at).


def _weights(tmp_path: Path, name: str, model: Network) -> str:
    path = tmp_path / f"{name}.safetensors"
    save_weights(path, Weights(model.config, model.state_dict(), 0.5, {"summary": "hand-set test network"}))
    return str(path)


def test_a_voxel_object_comes_out_exactly_where_its_voxels_are(tmp_path: Path) -> None:
    """An L of voxels (a slab on the grid's floor and a tower at its front right), imported from .binvox
    with an offset and scale, rotated in the scene, through a network that rebuilds its input grid: every
    vertex of the result lies on the surface that grid predicts, in the object's own frame."""
    from tests.helpers import ELL_SLAB, ELL_TOWER, box_distance, ell_grid, read_box, voxel_reading_network

    grid = ell_grid()
    path = tmp_path / "ell.binvox"
    write_binvox(path, grid, translate=(0.5, -1.0, 2.0), scale=3.0)
    assert bpy.ops.occnet.import_binvox(filepath=str(path)) == {"FINISHED"}
    ell = bpy.data.objects["ell"]
    ell.rotation_euler = (0.2, -0.4, 0.9)
    settings = bpy.context.scene.occnet
    settings.weights, settings.resolution = _weights(tmp_path, "voxel_reader", voxel_reading_network()), "64"
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    result = assert_result(ell)
    made = np.array([v.co[:] for v in result.data.vertices])  # the object's frame: the voxels' unit cube

    def blender_box(box: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = read_box(box)  # network (x, y, z) is Blender (-x, z, y)
        return np.array([-hi[0], lo[2], lo[1]]), np.array([-lo[0], hi[2], hi[1]])

    boxes = [blender_box(ELL_SLAB), blender_box(ELL_TOWER)]
    distance = box_distance(made, boxes)
    cell = 1.1 / 64
    assert np.abs(distance).max() < cell, "a vertex is off the surface the voxels predict"
    union_lo = np.min([lo for lo, _ in boxes], axis=0)
    union_hi = np.max([hi for _, hi in boxes], axis=0)
    assert np.allclose(made.min(axis=0), union_lo, atol=cell) and np.allclose(made.max(axis=0), union_hi, atol=cell)
    # The tower rises at the front right: every vertex above the slab is there.
    top = made[made[:, 2] > boxes[0][1][2] + cell]
    assert len(top) and (top[:, 0] > 0.1).all() and (top[:, 1] < -0.1).all()


def test_results_face_the_way_the_network_faces(tmp_path: Path) -> None:
    """A network that fills the top front corner at its own -x (up +y, front -z) must give, in Blender, a
    result at the top (+z), the front (-y, towards the Front view) and the right (+x) of the source, for a
    point cloud turned and moved in the scene; a mirror on any axis puts it elsewhere."""
    from tests.helpers import corner_network

    rng = np.random.default_rng(2)
    points = (rng.random((2000, 3)) - 0.5).astype(np.float32) * np.array([2.0, 1.0, 1.5], np.float32)
    crowd = add_vertex_cloud("Crowd", points)
    crowd.location, crowd.rotation_euler = (2.0, 1.0, -1.0), (0.0, 0.0, 2.5)
    settings = bpy.context.scene.occnet
    settings.source_kind, settings.weights = "VERTICES", _weights(tmp_path, "corner", corner_network())
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    result = assert_result(crowd)
    made = np.array([v.co[:] for v in result.data.vertices])
    centre, size = (points.min(axis=0) + points.max(axis=0)) / 2, np.ptp(points, axis=0)
    offset = (made.mean(axis=0) - centre) / size
    assert offset[0] > 0.1 and offset[1] < -0.1 and offset[2] > 0.1, offset
