"""A reconstruction survives a save and reload of the .blend, and renders with Cycles on the CPU."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest
from mathutils import Vector

from tests.blender.blender_helpers import add_sphere

pytestmark = pytest.mark.usefixtures("installed")


def test_save_reload_and_render(tmp_path: Path) -> None:
    add_sphere()
    bpy.ops.occnet.reconstruct()
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    result = bpy.data.objects["Ball.occnet"]
    assert result.occnet.kind == "RESULT" and result.occnet.job and len(result.data.polygons) > 0

    scene = bpy.context.scene
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    light = bpy.data.objects.new("Light", bpy.data.lights.new("Light", "SUN"))
    for obj in (camera, light):
        scene.collection.objects.link(obj)
    target = result.matrix_world @ Vector(np.mean([v.co for v in result.data.vertices], axis=0))
    camera.location = target + Vector((0.0, -8.0, 3.0))
    camera.rotation_euler = (target - camera.location).to_track_quat("-Z", "Y").to_euler()
    light.rotation_euler = (0.6, 0.2, 0.4)
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples = "CPU", 4
    scene.render.resolution_x = scene.render.resolution_y = 128
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(tmp_path / "render.png")
    bpy.ops.render.render(write_still=True)

    png = tmp_path / "render.png"
    assert png.is_file() and png.stat().st_size > 0
    image = bpy.data.images.load(str(png))
    pixels = np.empty(image.size[0] * image.size[1] * image.channels, np.float32)
    image.pixels.foreach_get(pixels)
    rgb = pixels.reshape(-1, image.channels)[:, :3]
    assert tuple(image.size) == (128, 128) and rgb.std() > 0.02  # something other than the background
