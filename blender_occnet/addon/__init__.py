"""The Blender add-on (bpy, numpy and the backend client only; never torch): registers properties,
preferences, operators and panels in order and removes them in reverse."""

from __future__ import annotations

from . import backend_session, events, jobs, live, operators, panels, preferences, properties

MODULES = (properties, preferences, operators, panels, events)


def register() -> None:
    for module in MODULES:
        module.register()


def unregister() -> None:
    jobs.unregister()
    live.unregister()
    backend_session.shutdown()
    for module in reversed(MODULES):
        module.unregister()
