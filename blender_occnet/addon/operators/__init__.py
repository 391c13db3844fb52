"""The add-on's operators, one feature per module; registered in this order, unregistered in reverse."""

from __future__ import annotations

import bpy

from . import cancel, get_weights, import_binvox, install_backend, load_sample, reconstruct, test_backend

CLASSES = (*reconstruct.CLASSES, *cancel.CLASSES, *import_binvox.CLASSES, *test_backend.CLASSES,
           *install_backend.CLASSES, *get_weights.CLASSES, *load_sample.CLASSES)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(import_binvox.menu_import)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(import_binvox.menu_import)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
