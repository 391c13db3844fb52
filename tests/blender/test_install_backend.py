"""Install backend: the managed environment in the extension's user folder, only with online access,
never half-built; and reconstruction with it."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import bpy
import pytest

from tests.blender.blender_helpers import MODULE, add_sphere, scene_snapshot

pytestmark = pytest.mark.usefixtures("installed")


@pytest.fixture
def managed(addon: ModuleType) -> Iterator[Path]:
    """Managed mode with online access allowed; the environment folder is removed afterwards."""
    prefs = bpy.context.preferences.addons[MODULE].preferences
    system = bpy.context.preferences.system
    online = system.use_online_access
    prefs.backend_mode = "MANAGED"
    system.use_online_access = True
    env = addon.preferences.managed_env_dir()
    yield env
    system.use_online_access = online
    addon.state.session().backend.shutdown()
    for path in (env, env.with_name(env.name + ".partial")):
        assert not path.with_name(path.name + ".old").exists()
        if path.exists():
            import shutil

            shutil.rmtree(path)


def probe_wheel(folder: Path) -> Path:
    """A tiny pure-Python wheel written by hand, so pip installs something real without the network."""
    name = "occnet_probe-1.0-py3-none-any.whl"
    files = {"occnet_probe/__init__.py": b"VALUE = 42\n",
             "occnet_probe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: occnet-probe\nVersion: 1.0\n",
             "occnet_probe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                                                 b"Tag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for path, data in files.items()]
    files["occnet_probe-1.0.dist-info/RECORD"] = ("\n".join(record + ["occnet_probe-1.0.dist-info/RECORD,,"])
                                                  + "\n").encode()
    with zipfile.ZipFile(folder / name, "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
    return folder / name


def test_refused_without_online_access(managed: Path) -> None:
    bpy.context.preferences.system.use_online_access = False
    with pytest.raises(RuntimeError, match="online access is off.*Allow Online Access"):
        bpy.ops.occnet.install_backend()
    assert not managed.exists() and not managed.with_name(managed.name + ".partial").exists()


def test_reconstruct_before_installing_says_to_install(managed: Path) -> None:
    add_sphere()
    before = scene_snapshot()
    with pytest.raises(RuntimeError, match="not installed yet: click Install backend"):
        bpy.ops.occnet.reconstruct()
    assert scene_snapshot() == before


def test_install_runs_pip_in_a_new_environment_and_checks_the_backend(managed: Path, tmp_path: Path,
                                                                      addon: ModuleType) -> None:
    """A requirements file without torch: pip really installs (offline, a local wheel), then the check
    starts the backend in the new environment, which reports the missing torch: the install fails and
    leaves nothing half-built behind."""
    wheel = probe_wheel(tmp_path)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"--no-index\n--find-links {tmp_path}\noccnet-probe==1.0\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="packages installed, but the backend does not start.*lacks.*torch"):
        bpy.ops.occnet.install_backend(requirements=str(requirements))
    job = addon.state.session().install
    assert job.state == "failed" and job.fraction >= 0.75
    log = job.log_path.read_text(encoding="utf-8")
    assert "-m venv" in log and "Successfully installed occnet-probe-1.0" in log and wheel.name in log
    assert not managed.exists() and not job.staging_dir.exists()
    assert "lacks" in bpy.context.window_manager.occnet_job.install_log


@pytest.mark.slow
def test_real_install_then_reconstruct(managed: Path, addon: ModuleType) -> None:
    """The bundled requirements, as a user's click installs them (PyTorch included), then a reconstruction
    through the managed environment's backend."""
    assert bpy.ops.occnet.install_backend() == {"FINISHED"}, bpy.context.window_manager.occnet_job.last_error
    python = addon.installer.env_python(managed)
    assert python.is_file() and not managed.with_name(managed.name + ".partial").exists()
    assert bpy.context.window_manager.occnet_job.backend_info.startswith("backend installed")
    add_sphere()
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    assert addon.state.session().backend.settings.python == str(python) and "Ball.occnet" in bpy.data.objects
