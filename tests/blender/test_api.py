"""The scripting API (`from bl_ext.user_default.occnet import api`): the button's path, the button's result,
the button's messages, and the scene left alone on failure."""

from __future__ import annotations

import time
from types import ModuleType

import bpy
import numpy as np
import pytest

from tests.blender.blender_helpers import add_sphere, scene_snapshot
from tests.blender.test_batch import mesh_arrays, result_of

pytestmark = pytest.mark.usefixtures("installed")


def test_reconstruct_gives_the_mesh_the_button_gives(api: ModuleType) -> None:
    ball = add_sphere()
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}  # threshold 0.5, 32 cells: the scene's settings
    clicked = mesh_arrays(bpy.data.objects["Ball.occnet"])
    made = api.reconstruct(ball, resolution=32, threshold=0.5)
    assert isinstance(made, bpy.types.Object) and made.name == "Ball.occnet.001"
    vertices, faces = mesh_arrays(made)
    assert np.array_equal(vertices, clicked[0]) and np.array_equal(faces, clicked[1])
    assert made.occnet.kind == "RESULT" and made.occnet.threshold == pytest.approx(0.5)
    assert made.occnet.resolution == "32" and made.occnet.source == "Ball"
    assert np.allclose(np.array(made.matrix_world), np.array(ball.matrix_world), atol=1e-6)


def test_settings_reach_the_backend_and_the_source_stays_visible(api: ModuleType) -> None:
    ball = add_sphere()
    coarse = api.reconstruct(ball, resolution=64, threshold=0.5)
    simplified = api.reconstruct(ball, resolution=64, threshold=0.5, simplify_faces=200, source_kind="vertices")
    assert len(simplified.data.polygons) <= 200 < len(coarse.data.polygons)
    assert not ball.hide_get()
    assert api.reconstruct(ball, resolution=32, threshold=0.5, hide_source=True) and ball.hide_get()


def test_failures_raise_the_button_s_message_and_leave_the_scene(api: ModuleType) -> None:
    mesh = bpy.data.meshes.new("Bad")
    mesh.vertices.add(1)
    bad = bpy.data.objects.new("Bad", mesh)
    bpy.context.scene.collection.objects.link(bad)
    bpy.context.view_layer.objects.active = bad
    before = scene_snapshot()
    with pytest.raises(RuntimeError) as clicked:
        bpy.ops.occnet.reconstruct()
    with pytest.raises(api.ReconstructError) as called:
        api.reconstruct(bad)
    assert str(called.value) == str(clicked.value).removeprefix("Error: ").strip() and "needs at least 8" in \
        str(called.value)
    assert scene_snapshot() == before
    ball = add_sphere()
    before = scene_snapshot()
    with pytest.raises(api.ReconstructError, match="no weights named 'nope'.*choose other weights"):
        api.reconstruct(ball, weights="nope")
    with pytest.raises(api.ReconstructError, match="resolution must be one of 32, 64"):
        api.reconstruct(ball, resolution=100)
    with pytest.raises(api.ReconstructError, match="device must be auto, cpu"):
        api.reconstruct(ball, device="gpu")
    with pytest.raises(api.ReconstructError, match="source_kind must be one of"):
        api.reconstruct(ball, source_kind="points")
    with pytest.raises(TypeError, match="unknown setting 'resolutoin'"):
        api.reconstruct(ball, resolutoin=64)
    assert scene_snapshot() == before and not ball.hide_get()


def test_reconstruct_many_says_which_failed_and_why(api: ModuleType) -> None:
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    bpy.context.scene.collection.objects.link(camera)
    ball = add_sphere()
    made = api.reconstruct_many([camera, ball], resolution=32, threshold=0.5)
    assert [(m.source, m.ok) for m in made] == [("Camera", False), ("Ball", True)]
    assert "select a mesh or point cloud object" in made[0].error and made[0].object is None
    assert made[1].object == result_of(ball) and made[1].error == ""
    assert api.reconstruct_many([]) == []


def test_refused_while_the_button_s_reconstruction_runs(api: ModuleType, addon: ModuleType) -> None:
    ball = add_sphere()
    bpy.context.scene.occnet.resolution = "256"
    batch = addon.operators.reconstruct.begin(bpy.context, block=True)
    try:
        with pytest.raises(api.ReconstructError, match="a reconstruction is already running"):
            api.reconstruct(ball)
    finally:
        batch.cancel()
        addon.jobs.wait(batch, 60)


def test_a_source_not_in_the_view_layer_is_reconstructed_and_left_as_it_is(api: ModuleType) -> None:
    """hide_source on a source this view layer does not show (another scene's): Blender refuses to hide it
    there, which must not leave the call waiting for its whole timeout with the result in the scene."""
    ball = add_sphere()
    bpy.data.scenes.new("Other").collection.objects.link(ball)
    bpy.context.scene.collection.objects.unlink(ball)
    started = time.monotonic()
    [made] = api.reconstruct_many([ball], resolution=32, threshold=0.5, hide_source=True, timeout=30)
    assert made.ok and made.error == "" and time.monotonic() - started < 25
    assert made.object.name in bpy.context.scene.objects and not ball.hide_get()


def test_a_failure_after_the_object_exists_removes_it(api: ModuleType, addon: ModuleType,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Any error while the result is being set up fails that source (not the whole wait) and takes the new
    object away again: the scene is left as it was."""
    real = addon.scene_io.add_object

    class Removed:  # what a result whose data went away under the add-on looks like
        def __init__(self, obj: bpy.types.Object):
            self.name = obj.name

        @property
        def occnet(self) -> None:
            raise ReferenceError("StructRNA of type Object has been removed")

    monkeypatch.setattr(addon.scene_io, "add_object", lambda *args, **kwargs: Removed(real(*args, **kwargs)))
    ball = add_sphere()
    before = scene_snapshot()
    started = time.monotonic()
    with pytest.raises(api.ReconstructError, match="could not place the result of 'Ball'.*has been removed"):
        api.reconstruct(ball, resolution=32, threshold=0.5, timeout=30)
    assert time.monotonic() - started < 25 and scene_snapshot() == before
