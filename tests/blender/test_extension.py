"""The extension as users get it: the zip's layout, Install from Disk, enable/disable without leftovers."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import bpy

from tests.blender.blender_helpers import REPO, add_sphere, configure, scene_snapshot

CLASSES = {"OCCNET_OT_reconstruct": bpy.types.Operator, "OCCNET_OT_cancel": bpy.types.Operator,
           "OCCNET_OT_import_binvox": bpy.types.Operator, "OCCNET_OT_test_backend": bpy.types.Operator,
           "OCCNET_OT_install_backend": bpy.types.Operator, "OCCNET_OT_cancel_install": bpy.types.Operator,
           "OCCNET_OT_load_sample": bpy.types.Operator, "OCCNET_MT_samples": bpy.types.Menu,
           "OCCNET_PT_main": bpy.types.Panel, "OCCNET_PG_settings": bpy.types.PropertyGroup,
           "OCCNET_PG_object": bpy.types.PropertyGroup, "OCCNET_PG_job": bpy.types.PropertyGroup,
           "OCCNET_AP_preferences": bpy.types.AddonPreferences}
EVERYTHING = len(CLASSES) + 3 + 9 + 1 + 1 + 1  # classes, pointer properties, operators, menu entry, timer, session


def test_zip_holds_manifest_and_package_at_its_root(extension_zip: Path) -> None:
    assert extension_zip.name == "occnet-0.1.0.zip"
    names = zipfile.ZipFile(extension_zip).namelist()
    assert {"blender_manifest.toml", "__init__.py", "addon/__init__.py", "backend/__main__.py",
            "common/binvox.py", "common/protocol.py", "addon/api.py"} <= set(names)
    assert not [n for n in names if n.startswith(("training/", "tests/")) or "__pycache__" in n or n.endswith(".pyc")]


def test_installed_under_the_extension_id(installed: str) -> None:
    package = Path(sys.modules[installed].__file__ or "").parent
    assert installed == "bl_ext.user_default.occnet" and package.name == "occnet"
    # The backend is started as `python -m occnet.backend` with the repository folder on PYTHONPATH.
    assert sys.modules[f"{installed}.common.backend_client"].PACKAGE_DIR == package


# What the backend needs and Blender's Python lacks: nothing Blender loads may import them, directly or not.
BACKEND_ONLY = ("torch", "safetensors", "skimage", "trimesh", "fast_simplification", "yaml")

_BLOCKED_IMPORTS = """
import importlib.abc, importlib.util, pkgutil, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: Blender loads this module")
        return None
sys.meta_path.insert(0, Block())
import bpy
import blender_occnet
import blender_occnet.addon as addon
from blender_occnet import api
loaded = ["blender_occnet.addon"]
import blender_occnet.common as common
for package in (addon, common):
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        importlib.import_module(info.name)
        loaded.append(info.name)
addon.register()
addon.unregister()
leaked = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
assert not leaked, leaked
print(len(loaded))
"""


def test_nothing_blender_loads_imports_the_backend_s_packages() -> None:
    """Every add-on and common/ module and the scripting API are imported (and the add-on registered) in a fresh Python
    where torch and the backend's other packages cannot be imported: a transitive import through any module
    fails here."""
    done = subprocess.run([sys.executable, "-c", _BLOCKED_IMPORTS, ",".join(BACKEND_ONLY)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) >= 20  # every module under addon/ was imported


def package_imports(folder: str, when_loaded: bool = False) -> dict[str, set[str]]:
    """Each module under blender_occnet/<folder>/ -> every module it imports anywhere in its code (or, with
    `when_loaded`, outside its functions: what loading it loads), relative imports resolved (`from .. import x`
    counts as importing blender_occnet.x)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "blender_occnet" / folder).rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        package = parts[:-1]  # the package a relative import starts from (an __init__'s own)
        names = found.setdefault(".".join(parts), set())
        nodes = list(ast.parse(path.read_text(encoding="utf-8")).body)
        while nodes:
            node = nodes.pop()
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
                module = ".".join(filter(None, [base, node.module]))
                names.update([module] if node.module else [f"{module}.{alias.name}" for alias in node.names])
            elif not (when_loaded and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))):
                nodes.extend(ast.iter_child_nodes(node))
    return found


BLENDER_MODULES = {"bpy", "bpy_extras", "mathutils", "bmesh"}


