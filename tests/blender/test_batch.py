"""Several selected sources in one click: one backend job each, each result over its own source, a failed
source named and left out, cancel keeping what finished, one undo step for the whole batch."""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest

from blender_occnet.common.binvox import write_binvox
from tests.blender.blender_helpers import add_point_cloud, add_sphere, edge_use_counts, scene_snapshot

pytestmark = pytest.mark.usefixtures("installed")


def three_sources(tmp_path: Path) -> list[bpy.types.Object]:
    """A voxel object, a point-cloud object and a mesh (active), all selected, each somewhere else."""
    grid = np.zeros((32, 32, 32), bool)
    grid[6:26, 10:22, 4:28] = True
    write_binvox(tmp_path / "crate.binvox", grid, translate=(3.0, 0.0, 0.0), scale=2.0)
    assert bpy.ops.occnet.import_binvox(filepath=str(tmp_path / "crate.binvox")) == {"FINISHED"}
    crate = bpy.data.objects["crate"]
    cloud = add_point_cloud()
    ball = add_sphere()
    return select([ball, cloud, crate])


def select(objects: list[bpy.types.Object]) -> list[bpy.types.Object]:
    """These objects selected, the first active."""
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj in objects)
    bpy.context.view_layer.objects.active = objects[0]
    return objects


def result_of(source: bpy.types.Object) -> bpy.types.Object:
    """The reconstruction over `source`: placed where it is, closed, recording its source."""
    [result] = [o for o in bpy.data.objects if o.occnet.kind == "RESULT" and o.occnet.source == source.name]
    assert np.allclose(np.array(result.matrix_world), np.array(source.matrix_world), atol=1e-5)
    counts = edge_use_counts(result.data)
    assert len(counts) and (counts == 2).all(), f"{result.name} is not closed"
    assert set(result.users_collection) == set(source.users_collection)
    return result


def mesh_arrays(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", vertices)
    corners = np.empty(len(obj.data.loops), np.int32)
    obj.data.loops.foreach_get("vertex_index", corners)
    return vertices.reshape(-1, 3), corners.reshape(-1, 3)


def test_three_sources_give_three_results_each_over_its_source(tmp_path: Path, addon: ModuleType) -> None:
    ball, cloud, crate = three_sources(tmp_path)
    settings, selected = bpy.context.scene.occnet, bpy.context.view_layer.objects.selected
    assert addon.scene_io.describe_source(settings, ball, selected) == \
        "3 objects, one job each: 'Ball', 'Cloud', 'crate'"
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    results = [result_of(source) for source in (ball, cloud, crate)]
    assert [r.name for r in results] == ["Ball.occnet", "Cloud.occnet", "crate.occnet"]
    assert len({r.occnet.job for r in results}) == 3  # one backend job each
    assert all(r.select_get() for r in results) and bpy.context.view_layer.objects.active == results[0]
    assert all(source.hide_get() for source in (ball, cloud, crate))
    status = bpy.context.window_manager.occnet_job
    assert status.last_result.startswith("3 of 3 reconstructed in ") and status.last_error == ""
    assert not status.running


@pytest.mark.parametrize("points, why", [
    ([(float(i), 0.0, float("nan") if i > 4 else 1.0) for i in range(20)], "15 of 20 points with NaN"),
    ([(0.0, 0.0, 0.0)], "needs at least 8"),
])
def test_a_bad_source_fails_alone_and_is_named(points: list[tuple[float, float, float]], why: str) -> None:
    mesh = bpy.data.meshes.new("Bad")
    mesh.vertices.add(len(points))
    mesh.vertices.foreach_set("co", np.asarray(points, np.float32).ravel())
    bad = bpy.data.objects.new("Bad", mesh)
    bpy.context.scene.collection.objects.link(bad)
    bpy.ops.mesh.primitive_cube_add(size=0.8, location=(3.0, 0.0, 0.0))
    crate = bpy.context.active_object
    crate.name = "Crate"
    ball = add_sphere()
    select([ball, bad, crate])
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}  # a warning, not an error: two were made
    result_of(ball), result_of(crate)
    assert not [o for o in bpy.data.objects if o.occnet.source == "Bad"] and len(bpy.data.objects) == 5
    assert not bad.hide_get()  # nothing of it changed
    status = bpy.context.window_manager.occnet_job
    assert status.last_result.startswith("2 of 3 reconstructed")
    assert re.match(rf"1 failed: 'Bad': .*{why}", status.last_error), status.last_error


