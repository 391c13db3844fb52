"""Reconstructions in real Blender: mesh and point-cloud sources, .binvox voxels, live tweaks, cancel, undo."""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest
from mathutils import Matrix

from blender_occnet.common.binvox import write_binvox
from tests.blender.blender_helpers import (
    add_point_cloud,
    add_sphere,
    add_vertex_cloud,
    edge_use_counts,
    scene_snapshot,
)

pytestmark = pytest.mark.usefixtures("installed")


def assert_result(source: bpy.types.Object, matrix: Matrix | None = None) -> bpy.types.Object:
    result = bpy.data.objects[f"{source.name}.occnet"]
    assert np.allclose(np.array(result.matrix_world), np.array(matrix or source.matrix_world), atol=1e-5)
    counts = edge_use_counts(result.data)
    assert len(counts) and (counts == 2).all(), "the mesh is not closed"
    smooth = np.zeros(len(result.data.polygons), bool)
    result.data.polygons.foreach_get("use_smooth", smooth)
    assert smooth.all()
    assert result.select_get() and bpy.context.view_layer.objects.active == result
    assert set(result.users_collection) == set(source.users_collection)
    record = result.occnet
    assert record.kind == "RESULT" and record.job.startswith("job-") and record.source == source.name
    assert record.resolution == bpy.context.scene.occnet.resolution
    assert record.threshold == pytest.approx(bpy.context.scene.occnet.threshold)
    assert bpy.context.window_manager.occnet_job.last_result.startswith(result.name)
    return result


def test_mesh_source_gives_a_closed_mesh_where_the_source_is() -> None:
    collection = bpy.data.collections.new("Scans")
    bpy.context.scene.collection.children.link(collection)
    ball = add_sphere()
    bpy.context.scene.collection.objects.unlink(ball)
    collection.objects.link(ball)
    bpy.context.view_layer.objects.active = ball
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    assert_result(ball)
    assert len(bpy.data.objects) == 2 and not bpy.context.window_manager.occnet_job.running


def test_voxelised_mesh_source_fits_the_mesh_and_stays_where_it_is() -> None:
    """Source: Voxelised mesh sends the mesh itself; the backend voxelises it at 32^3 and maps the result
    back through the mesh's own box, so the result lies within the network's 1.1 box around the mesh."""
    ball = add_sphere()
    bpy.context.scene.occnet.source_kind = "VOXELIZE"
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    result = assert_result(ball)
    source = np.array([v.co for v in ball.data.vertices])
    lo, hi = source.min(axis=0), source.max(axis=0)
    centre, half = (lo + hi) / 2, 0.55 * float((hi - lo).max())
    made = np.array([v.co for v in result.data.vertices])
    assert (np.abs(made - centre) <= half + 1e-4).all()
    assert np.ptp(made, axis=0).max() > 0.1 * (hi - lo).max()


def test_point_cloud_object_and_the_non_blocking_path(addon: ModuleType) -> None:
    """A POINTCLOUD source, run the way the modal operator runs it (connect on a thread, then step)."""
    cloud = add_point_cloud()
    batch = addon.operators.reconstruct.begin(bpy.context, block=False)
    assert batch.state == "starting"  # connecting on a thread
    assert addon.jobs.wait(batch, 120) == "finished", batch.message
    assert_result(cloud)


