"""The demo (`./dev demo`): the extension as a user gets it, in headless Blender, on the bundled samples.

Builds the extension zip, installs it into a fresh Blender user folder the way Install from Disk does,
loads each bundled sample with the extension's Load sample, reconstructs it with its Reconstruct
operator (the bundled default weights, the backend in this interpreter), and writes to OUT (default
out/demo): demo.blend, one mesh per sample, and demo.png, a render with each input beside its result.

    python demo.py [--out out/demo] [--resolution 128] [--samples 16]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent
MODULE = "bl_ext.user_default.occnet"
ORDER = ("image", "pointcloud", "voxels")
SLOT = 2.6  # metres between neighbouring objects in the picture
SIZE = 2.0  # every pair is scaled so its input spans this much


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo")
    parser.add_argument("--resolution", type=int, default=128, choices=(32, 64, 128, 256))
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel of demo.png")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    sys.path.insert(0, str(REPO))
    from build_extension import build

    zip_path = build(out / "dist")
    # A Blender user folder of the demo's own: the user's real configuration is never touched.
    user = Path(tempfile.mkdtemp(prefix="occnet-demo-user-"))
    os.environ["BLENDER_USER_RESOURCES"] = str(user)
    try:
        return run(zip_path, out, args.resolution, args.samples)
    finally:
        shutil.rmtree(user, ignore_errors=True)


def run(zip_path: Path, out: Path, resolution: int, samples: int) -> int:
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    installed = bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default",
                                                         enable_on_install=True)
    if installed != {"FINISHED"} or MODULE not in bpy.context.preferences.addons:
        print(f"error: the extension did not install from {zip_path}", file=sys.stderr)
        return 1
    print(f"installed {zip_path.name} as {MODULE}")
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.backend_mode, prefs.python_path = "LOCAL", sys.executable  # this interpreter has the backend's needs
    available = _bundled_modalities()
    settings = bpy.context.scene.occnet
    settings.resolution = str(resolution)
    settings.hide_source = False  # the picture shows each input beside its result

    pairs: list[tuple[str, Any, Any]] = []
    written: list[Path] = []
    failed = 0
    for modality in ORDER:
        if modality not in available:
            print(f"{modality}: no bundled {modality} weights; skipped")
            continue
        bpy.ops.occnet.load_sample(modality=modality)
        source = bpy.context.view_layer.objects.active if modality != "image" else _image_card(settings.image)
        started = time.perf_counter()
        try:
            bpy.ops.occnet.reconstruct()
        except RuntimeError as exc:  # the operator's error report
            print(f"{modality}: reconstruction failed: {exc}", file=sys.stderr)
            failed += 1
            continue
        result = bpy.context.view_layer.objects.active
        source_name = Path(result.name.removesuffix(".occnet")).stem  # an image's name keeps its suffix
        mesh_path = out / f"{modality}_{source_name}.obj"
        bpy.ops.wm.obj_export(filepath=str(mesh_path), export_selected_objects=True, export_materials=False)
        print(f"{modality}: {bpy.context.window_manager.occnet_job.last_result} "
              f"({time.perf_counter() - started:.1f} s) -> {mesh_path}")
        pairs.append((modality, source, result))
        written.append(mesh_path)
    if not pairs:
        print("error: nothing was reconstructed", file=sys.stderr)
        return 1

    _lay_out(pairs)
    blend, png = out / "demo.blend", out / "demo.png"
    _stage_and_render(png, len(pairs), samples)
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    sys.modules[f"{MODULE}.addon.backend_session"].shutdown()
    print(f"\ndemo files in {out}:")
    for path in [blend, png, *written]:
        print(f"  {path}")
    return 1 if failed else 0


def _bundled_modalities() -> set[str]:
    from blender_occnet.occnet.registry import list_weights

    return {info.modality for info in list_weights() if info.usable}


def _image_card(image: Any) -> Any:
    """The image as a picture on a card, so that the render shows the input (empties do not render)."""
    import bpy

    width, height = image.size
    aspect = height / width
    mesh = bpy.data.meshes.new(f"{image.name} card")
    mesh.from_pydata([(-0.5, 0, -0.5 * aspect), (0.5, 0, -0.5 * aspect), (0.5, 0, 0.5 * aspect),
                      (-0.5, 0, 0.5 * aspect)], [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new()
    for loop, coord in zip(uv.data, ((0, 0), (1, 0), (1, 1), (0, 1))):
        loop.uv = coord
    material = bpy.data.materials.new(f"{image.name} picture")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = image
    emission = nodes.new("ShaderNodeEmission")  # shown as it is, whatever the lights
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(texture.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    mesh.materials.append(material)
    card = bpy.data.objects.new(f"{image.name} card", mesh)
    bpy.context.scene.collection.objects.link(card)
    return card


def _world_box(obj: Any) -> tuple[Any, float, float]:
    """Centre, largest extent and lowest z of an object's bounding box in the world."""
    import numpy as np

    corners = np.array([list(obj.matrix_world @ _vector(c)) for c in obj.bound_box])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return (lo + hi) / 2, float((hi - lo).max()), float(lo[2])


