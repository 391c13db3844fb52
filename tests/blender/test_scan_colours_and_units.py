"""Scans as people bring them to Blender: a coloured point cloud or mesh gives a coloured result (shown in Solid and
Material Preview, kept through live tweaks), and a cloud in millimetres far from the origin comes back in place at
its size, the sidebar saying that size and the cell the resolution gives."""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import ModuleType

import bpy
import numpy as np
import pytest
from mathutils import Vector

from tests.blender.blender_helpers import REPO, add_vertex_cloud
from tests.blender.test_panels import draw

pytestmark = pytest.mark.usefixtures("installed")

BUNDLED = str(REPO / "blender_occnet" / "weights" / "pointcloud.safetensors")  # a real shape, fitted


def half_red_sphere(n: int = 3000, centre: tuple[float, float, float] = (0.0, 0.0, 0.0),
                    radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Points on a sphere and their colours (N, 4) in [0, 1]: red above the equator (Blender's z), blue below."""
    d = np.random.default_rng(5).normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    rgba = np.where(d[:, 2:3] > 0, [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]).astype(np.float32)
    return (d * radius + centre).astype(np.float32), rgba


def coloured_cloud(name: str = "Scan", point_cloud: bool = True) -> bpy.types.Object:
    """A half-red, half-blue sphere of points with a 'Col' colour attribute, as a POINTCLOUD object (or the mesh
    of loose vertices a PLY import gives)."""
    points, rgba = half_red_sphere()
    obj = add_vertex_cloud(name, points)
    attribute = obj.data.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
    attribute.data.foreach_set("color_srgb", rgba.ravel())
    if point_cloud:
        bpy.ops.object.convert(target="POINTCLOUD")
        obj = bpy.context.active_object
        assert obj.type == "POINTCLOUD" and "Col" in obj.data.color_attributes
    return obj


def colours_of(obj: bpy.types.Object) -> np.ndarray:
    attribute = obj.data.color_attributes["Color"]
    values = np.empty(len(attribute.data) * 4, np.float32)
    attribute.data.foreach_get("color_srgb", values)
    return values.reshape(-1, 4)[:, :3]


def world_vertices(obj: bpy.types.Object) -> np.ndarray:
    local = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", local)
    matrix = np.array(obj.matrix_world)
    return local.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]


def assert_red_above_blue_below(obj: bpy.types.Object, centre_z: float = 0.0, margin: float = 0.1) -> None:
    vertices, colours = world_vertices(obj), colours_of(obj)
    assert len(colours) == len(vertices)
    up, down = vertices[:, 2] > centre_z + margin, vertices[:, 2] < centre_z - margin
    assert up.sum() > 100 and down.sum() > 100
    assert (colours[up, 0] > 0.8).all() and (colours[up, 2] < 0.2).all()
    assert (colours[down, 2] > 0.8).all() and (colours[down, 0] < 0.2).all()


def test_a_coloured_point_cloud_gives_a_red_top_and_a_blue_bottom_kept_through_live_tweaks(
        api: ModuleType, addon: ModuleType) -> None:
    cloud = coloured_cloud()
    result = api.reconstruct(cloud, weights=BUNDLED, threshold=None, resolution=64)
    assert_red_above_blue_below(result)
    mesh = result.data
    assert mesh.color_attributes.active_color.name == "Color"
    assert mesh.color_attributes[mesh.color_attributes.render_color_index].name == "Color"
    material = mesh.materials[0]
    links = {(link.from_node.bl_idname, link.to_socket.name) for link in material.node_tree.links}
    assert ("ShaderNodeVertexColor", "Base Color") in links
    assert [n.layer_name for n in material.node_tree.nodes if n.bl_idname == "ShaderNodeVertexColor"] == ["Color"]

    before = len(mesh.vertices)
    for name, value in (("threshold", 0.3), ("resolution", "128")):
        setattr(result.occnet, name, value)
        deadline = time.monotonic() + 120
        while addon.live.pending(result.name) and time.monotonic() < deadline:
            addon.events.pump(timeout=0.2)
        assert not addon.live.pending(result.name), bpy.context.window_manager.occnet_job.last_error
        assert len(result.data.vertices) != before
        before = len(result.data.vertices)
        assert_red_above_blue_below(result)  # the new vertices coloured from the kept input
        assert result.data.materials[0] == material

    plain = api.reconstruct(cloud, weights=BUNDLED, threshold=None, resolution=32, colours=False)
    assert "Color" not in plain.data.color_attributes and not len(plain.data.materials)
    bpy.data.objects.remove(result)
    bpy.data.materials.remove(material)
    plain.occnet.threshold = 0.3  # a plain result's live tweak makes no colour material
    deadline = time.monotonic() + 120
    while addon.live.pending(plain.name) and time.monotonic() < deadline:
        addon.events.pump(timeout=0.2)
    assert not addon.live.pending(plain.name) and "OccNet colours" not in bpy.data.materials


def test_a_vertex_painted_mesh_colours_its_surface_samples_result() -> None:
    """A mesh whose colours are per face corner (Vertex Paint's), read as surface samples by the button, which
    also turns Solid views drawing material colours to attribute colours so the result shows as it is."""
    bpy.ops.mesh.primitive_uv_sphere_add(segments=48, ring_count=24, radius=1.0, location=(0.0, 0.0, 0.0))
    ball = bpy.context.active_object
    mesh = ball.data
    attribute = mesh.color_attributes.new("Paint", "BYTE_COLOR", "CORNER")
    corner_vertex = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", corner_vertex)
    z = np.array([v.co.z for v in mesh.vertices])[corner_vertex]
    rgba = np.where(z[:, None] > 0, [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]).astype(np.float32)
    attribute.data.foreach_set("color_srgb", rgba.ravel())
    mesh.color_attributes.active_color = attribute
    settings = bpy.context.scene.occnet
    settings.weights, settings.use_weights_threshold, settings.resolution = BUNDLED, True, "64"
    views = [space for area in bpy.context.screen.areas if area.type == "VIEW_3D" for space in area.spaces
             if space.type == "VIEW_3D"]
    for space in views:
        space.shading.type, space.shading.color_type = "SOLID", "MATERIAL"
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    assert_red_above_blue_below(bpy.data.objects[f"{ball.name}.occnet"], margin=0.15)
    assert views and all(space.shading.color_type == "VERTEX" for space in views)


def test_a_painted_voxel_object_colours_its_result(api: ModuleType, tmp_path: Path) -> None:
    """A voxel object (a ball imported from .binvox) painted red on its upper faces and blue below, per face
    corner as Vertex Paint stores it: the voxel network's result is red above and blue below."""
    from blender_occnet.common.binvox import write_binvox

    i, j, k = np.indices((32, 32, 32))
    write_binvox(tmp_path / "ball.binvox", (i - 15.5) ** 2 + (j - 15.5) ** 2 + (k - 15.5) ** 2 <= 11.5 ** 2,
                 translate=(-1.0, -1.0, -1.0), scale=2.0)
    assert bpy.ops.occnet.import_binvox(filepath=str(tmp_path / "ball.binvox")) == {"FINISHED"}
    ball = bpy.data.objects["ball"]
    mesh = ball.data
    attribute = mesh.color_attributes.new("Paint", "BYTE_COLOR", "CORNER")
    centres = np.empty(len(mesh.polygons) * 3, np.float32)
    mesh.polygons.foreach_get("center", centres)
    world_z = (centres.reshape(-1, 3) @ np.array(ball.matrix_world)[:3, :3].T)[:, 2] + ball.matrix_world[2][3]
    sizes = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("loop_total", sizes)
    rgba = np.where(np.repeat(world_z, sizes)[:, None] > 0, [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0])
    attribute.data.foreach_set("color_srgb", rgba.astype(np.float32).ravel())
    mesh.color_attributes.active_color = attribute
    result = api.reconstruct(ball, weights=str(REPO / "blender_occnet" / "weights" / "voxels.safetensors"),
                             resolution=64)
    assert_red_above_blue_below(result, margin=0.15)


def test_an_image_colours_its_result_and_the_panel_says_so(api: ModuleType, addon: ModuleType,
                                                           tmp_path: Path) -> None:
    """The sofa picture tinted red above and blue below, as an image source: the image network's result is
    coloured from the picture (the highest vertices red, the lowest blue), and the sidebar offers 'Colours from
    the image'."""
    from tests.core.test_image_colours import tinted_sofa

    tinted_sofa(tmp_path / "sofa.png")
    image = bpy.data.images.load(str(tmp_path / "sofa.png"))
    settings = bpy.context.scene.occnet
    settings.source_kind, settings.image = "IMAGE", image
    bpy.ops.object.select_all(action="DESELECT")
    bpy.context.view_layer.objects.active = None
    assert ("prop text", "Colours from the image") in draw(addon.panels.OCCNET_PT_main, bpy.context)
    result = api.reconstruct(image, weights=str(REPO / "blender_occnet" / "weights" / "image.safetensors"),
                             resolution=64)
    height, colours = world_vertices(result)[:, 2], colours_of(result)
    top, bottom = height > np.quantile(height, 0.9), height < np.quantile(height, 0.1)
    assert (colours[top, 0] > colours[top, 2]).mean() > 0.85
    assert (colours[bottom, 2] > colours[bottom, 0]).mean() > 0.85


def render(scene: bpy.types.Scene, target: Vector, distance: float, path: Path) -> np.ndarray:
    """A 96-pixel render looking at `target` from the front (-y), as RGB rows top first."""
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.location = target + Vector((0.0, -distance, 0.0))
    camera.rotation_euler = (target - camera.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = camera
    scene.render.resolution_x = scene.render.resolution_y = 96
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    pixels = np.empty(image.size[0] * image.size[1] * image.channels, np.float32)
    image.pixels.foreach_get(pixels)
    return pixels.reshape(image.size[1], image.size[0], image.channels)[::-1, :, :3]


@pytest.mark.parametrize("engine", ["BLENDER_WORKBENCH", "CYCLES"])
def test_the_colours_show_in_solid_attribute_shading_and_through_the_material(
        api: ModuleType, engine: str, tmp_path: Path) -> None:
    """Rendered as Solid shading draws colour attributes (Workbench, Attribute colour) and as the material draws
    it (Cycles): the top of the ball red, the bottom blue."""
    cloud = coloured_cloud()
    api.reconstruct(cloud, weights=BUNDLED, threshold=None, resolution=64)
    cloud.hide_render = True  # the result alone
    scene = bpy.context.scene
    scene.render.engine = engine
    if engine == "CYCLES":
        scene.cycles.device, scene.cycles.samples = "CPU", 8
        light = bpy.data.objects.new("Light", bpy.data.lights.new("Light", "SUN"))
        light.rotation_euler = (0.6, 0.0, 0.0)
        scene.collection.objects.link(light)
    else:
        scene.display.shading.light, scene.display.shading.color_type = "FLAT", "VERTEX"  # the UI's "Attribute"
    rgb = render(scene, Vector((0.0, 0.0, 0.0)), 5.0, tmp_path / f"{engine.lower()}.png")
    top, bottom = rgb[28:40, 40:56].reshape(-1, 3).mean(axis=0), rgb[56:68, 40:56].reshape(-1, 3).mean(axis=0)
    assert top[0] > top[2] + 0.25 and bottom[2] > bottom[0] + 0.25, (top, bottom)  # a highlight whitens a little


def test_a_millimetre_scan_far_from_the_origin_comes_back_in_place_and_the_sidebar_says_its_size(
        api: ModuleType, addon: ModuleType) -> None:
    """A scan imported in millimetres (vertices at a room's coordinates, the object at the origin) comes back over
    itself at its size; the sidebar's line gives that size and the cell of the chosen resolution in millimetres."""
    scene = bpy.context.scene
    scene.unit_settings.system, scene.unit_settings.scale_length = "METRIC", 0.001
    scene.unit_settings.length_unit = "MILLIMETERS"
    centre, half = np.array([5000.0, -3000.0, 200.0]), np.array([150.0, 100.0, 75.0])
    d = np.random.default_rng(7).normal(size=(6000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    points = d * half + centre
    scan = add_vertex_cloud("Scan", points.astype(np.float32))
    scene.occnet.resolution = "128"
    line = addon.scene_io.describe_size(scan, 128, scene)
    assert line == "Size 300 mm x 200 mm x 150 mm, cells of 2.58 mm at 128³", line
    assert ("label", line) in draw(addon.panels.OCCNET_PT_main, bpy.context)  # under Resolution in the sidebar
    result = api.reconstruct(scan, weights=BUNDLED, threshold=None, resolution=64, source_kind="VERTICES")
    vertices = world_vertices(result)
    cell = 300 * 1.1 / 64
    assert np.allclose(vertices.min(axis=0), points.min(axis=0), atol=2 * cell)
    assert np.allclose(vertices.max(axis=0), points.max(axis=0), atol=2 * cell)
    shown = addon.scene_io.describe_size(result, 64, scene)  # the result's own line: the scan's size
    sizes = [float(n) for n in re.findall(r"([\d.]+) mm x|([\d.]+) mm,", shown) for n in n if n]
    assert np.allclose(sizes, [300, 200, 150], atol=2 * cell) and shown.endswith(" mm at 64³"), shown