def test_the_add_on_imports_only_common_and_itself() -> None:
    """The rule the folders state: of this package the add-on imports only common/ and itself, and common/
    only itself; loading either loads, beyond the standard library, only numpy (and Blender's modules in the
    add-on). (Only the torch side calls common/torch_env.apply_to_torch, which imports torch when called.)"""
    assert "blender_occnet.common.messages" in package_imports("addon")["blender_occnet.addon.jobs"]  # resolved
    for folder, allowed in (("addon", {"common", "addon"}), ("common", {"common"})):
        for module, names in package_imports(folder).items():
            ours = {name.split(".")[1] for name in names if name.startswith("blender_occnet.")}
            assert ours <= allowed, f"{module} imports blender_occnet.{sorted(ours - allowed)}"
        for module, names in package_imports(folder, when_loaded=True).items():
            others = {name.split(".")[0] for name in names} - {"blender_occnet", *sys.stdlib_module_names}
            assert others <= {"numpy"} | (BLENDER_MODULES if folder == "addon" else set()), (module, others)


def test_the_command_line_needs_no_bpy() -> None:
    code = "import sys; sys.modules['bpy'] = None; import blender_occnet; print(blender_occnet.__version__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def registered(module: str) -> list[str]:
    """Everything the add-on attaches to Blender that is still there."""
    found = [name for name, base in CLASSES.items() if base.bl_rna_get_subclass_py(name) is not None]
    found += [f"{t.__name__}.{p}" for t, p in ((bpy.types.Scene, "occnet"), (bpy.types.Object, "occnet"),
                                             (bpy.types.WindowManager, "occnet_job")) if hasattr(t, p)]
    found += [f"bpy.ops.occnet.{op}" for op in dir(bpy.ops.occnet)]
    draw_funcs = getattr(bpy.types.TOPBAR_MT_file_import.draw, "_draw_funcs", [])
    found += [f"menu {f.__module__}" for f in draw_funcs if f.__module__.startswith(module)]
    events = sys.modules.get(f"{module}.addon.events")
    if events is not None and bpy.app.timers.is_registered(events._timer):
        found.append("timer")
    state = sys.modules.get(f"{module}.addon.state")
    if state is not None and state.session_or_none() is not None:
        found.append("session")
    return found


def test_disable_and_enable_leave_nothing_behind(installed: str) -> None:
    assert len(registered(installed)) == EVERYTHING
    for _ in range(2):
        bpy.ops.preferences.addon_disable(module=installed)
        assert registered(installed) == []
        bpy.ops.preferences.addon_enable(module=installed)
        assert len(registered(installed)) == EVERYTHING


def test_disabling_mid_reconstruction_stops_it_and_the_backend(installed: str, addon: ModuleType,
                                                               weights_dir: Path) -> None:
    """Disable ends the session: the running batch stops (nothing of it is left), the backend process exits;
    enable starts a fresh session that reconstructs."""
    add_sphere()
    bpy.context.scene.occnet.resolution = "256"
    before = scene_snapshot()
    batch = addon.operators.reconstruct.begin(bpy.context, block=True)
    assert batch.state == "running"
    session, process = addon.state.session(), batch.client._process
    bpy.ops.preferences.addon_disable(module=installed)
    try:
        assert batch.state == "failed" and batch.message == "the add-on was disabled"
        assert process.wait(timeout=30) is not None and not batch.client.alive
        assert scene_snapshot() == before
    finally:
        bpy.ops.preferences.addon_enable(module=installed)
    assert addon.state.session() is not session and addon.state.session().backend.current() is None
    configure(weights_dir)  # the preferences went with the add-on
    bpy.context.scene.occnet.resolution = "32"
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}


def test_only_the_session_module_keeps_state() -> None:
    """No add-on module but state.py rebinds a global, nor holds a mutable container at module level: what
    the add-on keeps lives in the session, which unregister() ends."""
    for path in sorted((REPO / "blender_occnet" / "addon").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rebinds = [node.names for node in ast.walk(tree) if isinstance(node, ast.Global)]
        assert not rebinds or path.name == "state.py", f"{path.name} rebinds {rebinds}"
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, (ast.Dict, ast.List, ast.Set)):
                names = [t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                         if isinstance(t, ast.Name)]
                assert all(name.isupper() or name == "__all__" for name in names), \
                    f"{path.name}: mutable module state {names}"