def _vector(values: Any) -> Any:
    from mathutils import Vector

    return Vector(values)


def _lay_out(pairs: list[tuple[str, Any, Any]]) -> None:
    """Input and result side by side on the ground, pair after pair along x, each pair scaled alike.

    A point cloud's or voxel grid's result keeps its place relative to its input (both get the same move);
    an image's result stands at the 3D cursor, so it and the picture are placed each on its own."""
    from mathutils import Matrix

    materials = _materials()
    for index, (modality, source, result) in enumerate(pairs):
        x = (2 * index - (len(pairs) - 1)) * SLOT
        boxes = {id(obj): _world_box(obj if modality == "image" else source)[:2] for obj in (source, result)}
        for obj, offset in ((source, -SLOT / 2), (result, SLOT / 2)):
            centre, extent = boxes[id(obj)]
            scale = SIZE / extent if extent > 0 else 1.0
            obj.matrix_world = Matrix.Translation((x + offset, 0.0, 0.0)) @ Matrix.Scale(scale, 4) @ \
                Matrix.Translation(-_vector(centre)) @ obj.matrix_world
            obj.matrix_world = Matrix.Translation((0.0, 0.0, -_world_box(obj)[2])) @ obj.matrix_world
        result.data.materials.append(materials["result"])
        if modality != "image":
            source.data.materials.append(materials["input"])


def _materials() -> dict[str, Any]:
    import bpy

    made = {}
    for name, colour in (("input", (0.9, 0.45, 0.15, 1.0)), ("result", (0.35, 0.55, 0.85, 1.0))):
        material = bpy.data.materials.new(f"demo {name}")
        material.use_nodes = True
        bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        bsdf.inputs["Base Color"].default_value = colour
        bsdf.inputs["Roughness"].default_value = 0.6
        material.diffuse_color = colour
        made[name] = material
    return made


def _stage_and_render(png: Path, n_pairs: int, samples: int) -> None:
    import bpy
    from mathutils import Vector

    scene = bpy.context.scene
    width = 2 * n_pairs * SLOT
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = width * 1.05
    camera.location = Vector((0.0, -12.0, 5.0))
    camera.rotation_euler = (Vector((0.0, 0.0, SIZE / 2)) - camera.location).to_track_quat("-Z", "Y").to_euler()
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(40), math.radians(10), math.radians(-30))
    ground = bpy.data.objects.new("Ground", bpy.data.meshes.new("Ground"))
    half = width
    ground.data.from_pydata([(-half, -half, 0), (half, -half, 0), (half, half, 0), (-half, half, 0)], [],
                            [(0, 1, 2, 3)])
    for obj in (camera, sun, ground):
        scene.collection.objects.link(obj)
    scene.camera = camera
    world = bpy.data.worlds.new("Demo")
    world.color = (0.8, 0.8, 0.82)
    world.use_nodes = True
    background = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")
    background.inputs["Color"].default_value = (0.8, 0.8, 0.82, 1.0)
    background.inputs["Strength"].default_value = 0.6
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples = "CPU", samples
    scene.cycles.use_denoising = False
    scene.render.resolution_x = 1600
    scene.render.resolution_y = int(1600 * (SIZE + 1.6) / (width * 1.05))  # the objects' height and a margin
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(png)
    bpy.ops.render.render(write_still=True)


if __name__ == "__main__":
    sys.exit(main())
