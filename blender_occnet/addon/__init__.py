"""The Blender add-on: properties, preferences, operators and panels, registered in order and removed in
reverse, and the session (state.py) that holds everything the add-on keeps while enabled: the backend
client, the reconstruction the panel shows, the install and download the preferences show, the live
re-extractions and the backend jobs whose events are awaited. register() opens it, unregister() closes it;
no other module keeps mutable state.

Imports: bpy, numpy and the standard library; of the rest of the package only ../common/ (stdlib + numpy),
never the torch side, occnet/, backend/, cli.py (tests/blender/test_extension.py checks it).
Within the add-on, imports point one way: the low modules (geometry, scene_io, connection, router, jobs,
installer, weights_download, worker, torch_builds) know nothing of the session; state.py holds them; the
Blender-facing modules (live, preferences, properties, panels, operators, events, backend_session) and
api.py (the scripting API, `from <extension> import api`) reach the session through `state.session()`."""

from __future__ import annotations

# backend_session is loaded for code that drives the add-on from outside (demo.py, the benches).
from . import backend_session, events, live, operators, panels, preferences, properties, state  # noqa: F401

MODULES = (properties, preferences, operators, panels, events, live)


def register() -> None:
    state.open_session()
    for module in MODULES:
        module.register()


def unregister() -> None:
    state.close_session()  # first: a batch it stops still reports on the window manager's job status
    for module in reversed(MODULES):
        module.unregister()
