"""The panel and the preferences draw in every state without errors, and name only real properties
(module mode has no UI to draw into, so a recording layout stands in for it)."""

from __future__ import annotations

import sys
import types
from types import ModuleType
from typing import Any

import bpy
import pytest

from tests.blender.blender_helpers import MODULE, add_sphere


class Layout:
    """Records what a draw function asks for; checks every prop() names a property of its data."""

    def __init__(self, calls: list[tuple[str, Any]]):
        self.calls = calls

    def prop(self, data: Any, name: str, text: str | None = None, **_: Any) -> None:
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self.calls.append(("prop", name))
        if text is not None:  # the label it is drawn with, when not the property's own
            self.calls.append(("prop text", text))

    def operator(self, idname: str, **_: Any) -> types.SimpleNamespace:
        module, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, module), name), idname
        self.calls.append(("operator", idname))
        return types.SimpleNamespace()  # what the draw code sets on it, as on OperatorProperties

    def menu(self, menu: str, **_: Any) -> None:
        assert hasattr(bpy.types, menu), menu
        self.calls.append(("menu", menu))

    def label(self, text: str = "", **_: Any) -> None:
        self.calls.append(("label", text))

    def progress(self, **kwargs: Any) -> None:
        self.calls.append(("progress", kwargs))

    def __getattr__(self, name: str) -> Any:  # row, column, box, ...
        return lambda *args, **kwargs: Layout(self.calls)


def draw(cls: type, context: Any, data: Any = None) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []
    owner = data if data is not None else type("Panel", (), {})()
    owner.layout = Layout(calls)
    cls.draw(owner, context)
    return calls


@pytest.mark.usefixtures("installed")
def test_panel_in_each_state(addon: ModuleType) -> None:
    panel = sys.modules[f"{MODULE}.addon.panels"].OCCNET_PT_main
    calls = draw(panel, bpy.context)
    assert ("label", "Select a mesh or point cloud object") in calls and ("operator", "occnet.reconstruct") in calls
    assert ("menu", "OCCNET_MT_samples") in calls
    add_sphere()
    state = bpy.context.window_manager.occnet_job
    state.running, state.stage, state.progress = True, "evaluating", 0.4
    calls = draw(panel, bpy.context)
    assert ("progress", {"factor": pytest.approx(0.4), "type": "BAR", "text": "evaluating"}) in calls
    assert ("operator", "occnet.cancel") in calls
    state.running, state.last_error = False, "the backend stopped; set the interpreter " * 3
    assert len([c for c in draw(panel, bpy.context) if c[0] == "label"]) >= 3  # wrapped over lines
    # A batch some of whose sources failed: what was made, and what failed by name.
    state.last_result, state.last_error = "2 of 3 reconstructed in 1.0 s: A.occnet, B.occnet", "1 failed: 'Bad': why"
    calls = draw(panel, bpy.context)
    assert ("label", state.last_result) in calls and ("label", state.last_error) in calls
    state.last_result = state.last_error = ""
    bpy.ops.occnet.reconstruct()
    calls = draw(panel, bpy.context)
    assert ("prop", "threshold") in calls and any(c[0] == "label" and "faces" in c[1] for c in calls)
    assert calls.count(("prop", "threshold")) == 2  # the scene's and the result's (live)


@pytest.mark.usefixtures("installed")
def test_preferences_in_every_mode() -> None:
    prefs = bpy.context.preferences.addons[MODULE].preferences
    for mode in ("MANAGED", "LOCAL", "REMOTE"):
        prefs.backend_mode = mode
        calls = draw(type(prefs), bpy.context, prefs)
        assert ("operator", "occnet.test_backend") in calls
        assert (("operator", "occnet.install_backend") in calls) == (mode == "MANAGED")
        assert (("prop", "python_path") in calls) == (mode == "LOCAL")
        assert (("prop", "remote_token") in calls) == (mode == "REMOTE")


@pytest.mark.usefixtures("installed")
def test_preferences_show_a_running_install(addon: ModuleType, tmp_path: Any) -> None:
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.backend_mode = "MANAGED"
    job = addon.installer.Installer(tmp_path / "env")  # never started: its state is 'running'
    job.stage, job.fraction = "downloading torch", 0.3
    job.lines.append("Collecting torch==2.13.0")
    session = addon.state.session()
    session.install = job
    try:
        calls = draw(type(prefs), bpy.context, prefs)
    finally:
        session.install = None
    assert ("progress", {"factor": pytest.approx(0.3), "type": "BAR", "text": "downloading torch"}) in calls
    assert ("operator", "occnet.cancel_install") in calls and ("label", "Collecting torch==2.13.0") in calls


@pytest.mark.usefixtures("installed")
def test_preferences_list_the_released_weights_and_a_running_download(addon: ModuleType) -> None:
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.backend_mode = "LOCAL"
    calls = draw(type(prefs), bpy.context, prefs)
    usable = [e for e in addon.weights_download.released_entries() if e["loadable"]]
    assert calls.count(("operator", "occnet.get_weights")) == len(usable) == 11
    assert any(c[0] == "label" and c[1].startswith("onet-img-shapenet: ") for c in calls)
    job = addon.weights_download.Download("python", "onet-img-shapenet")  # never started: 'running'
    job.fraction, job.message = 0.25, "downloading onet-img-shapenet: 10.0 MB of 40.0 MB"
    session = addon.state.session()
    session.download = job
    try:
        calls = draw(type(prefs), bpy.context, prefs)
    finally:
        session.download = None
    assert ("progress", {"factor": pytest.approx(0.25), "type": "BAR", "text": job.message}) in calls
    assert ("operator", "occnet.cancel_weights_download") in calls


def test_architecture_choices_cover_every_architecture(addon: ModuleType) -> None:
    """The add-on cannot import the core; its Architecture list must still name every network the core builds."""
    from blender_occnet.occnet.config import ARCH_MODALITY

    assert [a for a, *_ in addon.properties.ARCHS if a != "AUTO"] == list(ARCH_MODALITY)


@pytest.mark.usefixtures("installed")
def test_showing_the_panel_starts_the_backend_for_the_first_click(addon: ModuleType) -> None:
    """The panel's draw starts the backend on a thread (never waiting for it); the first Reconstruct
    then uses that backend rather than starting one."""
    import time

    backend = addon.state.session().backend
    backend.shutdown()
    panel = sys.modules[f"{MODULE}.addon.panels"].OCCNET_PT_main
    draw(panel, bpy.context)
    draw(panel, bpy.context)  # a second draw starts nothing more
    deadline = time.monotonic() + 120
    while (backend.current() is None or not backend.current().alive) and time.monotonic() < deadline:
        time.sleep(0.1)
    warmed = backend.current()
    assert warmed is not None and warmed.alive
    add_sphere()
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    assert backend.current() is warmed
