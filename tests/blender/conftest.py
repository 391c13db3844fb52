"""Blender tests: the bpy wheel in this process, the extension built and installed from its zip once,
a reset scene around each test, and small random weights in a temporary folder."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

# Blender reads these when bpy is imported: never touch the real user configuration.
_ROOT = Path(tempfile.mkdtemp(prefix="occnet-blender-tests-"))
(_ROOT / "home").mkdir()
_SAVED_HOME = os.environ.get("HOME")
os.environ["BLENDER_USER_RESOURCES"] = str(_ROOT / "resources")
os.environ["HOME"] = str(_ROOT / "home")

import bpy  # noqa: E402  (after the environment above)

from tests.blender.blender_helpers import MODULE, REPO, configure  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _cleanup() -> Iterator[None]:
    """Stop the backend and remove the temporary user folders at the end."""
    yield
    state = sys.modules.get(f"{MODULE}.addon.state")
    session = state.session_or_none() if state is not None else None
    if session is not None:
        session.backend.shutdown()
    if _SAVED_HOME is not None:
        os.environ["HOME"] = _SAVED_HOME
    shutil.rmtree(_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    """Random networks with a surface: 'pc' (point clouds), 'vox' (voxels) and 'img' (images), as
    tests/backend makes them."""
    import torch

    from blender_occnet.occnet.checkpoints import Weights, save_weights
    from tests.helpers import centre_logits, randomized_model, small_config

    folder = _ROOT / "weights"
    folder.mkdir()
    cloud = torch.from_numpy(np.random.default_rng(0).random((1, 300, 3)).astype(np.float32) - 0.5)
    pc = centre_logits(randomized_model(small_config("onet-pointcloud")), cloud)
    save_weights(folder / "pc.safetensors", Weights(pc.config, pc.state_dict(), 0.5, {"summary": "test"}))
    grid = torch.zeros(1, 32, 32, 32)
    grid[0, 6:26, 10:22, 4:28] = 1
    vox = centre_logits(randomized_model(small_config("onet-voxels")), grid)
    save_weights(folder / "vox.safetensors", Weights(vox.config, vox.state_dict(), 0.5, {"summary": "test"}))
    image = torch.ones(1, 3, 224, 224)
    image[0, :, 60:160, 80:150] = 0.2
    img = centre_logits(randomized_model(small_config("onet-img")), image)
    save_weights(folder / "img.safetensors", Weights(img.config, img.state_dict(), 0.5, {"summary": "test"}))
    return folder


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(REPO))
    from build_extension import build

    return build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def installed(extension_zip: Path) -> str:
    """Install the zip the way Edit > Preferences > Get Extensions > Install from Disk does."""
    result = bpy.ops.extensions.package_install_files(filepath=str(extension_zip), repo="user_default",
                                                      enable_on_install=True)
    assert result == {"FINISHED"} and MODULE in bpy.context.preferences.addons
    return MODULE


@pytest.fixture(autouse=True)
def fresh_scene(request: pytest.FixtureRequest) -> Iterator[None]:
    """An empty scene before and after each test; the add-on enabled and configured when it is used."""
    bpy.ops.wm.read_homefile(use_empty=True)
    if "installed" in request.fixturenames:
        request.getfixturevalue("installed")
        if MODULE not in bpy.context.preferences.addons:
            bpy.ops.preferences.addon_enable(module=MODULE)
        configure(request.getfixturevalue("weights_dir"))
        state = bpy.context.window_manager.occnet_job
        state.last_error = state.last_result = ""
        # The test weights have their surface near 0.5; 32 cells keep every extraction fast.
        bpy.context.scene.occnet.threshold, bpy.context.scene.occnet.resolution = 0.5, "32"
        bpy.context.scene.occnet.use_weights_threshold = False
    yield
    bpy.ops.wm.read_homefile(use_empty=True)


@pytest.fixture
def addon(installed: str) -> ModuleType:
    """The installed add-on's package (bl_ext.user_default.occnet.addon), to reach its modules."""
    return importlib.import_module(f"{installed}.addon")


@pytest.fixture
def api(installed: str) -> ModuleType:
    """The installed extension's scripting API (bl_ext.user_default.occnet.api), as scripts import it."""
    return importlib.import_module(installed).api
