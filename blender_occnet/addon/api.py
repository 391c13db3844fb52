"""The scripting API: reconstruct objects from Python in Blender, through the very path the Reconstruct button
takes (the add-on session's jobs.Batch), synchronously. In Blender, with the extension enabled:

    from bl_ext.user_default.occnet import api
    mesh = api.reconstruct(bpy.data.objects["Scan"], resolution=256, refine_steps=30)
    for made in api.reconstruct_many(bpy.context.selected_objects, weights="pointcloud"):
        print(made.source, made.object.name if made.object else made.error)

Settings are the ones common/settings.py declares for a request (REQUEST_FIELDS, checked as the backend checks
them; an unknown keyword names the valid ones): threshold (None: the weights' own), resolution, refine_steps,
refine_method, simplify_faces, normals, seed, colours (True, the default: a source's colour attribute onto the
result), device, fit ('auto', the default, 'on' or 'off': point clouds' features fitted to every point),
input_points; and weights (None: the first for the source's kind, for a dense point cloud the bundled
pointcloud_fine if that first is the bundled pointcloud) and arch.
`source_kind` says how a mesh is read (SURFACE: points on its faces, the
default; VERTICES; VOXELIZE: voxelised at 32³ for voxel weights); a voxel object
is always read as its voxels, a point cloud as its points, and an image (bpy.types.Image) gives a result at
the 3D cursor. The scene's OccNet panel settings are not read. The backend is the one the preferences set.
Unlike the button, the sources stay visible unless `hide_source=True`, and no undo step is pushed (a
script run from the Text Editor is one undo step as a whole).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from ..common.messages import FieldError, Reconstruct
from ..common.settings import SENT, SETTINGS
from . import jobs, preferences, scene_io, state

# The declared settings a request carries (common/settings.py) and which weights.
REQUEST_FIELDS = (*(setting.name for setting in SENT), "weights", "arch")
RESOLUTION = SETTINGS["resolution"].default
SOURCE_KINDS = ("SURFACE", "VERTICES", "VOXELIZE")
TIMEOUT = 3600.0


class ReconstructError(RuntimeError):
    """A reconstruction that failed or could not start; the message is the one the Reconstruct button
    reports. The scene is as it was before the call."""


@dataclass
class Reconstruction:
    """One source's outcome in reconstruct_many: the new object, or None and why."""

    source: str  # the source object's (or image's) name
    object: bpy.types.Object | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.object is not None


def reconstruct(obj: bpy.types.Object | bpy.types.Image, weights: str | None = None, resolution: int = RESOLUTION,
                threshold: float | None = None, *, source_kind: str = "SURFACE", hide_source: bool = False,
                timeout: float = TIMEOUT, **settings: Any) -> bpy.types.Object:
    """A new mesh object reconstructed from `obj`, placed over it (an image's at the 3D cursor), named
    '<source>.occnet'. Blocks until the mesh is in the scene; raises ReconstructError with the button's
    message, leaving the scene as it was."""
    [made] = reconstruct_many([obj], weights, resolution, threshold, source_kind=source_kind,
                              hide_source=hide_source, timeout=timeout, **settings)
    if made.object is None:
        raise ReconstructError(made.error)
    return made.object


def reconstruct_many(objects: Iterable[bpy.types.Object | bpy.types.Image], weights: str | None = None,
                     resolution: int = RESOLUTION, threshold: float | None = None, *, source_kind: str = "SURFACE",
                     hide_source: bool = False, timeout: float = TIMEOUT,
                     **settings: Any) -> list[Reconstruction]:
    """Every source's reconstruction, one backend job each, as one click on Reconstruct with them selected
    makes them: a source that fails leaves nothing of it and does not stop the others. One Reconstruction per
    source, in order. Raises ReconstructError only when nothing can start (no backend settings, a bad
    setting, a reconstruction already running)."""
    targets = [_target(obj, source_kind) for obj in objects]
    if not targets:
        return []
    request = _request(weights=weights, resolution=resolution, threshold=threshold, **settings)
    context = bpy.context
    scene, view_layer = context.scene, context.view_layer
    if scene is None or view_layer is None:
        raise ReconstructError("no scene to reconstruct in")
    try:
        session = state.session()
        batch = session.reconstruct(targets, request, preferences.backend_settings(context), scene, view_layer,
                                    hide_source=hide_source, block=True)
    except (state.NotEnabled, jobs.StartError) as exc:
        raise ReconstructError(str(exc)) from None
    try:
        jobs.wait(batch, timeout)
    except BaseException:  # interrupted (Ctrl+C in a console): nothing may keep running for the panel
        batch.abandon("interrupted")
        raise
    return [Reconstruction(item.name, bpy.data.objects.get(item.result) if item.result else None,
                           "" if item.state == "finished" else item.message) for item in batch.items]


def _target(obj: Any, source_kind: str) -> jobs.Target:
    if isinstance(obj, bpy.types.Image):
        return jobs.Target(obj, "IMAGE")
    kind = source_kind.upper()
    if kind not in SOURCE_KINDS:
        raise ReconstructError(f"source_kind must be one of {', '.join(SOURCE_KINDS)}, got {source_kind!r}")
    if not isinstance(obj, bpy.types.Object):
        raise ReconstructError(f"a source must be a mesh, point cloud or voxel object or an image, got {obj!r}")
    return jobs.Target(obj, scene_io.object_kind(obj, kind) if obj.type in scene_io.SOURCE_TYPES else kind)


def _request(**fields: Any) -> dict[str, Any]:
    """The request fields given (None: left to the backend), their values checked as the backend checks them."""
    unknown = sorted(set(fields) - set(REQUEST_FIELDS))
    if unknown:
        raise TypeError(f"unknown setting {unknown[0]!r}; the settings are {', '.join(REQUEST_FIELDS)}")
    given = {name: value for name, value in fields.items() if value is not None}
    try:  # a request with these values, and an empty grid standing in for the sources (read later)
        Reconstruct(modality="voxels", input=np.zeros((32, 32, 32), np.uint8), **given)
    except FieldError as exc:
        raise ReconstructError(str(exc)) from None
    return given


__all__ = ["ReconstructError", "Reconstruction", "reconstruct", "reconstruct_many"]
