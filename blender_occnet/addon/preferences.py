"""Machine-level settings (AddonPreferences): where the backend runs and where weights live."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from . import installer, router, state, torch_builds, weights_download
from .connection import BackendSettings
from .worker import DONE

# The extension's own module name (bl_ext.<repo>.occnet, or blender_occnet from a checkout): never hard-coded.
PACKAGE = __package__.rpartition(".")[0]


class OCCNET_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    backend_mode: EnumProperty(  # type: ignore[valid-type]
        name="Backend", default="MANAGED",
        items=[("MANAGED", "Managed", "The add-on's own Python environment, made by Install backend"),
               ("LOCAL", "Custom interpreter", "Run the backend with a Python interpreter of yours on this machine"),
               ("REMOTE", "Remote", "Connect to a backend started with `serve --port` (e.g. a GPU machine)")])
    python_path: StringProperty(  # type: ignore[valid-type]
        name="Python interpreter", subtype="FILE_PATH", default="",
        description="A Python 3 interpreter with PyTorch and the backend's requirements")
    remote_host: StringProperty(name="Host", default="127.0.0.1")  # type: ignore[valid-type]
    remote_port: IntProperty(name="Port", default=8765, min=1, max=65535)  # type: ignore[valid-type]
    remote_token: StringProperty(name="Token", subtype="PASSWORD", default="")  # type: ignore[valid-type]
    weights_dir: StringProperty(  # type: ignore[valid-type]
        name="Weights folder", subtype="DIR_PATH", default="",
        description="A folder of .safetensors weights, searched before the bundled ones")
    torch_build: EnumProperty(  # type: ignore[valid-type]
        name="PyTorch build", default="AUTO",
        description="Which PyTorch Install backend takes: Automatic picks it for this platform and GPU",
        items=[("AUTO", "Automatic", "Linux: the default build; Windows: a CUDA build when an NVIDIA GPU is "
                                     "found, else the CPU build; macOS (Apple silicon): the standard build, with MPS"),
               ("CPU", "CPU only", "The CPU build (a smaller download; no GPU)"),
               ("CU126", "CUDA 12.6", "For NVIDIA drivers that support CUDA 12.6"),
               ("CU128", "CUDA 12.8", "For NVIDIA drivers that support CUDA 12.8")])
    cpu_threads: IntProperty(  # type: ignore[valid-type]
        name="CPU threads", default=0, min=0, max=256,
        description="Threads the network uses on the CPU. 0: automatic, every core but one (left for Blender). "
                    "More is faster on an idle machine; fewer keeps Blender responsive while it works")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        assert layout is not None
        layout.prop(self, "backend_mode", expand=True)
        if self.backend_mode == "MANAGED":
            _draw_managed(layout, self)
        elif self.backend_mode == "LOCAL":
            layout.prop(self, "python_path")
        else:
            layout.prop(self, "remote_host")
            layout.prop(self, "remote_port")
            layout.prop(self, "remote_token")
        layout.prop(self, "weights_dir")
        _draw_released(layout, self.backend_mode)
        if self.backend_mode != "REMOTE":  # a remote backend's threads are set where it runs (serve --threads)
            layout.prop(self, "cpu_threads")
        layout.operator("occnet.test_backend", icon="CHECKMARK")
        status = router.status()
        if status.backend_info:
            layout.label(text=status.backend_info, icon="INFO")


def _draw_managed(layout: bpy.types.UILayout, prefs: OCCNET_AP_preferences) -> None:
    facts = torch_builds.detect()
    build = torch_builds.choose(facts, prefs.torch_build)
    row = layout.row()
    row.prop(prefs, "torch_build")
    gpu = "an NVIDIA GPU" if facts.nvidia_gpu else "no NVIDIA GPU"
    layout.label(text=f"{facts.system} {facts.machine}, {gpu}: {build.label if build.supported else build.reason}",
                 icon="INFO" if build.supported else "ERROR")

    env = managed_env_dir()
    job = state.session().install
    if job is not None and job.state not in DONE:
        row = layout.row(align=True)
        row.progress(factor=job.fraction, type="BAR", text=job.stage or "installing")
        row.operator("occnet.cancel_install", text="", icon="CANCEL")
        lines = [line for line in job.lines if line.strip()][-4:]
    else:
        installed = installer.is_installed(env)
        layout.label(text=f"Installed in {env}" if installed else "Not installed yet: Install backend downloads "
                     "PyTorch and the other requirements (about 1 GB)", icon="CHECKMARK" if installed else "INFO")
        layout.operator("occnet.install_backend", text="Reinstall backend" if installed else "Install backend",
                        icon="IMPORT")
        lines = router.status().install_log.splitlines()[-4:]
    for line in lines:
        layout.label(text=line[:120])


def _draw_released(layout: bpy.types.UILayout, backend_mode: str) -> None:
    """The authors' released weights, each with Get (or Installed), and the running download."""
    box = layout.box()
    box.label(text=f"Released weights (the authors', trained on ShapeNet; into {weights_download.user_weights_dir()})")
    job = state.session().download
    if job is not None and job.state not in DONE:
        row = box.row(align=True)
        row.progress(factor=job.fraction, type="BAR", text=job.message[:90])
        row.operator("occnet.cancel_weights_download", text="", icon="CANCEL")
    elif job is not None and job.state != "finished":
        box.label(text=job.message[:120], icon="ERROR" if job.state == "failed" else "INFO")
    for entry in weights_download.released_entries():
        if not entry["loadable"]:
            continue
        row = box.row()
        size = f", {entry['values'] / 1e6:.1f}M values" if entry.get("values") else ""
        row.label(text=f"{entry['name']}: {entry.get('note', '')}{size}")
        if weights_download.installed(entry["name"]):
            row.label(text="Installed", icon="CHECKMARK")
        else:
            sub = row.row()
            sub.enabled = backend_mode != "REMOTE"
            sub.operator("occnet.get_weights", text="Get", icon="IMPORT").name = entry["name"]


def managed_env_dir() -> Path:
    """Where Install backend puts the managed environment: the extension's own user folder."""
    try:
        base = bpy.utils.extension_path_user(PACKAGE, create=True)
    except ValueError:  # loaded from a checkout on sys.path rather than as an extension
        base = bpy.utils.user_resource("CONFIG", path="occnet", create=True)
    return Path(base) / "backend-env"


def get(context: bpy.types.Context) -> OCCNET_AP_preferences:
    assert context.preferences is not None
    return context.preferences.addons[PACKAGE].preferences  # type: ignore[return-value]


def backend_settings(context: bpy.types.Context) -> BackendSettings:
    """The preferences as plain data for the session's backend (read on the main thread)."""
    prefs = get(context)
    folder = bpy.path.abspath(prefs.weights_dir) if prefs.weights_dir else ""
    if prefs.backend_mode == "MANAGED":
        python = str(installer.env_python(managed_env_dir()))
    else:
        python = bpy.path.abspath(prefs.python_path) if prefs.python_path else ""
    return BackendSettings(prefs.backend_mode, python,
                           prefs.remote_host, prefs.remote_port, prefs.remote_token,
                           (folder,) if folder else (), prefs.cpu_threads)


def register() -> None:
    bpy.utils.register_class(OCCNET_AP_preferences)


def unregister() -> None:
    bpy.utils.unregister_class(OCCNET_AP_preferences)
