"""Property groups: job settings on Scene (`scene.occnet`), per-object records (`object.occnet`), and
transient job state on WindowManager (`window_manager.occnet_job`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..common import messages
from ..common.architectures import SHIPPED
from ..common.weights_catalogue import ORIGINAL_SUFFIXES, WEIGHTS_SUFFIX, is_original_checkpoint, weights_files
from . import live, preferences

# The grid sizes the backend accepts (messages.RESOLUTIONS). The time grows with the surface's cells, about 4x
# per doubling; the largest also needs memory the backend checks for (it refuses, with the figures, if short).
GPU_ONLY = 512
RESOLUTIONS = [(str(n), f"{n}³", f"Extract the surface on a {n}³ grid (MISE from {messages.coarse_resolution(n)}³): "
                                  f"finer detail, about {(n // messages.RESOLUTIONS[0]) ** 2}x the time of "
                                  f"{messages.RESOLUTIONS[0]}³"
                                  + ("; needs a GPU, or minutes on a CPU" if n >= GPU_ONLY else ""))
               for n in messages.RESOLUTIONS]


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


def request_settings(settings: Any) -> dict[str, Any]:
    """scene.occnet -> the backend's request fields (one to one)."""
    weights = settings.weights.strip()
    original = is_original_checkpoint(weights)  # only those may need the architecture told
    return {"weights": bpy.path.abspath(weights) if weights.startswith("//") else (weights or None),
            "arch": settings.arch if original and settings.arch != "AUTO" else None,
            "device": settings.device, "resolution": int(settings.resolution),
            "threshold": None if settings.use_weights_threshold else float(settings.threshold),
            "refine_steps": int(settings.refine_steps), "fit": settings.fit.lower(), "colours": bool(settings.colours),
            "simplify_faces": int(settings.simplify_faces), "input_points": int(settings.input_points)}


COLOURS_DESCRIPTION = ("Give the result the source's colours (its colour attribute: a scan's vertex colours), each "
                       "vertex the colour of the source points nearest it; shown in Solid (Attribute colour) and "
                       "Material Preview. Off: a plain mesh. Sources without colours are not affected")

FIT_CHOICES = [("AUTO", "Auto", "Fit where it helps: local-feature weights (the bundled ones) on point clouds"),
               ("ON", "On", "Always fit (an error for weights or inputs that cannot be fitted)"),
               ("OFF", "Off", "The network's prediction as it is (faster; the style of its training shapes)")]


class OCCNET_PG_settings(bpy.types.PropertyGroup):
    """One scene's reconstruction settings; names match the generation API's."""

    weights: StringProperty(  # type: ignore[valid-type]
        name="Weights", default="", search=weights_suggestions, search_options={"SUGGESTION"},
        description="Weights name (bundled or in the preferences' folder) or a file path (.safetensors, or an "
                    "original .pt); empty: the first weights for the source's kind")
    arch: EnumProperty(  # type: ignore[valid-type]
        name="Architecture", items=ARCHS, default="AUTO",
        description="For original .pt checkpoints: the network the file holds")
    resolution: EnumProperty(  # type: ignore[valid-type]
        name="Resolution", items=RESOLUTIONS, default="128",
        description="Cells per side of the grid the surface is extracted on: more cells keep thinner parts and "
                    "cost about four times the time per step (128³: seconds on a CPU; 256³: about four times that)")
    use_weights_threshold: BoolProperty(  # type: ignore[valid-type]
        name="Weights' threshold", default=True,
        description="Mesh at the threshold the weights were calibrated with (their model card's); off: the "
                    "Threshold below")
    fit: EnumProperty(  # type: ignore[valid-type]
        name="Fit to points", items=FIT_CHOICES, default="AUTO",
        description="Point clouds: adapt the network's local features to every input point before meshing, so "
                    "the surface passes through the scan and the network only completes what it does not show "
                    "(a second or two on a CPU)")
    threshold: FloatProperty(  # type: ignore[valid-type]
        name="Threshold", default=0.2, min=0.01, max=0.99, precision=3,
        description="Occupancy probability at the surface: lower grows the shape, higher shrinks it")
    colours: BoolProperty(  # type: ignore[valid-type]
        name="Colours", default=True, description=COLOURS_DESCRIPTION)
    refine_steps: IntProperty(  # type: ignore[valid-type]
        name="Refine steps", default=0, min=0, max=200,
        description="At most this many steps that move each vertex onto the network's surface (the paper used "
                    "30); a vertex stops once it is there, so 30 steps cost about as much as the extraction")
    input_points: IntProperty(  # type: ignore[valid-type]
        name="Input points", default=0, min=0, max=5_000_000,
        description="Point clouds: how many points the network is given. 0: automatic (a local-feature "
                    "network takes every point up to 20,000; a global one the 300 it was trained on). More "
                    "points keep more detail and cost a little more time")
    simplify_faces: IntProperty(  # type: ignore[valid-type]
        name="Simplify to", default=0, min=0, description="Target face count (0: no simplification)")
    device: EnumProperty(  # type: ignore[valid-type]
        name="Device", default="auto",
        description="Where the network runs: a GPU is many times faster than the CPU for 256³ and refinement",
        items=[("auto", "Auto", "A CUDA GPU when the backend has one, else Apple's GPU (MPS), else the CPU"),
               ("cpu", "CPU", ""), ("cuda", "CUDA", "The backend's first CUDA GPU"),
               ("mps", "Apple GPU", "Metal (MPS) on Apple silicon; ops it lacks run on the CPU")])
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
    use_weights_threshold: BoolProperty(  # type: ignore[valid-type]
        name="Weights' threshold", default=True,
        description="Mesh at the threshold the weights were calibrated with (their model card's); off: the "
                    "Threshold below")
    fit: EnumProperty(  # type: ignore[valid-type]
        name="Fit to points", items=FIT_CHOICES, default="AUTO",
        description="Point clouds: adapt the network's local features to every input point before meshing, so "
                    "the surface passes through the scan and the network only completes what it does not show "
                    "(a second or two on a CPU)")
    threshold: FloatProperty(  # type: ignore[valid-type]
        name="Threshold", default=0.2, min=0.01, max=0.99, precision=3, update=live.on_parameter_changed,
        description="Change to re-extract this reconstruction from the backend's kept grid")
    resolution: EnumProperty(  # type: ignore[valid-type]
        name="Resolution", items=RESOLUTIONS, default="128", update=live.on_parameter_changed)
    # The threshold and resolution the mesh was extracted at (scene_io.extraction_key): an undo step can hold a
    # slider's new value over the mesh of the old one, which live.reconcile then extracts again.
    extracted: StringProperty(name="Extracted at", default="", options={"HIDDEN"})  # type: ignore[valid-type]


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