def test_cancelling_mid_batch_keeps_the_finished_and_leaves_no_partial_object(tmp_path: Path,
                                                                             addon: ModuleType) -> None:
    ball, cloud, crate = three_sources(tmp_path)
    bpy.context.scene.occnet.resolution = "256"  # each job takes a while after the first
    before = scene_snapshot()
    batch = addon.operators.reconstruct.begin(bpy.context, block=False)
    first, second, _ = batch.items
    deadline = time.monotonic() + 300
    while first.state != "finished" and time.monotonic() < deadline:
        batch.step(timeout=0.1)
    while second.stage in ("queued", "") and time.monotonic() < deadline:
        batch.step(timeout=0.1)
    status = bpy.context.window_manager.occnet_job
    # The sidebar's bar: which source of how many, its stage and how far along; the fraction is overall.
    assert re.fullmatch(r"2 of 3: Cloud — \w+ \d+%", status.stage), status.stage
    assert status.running and 1 / 3 <= status.progress < 2 / 3
    assert bpy.ops.occnet.cancel() == {"FINISHED"}
    assert addon.jobs.wait(batch, 60) == "cancelled"
    assert [item.state for item in batch.items] == ["finished", "cancelled", "cancelled"]
    assert batch.results == ["Ball.occnet"] and batch.message.startswith("cancelled; kept 1 of 3: Ball.occnet")
    objects, meshes, _ = scene_snapshot()
    assert objects == sorted(before[0] + ["Ball.occnet"]) and meshes == sorted(before[1] + ["Ball.occnet"])
    result_of(ball)
    assert ball.hide_get() and not cloud.hide_get() and not crate.hide_get()
    assert not status.running and status.last_result == batch.message


def test_the_batch_bar_only_moves_forward(addon: ModuleType) -> None:
    """The sidebar's bar over a batch never goes back: within a source it follows the stages in their order
    (each stage's own fraction restarts at 0, which the bar must not show as going back)."""
    ball = add_sphere()
    cloud = add_point_cloud()
    select([ball, cloud])
    bpy.context.scene.occnet.resolution = "256"  # evaluating takes several steps; meshing is then a step apart
    status = bpy.context.window_manager.occnet_job
    batch = addon.operators.reconstruct.begin(bpy.context, block=False)
    seen = []
    deadline = time.monotonic() + 300
    while batch.step(timeout=0.02) not in addon.jobs.DONE and time.monotonic() < deadline:
        seen.append((status.progress, status.stage))
    assert batch.state == "finished", batch.message
    stages = {stage.split(" — ")[-1].split()[0] for _, stage in seen if " — " in stage}
    assert {"evaluating", "meshing"} <= stages, stages  # the steps saw the stage change the bar used to undo
    fractions = [fraction for fraction, _ in seen]
    back = [(seen[i], seen[i + 1]) for i in range(len(seen) - 1) if fractions[i + 1] < fractions[i] - 1e-6]
    assert not back, back[:3]


def test_one_undo_step_removes_every_result_and_shows_every_source(tmp_path: Path) -> None:
    """The batch is one undo step (pushed by hand: module mode has no UI to push it after the operator)."""
    sources = three_sources(tmp_path)
    bpy.ops.ed.undo_push(message="before")
    bpy.ops.ed.undo_push(message="sources")
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    bpy.ops.ed.undo_push(message="Reconstruct")
    names = [source.name for source in sources]
    assert all(f"{name}.occnet" in bpy.data.objects and bpy.data.objects[name].hide_get() for name in names)
    bpy.ops.ed.undo()
    assert not [o for o in bpy.data.objects if o.name.endswith(".occnet")]
    assert not any(bpy.data.objects[name].hide_get() for name in names)


def test_the_api_batch_equals_the_operator_batch(tmp_path: Path, api: ModuleType) -> None:
    sources = three_sources(tmp_path)
    bpy.context.scene.occnet.hide_source = False
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    clicked = {source.name: mesh_arrays(result_of(source)) for source in sources}
    made = api.reconstruct_many(list(reversed(sources)), resolution=32, threshold=0.5)
    assert [m.source for m in made] == [s.name for s in reversed(sources)] and all(m.ok for m in made)
    for outcome in made:
        assert outcome.object.name == f"{outcome.source}.occnet.001"
        source = bpy.data.objects[outcome.source]
        assert np.allclose(np.array(outcome.object.matrix_world), np.array(source.matrix_world), atol=1e-6)
        vertices, faces = mesh_arrays(outcome.object)
        assert np.array_equal(vertices, clicked[outcome.source][0])
        assert np.array_equal(faces, clicked[outcome.source][1])
