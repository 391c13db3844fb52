"""Property groups: job settings on Scene (`scene.occnet`), per-object records (`object.occnet`), and
transient job state on WindowManager (`window_manager.occnet_job`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..common.architectures import SHIPPED
from ..common.settings import SETTINGS, SIDEBAR, Setting
from ..common.weights_catalogue import ORIGINAL_SUFFIXES, WEIGHTS_SUFFIX, is_original_checkpoint, weights_files
from . import live, preferences

# For an original checkpoint: the architecture its file holds, told from its keys or chosen from those shipped.
ARCHS = [("AUTO", "From the file", "Told from the checkpoint's keys (always right for our own .safetensors)")] + [
    (a.name, a.shown, a.label) for a in SHIPPED.values()]


def weights_suggestions(settings: Any, context: bpy.types.Context, typed: str) -> list[str]:
    """What the Weights field offers by name: the preferences' weights folder, then the folders the backend
    searches, in its order (weights_catalogue.search_dirs); original checkpoints there by path."""
    folder = preferences.get(context).weights_dir
    extra = [Path(bpy.path.abspath(folder))] if folder else []
    names = [path.stem if path.suffix == WEIGHTS_SUFFIX else str(path)
             for path in weights_files(extra, (WEIGHTS_SUFFIX, *ORIGINAL_SUFFIXES))]
    return [name for name in dict.fromkeys(names) if typed.lower() in name.lower()]


INT_MAX = 2 ** 31 - 1  # what an IntProperty holds


def blender_property(setting: Setting, **options: Any) -> Any:
    """The bpy property of a declared setting (common/settings.py): its label, tooltip, bounds or choices and
    default; `options` adds to them or replaces them (SKIP_SAVE, an update callback, another description)."""
    common: dict[str, Any] = {"name": setting.label, "description": setting.tooltip}
    default = setting.fallback if setting.default is None else setting.default
    if setting.choices:
        return EnumProperty(**{**common, "items": [(c.identifier, c.label, c.tooltip) for c in setting.choices],
                               "default": next(c.identifier for c in setting.choices if c.value == default),
                               **options})
    if setting.kind is bool:
        return BoolProperty(**{**common, "default": default, **options})
    lo, hi = setting.ui_range or (setting.lo, setting.hi)
    if setting.kind is int:
        return IntProperty(**{**common, "default": default, "min": int(lo if lo is not None else -INT_MAX),
                              "max": int(min(hi if hi is not None else INT_MAX, INT_MAX)), **options})
    if setting.kind is float:
        return FloatProperty(**{**common, "default": default, "precision": setting.precision,
                                **({"min": lo} if lo is not None else {}), **({"max": hi} if hi is not None else {}),
                                **options})
    return StringProperty(**{**common, "default": default, **options})


def unset_property(setting: Setting, **options: Any) -> Any:
    """The switch of a setting whose default is unset (the weights' own): on, the value is not sent."""
    return BoolProperty(**{"name": setting.unset_label, "description": setting.unset_tooltip, "default": True,
                           **options})


def setting_properties(declared: tuple[Setting, ...], **options: Any) -> dict[str, Any]:
    """Annotations for a property group or an operator: each declared setting's property, its unset switch
    (use_weights_threshold) before it."""
    made: dict[str, Any] = {}
    for setting in declared:
        if setting.unset_name:
            made[setting.unset_name] = unset_property(setting, **options)
        made[setting.name] = blender_property(setting, **options)
    return made


def setting_value(setting: Setting, owner: Any) -> Any:
    """The request value of a declared setting as `owner` (scene.occnet, the operator) holds it: None when its
    unset switch is on, the choice's value for an enum."""
    if setting.unset_name and getattr(owner, setting.unset_name):
        return None
    value = getattr(owner, setting.name)
    if setting.choices:
        return setting.choice(value).value
    return setting.kind(value)


def request_settings(settings: Any) -> dict[str, Any]:
    """scene.occnet -> the backend's request fields (one to one)."""
    weights = settings.weights.strip()
    original = is_original_checkpoint(weights)  # only those may need the architecture told
    return {"weights": bpy.path.abspath(weights) if weights.startswith("//") else (weights or None),
            "arch": settings.arch if original and settings.arch != "AUTO" else None,
            **{setting.name: setting_value(setting, settings) for setting in SIDEBAR}}


class OCCNET_PG_settings(bpy.types.PropertyGroup):
    """One scene's reconstruction settings; names match the generation API's."""

    weights: StringProperty(  # type: ignore[valid-type]
        name="Weights", default="", search=weights_suggestions, search_options={"SUGGESTION"},
        description="Weights name (bundled or in the preferences' folder) or a file path (.safetensors, or an "
                    "original .pt); empty: the first weights for the source's kind (the bundled ones: for a dense "
                    "point cloud their 64x64-plane pointcloud_fine)")
    arch: EnumProperty(  # type: ignore[valid-type]
        name="Architecture", items=ARCHS, default="AUTO",
        description="For original .pt checkpoints: the network the file holds")
    # ... and a property for each declared sidebar setting (below the class: setting_properties(SIDEBAR)).
    source_kind: EnumProperty(  # type: ignore[valid-type]
        name="Source", default="SURFACE",
        description="What the network is given: points sampled on the mesh's faces, its vertices as they are, the "
                    "mesh voxelised at 32³ (for voxel weights), or an image",
        items=[("SURFACE", "Surface samples", "Points sampled on a mesh's faces (its vertices when it has none)"),
               ("VERTICES", "Vertices", "The vertices (or points) as they are"),
               ("VOXELIZE", "Voxelised mesh", "The mesh voxelised at 32³ (inside tests that tolerate holes), for "
                                              "voxel weights"),
               ("IMAGE", "Image", "An image of one object (white or transparent background); the result "
                                  "appears at the 3D cursor")])
    hide_source: BoolProperty(  # type: ignore[valid-type]
        name="Hide source", default=True,
        description="Hide the source object once its result exists, so the two can be told apart (undo brings "
                    "it back; the source is kept)")
    image: PointerProperty(  # type: ignore[valid-type]
        name="Image", type=bpy.types.Image, description="The image to reconstruct from (Source: Image)")


class OCCNET_PG_object(bpy.types.PropertyGroup):
    """What an object is to the add-on: a reconstruction (its job and parameters) or a voxel source."""

    kind: EnumProperty(  # type: ignore[valid-type]
        name="Kind", default="NONE",
        items=[("NONE", "None", ""), ("RESULT", "Reconstruction", ""), ("VOXELS", "Voxel source", "")])
    job: StringProperty(name="Backend job", default="")  # type: ignore[valid-type]
    source: StringProperty(name="Source object", default="")  # type: ignore[valid-type]
    weights: StringProperty(name="Weights", default="")  # type: ignore[valid-type]
    # What the source was read as (pointcloud, voxels, image): a point cloud's result offers Trim unseen. Results
    # saved before it was recorded hold "" and offer none (their backend job, which a trim re-extracts, is gone).
    modality: StringProperty(name="Source read as", default="", options={"HIDDEN"})  # type: ignore[valid-type]
    # ... and its threshold, resolution and trim (below the class), whose changes re-extract it; its fit and
    # use_weights_threshold are kept for the files that hold them.
    # The values the mesh was extracted at (scene_io.extraction_key): an undo step can hold a slider's new value
    # over the mesh of the old one, which live.reconcile then extracts again.
    extracted: StringProperty(name="Extracted at", default="", options={"HIDDEN"})  # type: ignore[valid-type]


OCCNET_PG_settings.__annotations__.update(setting_properties(SIDEBAR))
OCCNET_PG_object.__annotations__.update({
    "use_weights_threshold": unset_property(SETTINGS["threshold"]), "fit": blender_property(SETTINGS["fit"]),
    "threshold": blender_property(SETTINGS["threshold"], update=live.on_parameter_changed,
                                  description="Change to re-extract this reconstruction from the backend's kept grid"),
    "resolution": blender_property(SETTINGS["resolution"], update=live.on_parameter_changed),
    "trim_unseen": blender_property(SETTINGS["trim_unseen"], update=live.on_parameter_changed)})


class OCCNET_PG_job(bpy.types.PropertyGroup):
    """The running job's state for the panel (not saved in files)."""

    running: BoolProperty(default=False)  # type: ignore[valid-type]
    stage: StringProperty(default="")  # type: ignore[valid-type]
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")  # type: ignore[valid-type]
    last_result: StringProperty(default="")  # type: ignore[valid-type]
    last_error: StringProperty(default="")  # type: ignore[valid-type]
    backend_info: StringProperty(default="")  # type: ignore[valid-type]
    install_log: StringProperty(default="")  # type: ignore[valid-type]  # the last install's last lines


CLASSES = (OCCNET_PG_settings, OCCNET_PG_object, OCCNET_PG_job)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    # The stubs type PointerProperty() as returning None, and know nothing of these new attributes.
    bpy.types.Scene.occnet = PointerProperty(type=OCCNET_PG_settings)  # type: ignore
    bpy.types.Object.occnet = PointerProperty(type=OCCNET_PG_object)  # type: ignore
    bpy.types.WindowManager.occnet_job = PointerProperty(type=OCCNET_PG_job)  # type: ignore


def unregister() -> None:
    del bpy.types.WindowManager.occnet_job  # type: ignore[attr-defined]
    del bpy.types.Object.occnet  # type: ignore[attr-defined]
    del bpy.types.Scene.occnet  # type: ignore[attr-defined]
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