def test_a_scan_of_two_objects_far_apart_says_so_in_the_result_line() -> None:
    d = np.random.default_rng(5).normal(size=(2000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    add_vertex_cloud("Two", np.vstack([d, d + (10, 0, 0)]))
    bpy.context.scene.occnet.resolution = "32"
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    line = bpy.context.window_manager.occnet_job.last_result
    assert line.startswith("Two.occnet") and "the points form 2 separate groups far apart" in line, line
    assert " s by pc, " in line, line  # the weights that made it (the test folder's)


def test_threshold_and_resolution_changes_replace_the_mesh_in_place(addon: ModuleType) -> None:
    ball = add_sphere()
    bpy.ops.occnet.reconstruct()
    result = bpy.data.objects["Ball.occnet"]
    mesh_name, before, job = result.data.name, len(result.data.vertices), result.occnet.job
    for name, value in (("threshold", 0.45), ("resolution", "64")):
        setattr(result.occnet, name, value)
        assert addon.live.pending(result.name)
        deadline = time.monotonic() + 60
        while addon.live.pending(result.name) and time.monotonic() < deadline:
            addon.events.pump(timeout=0.2)
        assert not addon.live.pending(result.name), bpy.context.window_manager.occnet_job.last_error
        assert result.data.name == mesh_name and len(bpy.data.meshes) == 2 and len(bpy.data.objects) == 2
        assert len(result.data.vertices) != before and result.occnet.job != job
        assert (edge_use_counts(result.data) == 2).all()
        before, job = len(result.data.vertices), result.occnet.job
    assert ball.name in bpy.data.objects


def test_trim_unseen_opens_a_one_sided_scan_live_and_zero_closes_it_again(addon: ModuleType) -> None:
    d = np.random.default_rng(6).normal(size=(8000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    add_vertex_cloud("Dome", d[d[:, 2] > 0])  # a unit sphere scanned from above
    bpy.context.scene.occnet.resolution = "64"
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    result = bpy.data.objects["Dome.occnet"]
    assert result.occnet.modality == "pointcloud" and (edge_use_counts(result.data) == 2).all()
    closed_faces = len(result.data.polygons)
    assert min(v.co.z for v in result.data.vertices) < -0.3  # the test weights close the dome well below its rim
    result.occnet.trim_unseen = 0.1
    wait_for_re_extraction(addon, result.name)
    assert (edge_use_counts(result.data) == 1).any() and len(result.data.polygons) < closed_faces
    heights = np.array([v.co.z for v in result.data.vertices])
    assert heights.min() > -0.3  # the closed dome's underside is gone; what the points show stays
    record = result.occnet  # the mesh is recorded as made at the new trim (an undo step then knows to redo it)
    assert record.extracted == addon.scene_io.extraction_key(record.threshold, record.resolution, 0.1)
    result.occnet.trim_unseen = 0.0
    wait_for_re_extraction(addon, result.name)
    assert (edge_use_counts(result.data) == 2).all() and len(result.data.polygons) == closed_faces


def wait_for_re_extraction(addon: ModuleType, name: str) -> None:
    deadline = time.monotonic() + 60
    while addon.live.pending(name) and time.monotonic() < deadline:
        addon.events.pump(timeout=0.2)
    assert not addon.live.pending(name), bpy.context.window_manager.occnet_job.last_error


def test_one_undo_takes_back_a_threshold_change_and_its_mesh(addon: ModuleType) -> None:
    """The slider's change is an undo step (the UI pushes it; here by hand); the mesh that arrives for it belongs
    to that step, not to a step of its own: one Ctrl+Z restores the old threshold with the old mesh, and Redo the
    new threshold with a mesh of it."""
    add_sphere()
    bpy.ops.occnet.reconstruct()
    bpy.ops.ed.undo_push(message="Reconstruct")
    result = bpy.data.objects["Ball.occnet"]
    old = len(result.data.vertices)
    result.occnet.threshold = 0.45
    bpy.ops.ed.undo_push(message="Threshold")  # what the UI pushes when the slider is let go
    wait_for_re_extraction(addon, "Ball.occnet")
    new = len(bpy.data.objects["Ball.occnet"].data.vertices)
    assert new != old
    bpy.ops.ed.undo()
    result = bpy.data.objects["Ball.occnet"]
    assert result.occnet.threshold == pytest.approx(0.5) and len(result.data.vertices) == old
    assert not addon.live.pending("Ball.occnet")  # consistent as it is: nothing to re-extract
    bpy.ops.ed.redo()
    result = bpy.data.objects["Ball.occnet"]
    assert result.occnet.threshold == pytest.approx(0.45)
    wait_for_re_extraction(addon, "Ball.occnet")  # the step holds the old mesh: it is made again for 0.45
    assert len(bpy.data.objects["Ball.occnet"].data.vertices) == new


def test_binvox_import_makes_a_voxel_source(tmp_path: Path) -> None:
    grid = np.zeros((32, 32, 32), bool)
    grid[6:26, 10:22, 4:28] = True
    path = tmp_path / "crate.binvox"
    write_binvox(path, grid, translate=(1.0, 2.0, 3.0), scale=2.0)
    assert bpy.ops.occnet.import_binvox(filepath=str(path)) == {"FINISHED"}
    crate = bpy.data.objects["crate"]
    assert crate.occnet.kind == "VOXELS" and len(crate.data.polygons) == 6 * grid.sum()
    # The binvox box is y-up, front -z; in Blender (z-up, front -y) network (x, y, z) is (-x, z, y).
    corners = np.array([1.0, 2.0, 3.0]) + 2 * np.array([[6, 10, 4], [26, 22, 28]]) / 32
    expected = np.sort(np.stack([-corners[:, 0], corners[:, 2], corners[:, 1]], axis=1), axis=0)
    world = np.array([crate.matrix_world @ v.co for v in crate.data.vertices])
    assert np.allclose([world.min(axis=0), world.max(axis=0)], expected, atol=1e-5)
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    assert_result(crate)


def test_cancel_leaves_no_new_object(addon: ModuleType) -> None:
    add_sphere()
    bpy.context.scene.occnet.resolution = "256"
    before = scene_snapshot()
    batch = addon.operators.reconstruct.begin(bpy.context, block=False)
    while batch.step(timeout=0.1) == "starting":
        pass
    assert batch.state == "running"
    assert bpy.ops.occnet.cancel() == {"FINISHED"}
    assert addon.jobs.wait(batch, 60) == "cancelled"
    assert scene_snapshot() == before and not bpy.context.window_manager.occnet_job.running


def test_cancel_after_the_backend_finished_leaves_the_scene_as_it_was(addon: ModuleType) -> None:
    """Cancel clicked while meshing, past the backend's last check: its result is already on its way. It is
    dropped; the scene is as it was, the source shown, and the panel says cancelled."""
    ball = add_sphere()
    before = scene_snapshot()
    batch = addon.operators.reconstruct.begin(bpy.context, block=False)
    while batch.step(timeout=0.1) == "starting":
        pass
    deadline = time.monotonic() + 60
    while not any(type(e).__name__ == "Result" for e in list(batch.client.events.queue)):  # not handled yet
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert bpy.ops.occnet.cancel() == {"FINISHED"}
    assert addon.jobs.wait(batch, 60) == "cancelled" and batch.items[0].state == "cancelled"
    assert scene_snapshot() == before and not ball.hide_get()
    assert bpy.context.window_manager.occnet_job.last_result == "Ball: cancelled"


def test_one_undo_step_removes_the_result() -> None:
    """In module mode operators push no undo steps themselves (the UI does, after the operator
    finishes); pushing them by hand shows the result is one step."""
    add_sphere()
    bpy.ops.ed.undo_push(message="before")
    bpy.ops.ed.undo_push(message="sphere")
    bpy.ops.occnet.reconstruct()
    bpy.ops.ed.undo_push(message="Reconstruct")
    assert "Ball.occnet" in bpy.data.objects and bpy.data.objects["Ball"].hide_get()
    bpy.ops.ed.undo()
    assert "Ball.occnet" not in bpy.data.objects and "Ball" in bpy.data.objects
    assert not bpy.data.objects["Ball"].hide_get()  # the hidden source comes back with the same step


@pytest.mark.parametrize("shape", ["triangles", "quads"])
def test_fast_mesh_path_builds_what_blender_would(addon: ModuleType, shape: str) -> None:
    """The add-on computes edges itself; Blender's own path (calc_edges) must give the same mesh."""
    if shape == "quads":
        vertices, faces, _ = addon.geometry.voxel_cubes(np.array([[0, 0, 0], [3, 4, 5]]))
    else:
        bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=3)
        source = bpy.context.active_object.data
        vertices = np.array([v.co for v in source.vertices], np.float32)
        faces = np.array([p.vertices for p in source.polygons], np.int32)
    meshes = [bpy.data.meshes.new(f"m{fast}") for fast in (True, False)]
    for mesh, fast in zip(meshes, (True, False)):
        addon.scene_io.fill_mesh(mesh, vertices, faces, fast=fast)
    fast_mesh, blender_mesh = meshes
    for mesh in meshes:
        assert not mesh.validate(verbose=True)  # nothing to fix
    assert [tuple(p.vertices) for p in fast_mesh.polygons] == [tuple(p.vertices) for p in blender_mesh.polygons]
    assert {e.key for e in fast_mesh.edges} == {e.key for e in blender_mesh.edges}
    assert [fast_mesh.edges[loop.edge_index].key for loop in fast_mesh.loops] == \
        [blender_mesh.edges[loop.edge_index].key for loop in blender_mesh.loops]
    assert all(p.use_smooth for p in fast_mesh.polygons)


def test_test_backend_reports_torch_devices_and_weights() -> None:
    assert bpy.ops.occnet.test_backend() == {"FINISHED"}
    info = bpy.context.window_manager.occnet_job.backend_info
    assert info.startswith("torch 2.") and "devices: cpu" in info and "pc" in info and "vox" in info
    assert "Auto uses cpu" in info  # no GPU on this machine


def test_the_cpu_threads_preference_reaches_the_backend() -> None:
    from tests.blender.blender_helpers import MODULE

    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.cpu_threads = 2
    try:
        assert bpy.ops.occnet.test_backend() == {"FINISHED"}  # the changed setting restarts the backend
        assert "; 2 CPU threads)" in bpy.context.window_manager.occnet_job.backend_info
    finally:
        prefs.cpu_threads = 0


def test_original_checkpoint_with_its_architecture(tmp_path: Path, addon: ModuleType, weights_dir: Path) -> None:
    """An original .pt file picked by path: the architecture is told from its keys, or named; a wrong name
    is refused. The Weights field suggests the folder's and the bundled weights."""
    import torch

    from tests.helpers import centre_logits, randomized_model, save_original_checkpoint, small_config

    cloud = torch.from_numpy(np.random.default_rng(0).random((1, 300, 3)).astype(np.float32) - 0.5)
    model = centre_logits(randomized_model(small_config("onet-pointcloud")), cloud)
    checkpoint = tmp_path / "onet_pcl2mesh.pt"
    save_original_checkpoint(checkpoint, model)
    settings = bpy.context.scene.occnet
    suggestions = addon.properties.weights_suggestions(settings, bpy.context, "")
    assert {"pc", "vox", "img", "pointcloud"} <= set(suggestions)
    assert addon.properties.weights_suggestions(settings, bpy.context, "VO") == ["vox", "voxels"]
    ball = add_sphere()
    settings.weights = str(checkpoint)
    for arch in ("AUTO", "onet-pointcloud"):
        settings.arch = arch
        ball.select_set(True)
        bpy.context.view_layer.objects.active = ball
        assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
        result = assert_result(ball)
        assert result.occnet.weights == str(checkpoint)
        bpy.data.objects.remove(result)
    settings.arch = "onet-voxels"
    bpy.context.view_layer.objects.active = ball
    with pytest.raises(RuntimeError, match="holds an onet-pointcloud model, not onet-voxels"):
        bpy.ops.occnet.reconstruct()
    assert "Ball.occnet" not in bpy.data.objects


def test_a_tweak_after_a_backend_restart_never_takes_another_shape(addon: ModuleType) -> None:
    """A result remembers its job; a restarted backend numbers its jobs anew. Nudging the first result after
    another reconstruction on the new backend must not give it the other object's shape."""
    ball = add_sphere()
    bpy.ops.occnet.reconstruct()
    result = bpy.data.objects["Ball.occnet"]
    before = np.array([v.co[:] for v in result.data.vertices])
    addon.state.session().backend.shutdown()  # what a preference change does before the next use
    bpy.ops.mesh.primitive_cube_add(size=0.6, location=(3.0, 0.0, 0.0))
    bpy.context.active_object.name = "Crate"
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    assert bpy.data.objects["Crate.occnet"].occnet.job != result.occnet.job
    result.occnet.threshold = 0.45
    deadline = time.monotonic() + 30
    while addon.live.pending(result.name) and time.monotonic() < deadline:
        addon.events.pump(timeout=0.2)
    after = np.array([v.co[:] for v in result.data.vertices])
    assert after.shape == before.shape and np.array_equal(after, before)  # untouched, not the crate
    assert "can no longer be tweaked" in bpy.context.window_manager.occnet_job.last_error
    assert ball.name in bpy.data.objects



def test_a_tweak_in_flight_follows_its_object_through_a_rename_or_a_delete(addon: ModuleType) -> None:
    """A re-extraction in flight finds its object by the job that made it: renamed meanwhile (and its old name
    taken by another result), the renamed one gets the new shape and the other keeps its own; deleted, the
    result is dropped with no internal error. Nothing stays pending (before: the handler read the name of the
    held bpy reference, so a rename left the old name pending for ever and a delete raised in the handler)."""
    ball = add_sphere()
    bpy.ops.occnet.reconstruct()
    bpy.ops.mesh.primitive_cube_add(size=0.6, location=(3.0, 0.0, 0.0))
    bpy.context.active_object.name = "Crate"
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    result, crate = bpy.data.objects["Ball.occnet"], bpy.data.objects["Crate.occnet"]
    crate_before = np.array([v.co[:] for v in crate.data.vertices])
    ball_before = len(result.data.vertices)

    def settle(name: str) -> None:
        deadline = time.monotonic() + 30
        while addon.live.pending(name) and time.monotonic() < deadline:
            addon.events.pump(timeout=0.2)
        addon.events.pump(timeout=0.5)
        assert not addon.live.pending(name)

    result.occnet.threshold = 0.45
    result.name, crate.name = "Tweaked", "Ball.occnet"
    settle("Ball.occnet")
    assert np.array_equal(np.array([v.co[:] for v in crate.data.vertices]), crate_before)  # the crate's own
    assert len(result.data.vertices) != ball_before and result.occnet.job != ""
    status = bpy.context.window_manager.occnet_job
    assert status.last_error == "" and status.last_result.startswith("Tweaked:")
    result.occnet.threshold = 0.3
    bpy.data.objects.remove(result)
    settle("Tweaked")
    assert "internal error" not in status.last_error
    assert ball.name in bpy.data.objects


def test_result_follows_the_source_parent_name_and_visibility(addon: ModuleType) -> None:
    """Parented like its source (world placement unchanged), named without stacked suffixes, and the source
    hidden (kept) by default; one undo brings the source back and removes the result."""
    holder = bpy.data.objects.new("Holder", None)
    bpy.context.scene.collection.objects.link(holder)
    holder.location = (0.5, 1.0, -0.25)
    ball = add_sphere()
    world = ball.matrix_world.copy()
    ball.parent = holder
    ball.matrix_world = world
    bpy.context.view_layer.objects.active = ball
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    result = bpy.data.objects["Ball.occnet"]
    assert result.parent == holder
    assert np.allclose(np.array(result.matrix_world), np.array(ball.matrix_world), atol=1e-5)
    assert ball.hide_get() and not result.hide_get()
    # A result reconstructed again, or an image, never stacks suffixes.
    assert addon.scene_io.result_name("Ball.occnet", "pointcloud") == "Ball.occnet"
    assert addon.scene_io.result_name("sofa_image.png", "image") == "sofa_image.occnet"
    assert addon.scene_io.result_name("v1.2 scan", "pointcloud") == "v1.2 scan.occnet"
    bpy.context.scene.occnet.hide_source = False
    bpy.context.view_layer.objects.active = ball
    ball.hide_set(False)
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"} and not ball.hide_get()


def test_registered_with_a_redo_panel_that_reconstructs_again() -> None:
    """REGISTER: the operator is in the Info log and offers resolution, threshold, refinement and
    simplification after the fact; running it with them set is what the redo panel does."""
    from bl_ext.user_default.occnet.addon.operators.reconstruct import OCCNET_OT_reconstruct

    assert {"REGISTER", "UNDO"} <= set(OCCNET_OT_reconstruct.bl_options)
    ball = add_sphere()
    bpy.context.scene.occnet.resolution = "64"
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    coarse = len(bpy.data.objects["Ball.occnet"].data.polygons)
    bpy.context.view_layer.objects.active = ball
    assert bpy.ops.occnet.reconstruct(resolution="32", simplify_faces=200) == {"FINISHED"}
    redone = bpy.data.objects["Ball.occnet.001"]
    assert len(redone.data.polygons) <= 200 < coarse
    assert bpy.context.scene.occnet.resolution == "64"  # the scene's own setting is left alone


def test_a_voxel_object_edited_in_edit_mode_is_read_as_shown(tmp_path: Path, addon: ModuleType) -> None:
    """Scaling a voxel object's mesh (what Edit Mode does) changes the grid that is sent: its extent halves
    with the cubes, rather than staying at the size the voxels were imported with."""
    grid = np.zeros((32, 32, 32), bool)
    grid[4:28, 8:24, 2:30] = True
    write_binvox(tmp_path / "crate.binvox", grid)
    assert bpy.ops.occnet.import_binvox(filepath=str(tmp_path / "crate.binvox")) == {"FINISHED"}
    crate = bpy.data.objects["crate"]

    def sent_extent() -> np.ndarray:
        source = addon.scene_io.read_source(crate, bpy.context.evaluated_depsgraph_get())
        cells = np.argwhere(source.array)
        return cells.max(axis=0) - cells.min(axis=0) + 1

    assert sent_extent().tolist() == [24, 16, 28]
    crate.data.transform(Matrix.Scale(0.5, 4))
    crate.data.update()
    assert sent_extent().tolist() == [12, 8, 14]
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
