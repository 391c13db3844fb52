"""Released weights from the add-on's preferences, in real Blender: Get downloads (from the tests' HTTP
server on 127.0.0.1) with the backend's interpreter, the weights appear in the Weights field and
reconstruct; refused without online access; a 404 and a Cancel leave the folder and the scene as they were."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest

from blender_occnet.common.user_dirs import user_weights_dir
from blender_occnet.occnet.config import default_config
from blender_occnet.occnet.released import find
from tests.blender.blender_helpers import MODULE, add_vertex_cloud, scene_snapshot
from tests.blender.test_reconstruct import assert_result
from tests.helpers import randomized_model, save_original_checkpoint
from tests.weights_server import Server, serving

pytestmark = pytest.mark.usefixtures("installed")
NAME = "convonet-pointcloud-grid-shapenet"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, addon: ModuleType) -> Iterator[Server]:
    system = bpy.context.preferences.system
    online = system.use_online_access
    system.use_online_access = True
    monkeypatch.setenv("OCCNET_WEIGHTS_DIR", str(tmp_path / "user-weights"))
    addon.state.session().backend.shutdown()  # the next backend starts with this folder (a user's never changes)
    with serving(monkeypatch) as httpd:
        checkpoint = tmp_path / "grid.pt"
        # The release's own shapes: a download without a published hash must hold them (released.py).
        save_original_checkpoint(checkpoint, randomized_model(default_config("convonet-pointcloud-grid")))
        httpd.files[urllib.parse.urlparse(find(NAME).url).path] = checkpoint.read_bytes()
        yield httpd
    system.use_online_access = online
    addon.state.session().backend.shutdown()


def downloaded() -> list[str]:
    folder = user_weights_dir()
    return sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def test_get_then_reconstruct_with_the_new_weights(server: Server, addon: ModuleType) -> None:
    before = scene_snapshot()
    assert bpy.ops.occnet.get_weights(name=NAME) == {"FINISHED"}
    assert downloaded() == [f"{NAME}.safetensors"] and scene_snapshot() == before
    settings = bpy.context.scene.occnet
    assert NAME in addon.properties.weights_suggestions(settings, bpy.context, "grid")
    assert addon.weights_download.installed(NAME)
    points = (np.random.default_rng(1).random((800, 3)) - 0.5).astype(np.float32)
    cloud = add_vertex_cloud("Cloud", points)
    settings.source_kind, settings.weights, settings.threshold = "VERTICES", NAME, 0.5
    try:
        bpy.ops.occnet.reconstruct()
        assert_result(cloud)
    except RuntimeError as exc:  # random weights may put no surface in the box; the weights must load
        assert "no surface" in str(exc), exc


def test_refused_without_online_access_and_a_missing_file_changes_nothing(server: Server) -> None:
    bpy.context.preferences.system.use_online_access = False
    with pytest.raises(RuntimeError, match="online access is off.*Allow Online Access"):
        bpy.ops.occnet.get_weights(name=NAME)
    bpy.context.preferences.system.use_online_access = True
    with pytest.raises(RuntimeError, match="404"):
        bpy.ops.occnet.get_weights(name="convonet-voxels-3plane-shapenet")
    with pytest.raises(RuntimeError, match="not released weights this version can use"):
        bpy.ops.occnet.get_weights(name="onet-unconditional-cars")
    assert downloaded() == []


def test_cancel_mid_download_keeps_nothing_in_sight_and_get_resumes(server: Server, addon: ModuleType) -> None:
    path = urllib.parse.urlparse(find(NAME).url).path
    server.slow.add(path)
    job = addon.weights_download.Download(addon.preferences.backend_settings(bpy.context).python, NAME).start()
    deadline = time.monotonic() + 60
    while job.fraction == 0.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 0.0 < job.fraction < 1.0 and "MB of" in job.message
    job.cancel()
    assert job.wait(30) == "cancelled" and downloaded() == []
    server.slow.discard(path)
    assert bpy.ops.occnet.get_weights(name=NAME) == {"FINISHED"}
    assert downloaded() == [f"{NAME}.safetensors"] and server.ranges  # resumed, not started over


def test_get_before_install_backend_says_to_install_it(server: Server) -> None:
    """Managed mode before Install backend: there is no interpreter to run the download with; Get says what to
    do (as Reconstruct does), not 'could not run .../python: No such file'."""
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.backend_mode = "MANAGED"  # the managed environment of this throw-away user folder was never installed
    with pytest.raises(RuntimeError, match=r"the backend is not installed yet: click Install backend") as caught:
        bpy.ops.occnet.get_weights(name=NAME)
    assert "No such file" not in str(caught.value) and downloaded() == []


def test_test_backend_lists_weights_got_while_it_runs(server: Server) -> None:
    """Get with the backend running: Test backend lists the new weights without a restart."""
    assert bpy.ops.occnet.test_backend() == {"FINISHED"}
    assert NAME not in bpy.context.window_manager.occnet_job.backend_info
    assert bpy.ops.occnet.get_weights(name=NAME) == {"FINISHED"}
    assert bpy.ops.occnet.test_backend() == {"FINISHED"}
    assert NAME in bpy.context.window_manager.occnet_job.backend_info
