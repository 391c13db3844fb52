"""Reading sources from the scene and writing results into bpy.data (main thread only); the sample loader
and the .binvox importer add their own source objects."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix

from ..common.geometry import cell_size
from . import geometry
from .geometry import SourceError

SURFACE_SAMPLES = 10_000
MAX_POINTS = 100_000
MAX_IMAGE_SIDE = 1024  # the network sees 224 x 224; larger images are sent subsampled
VOXEL_ATTRIBUTE = "occnet_voxel"  # per-face cell index of a voxel source object
SOURCE_TYPES = {"MESH", "POINTCLOUD"}
READ_KINDS = ("SURFACE", "VERTICES", "VOXELIZE")  # how read_source may read a mesh or point cloud


@dataclass
class Source:
    """What a reconstruction needs from the scene, copied out on the main thread."""

    name: str
    modality: str  # pointcloud, voxels or image
    array: np.ndarray  # network frame: (N, 3) float32 points, a (32, 32, 32) uint8 grid, or (H, W, 4) RGBA
    matrix_world: Matrix
    collections: tuple[str, ...]
    faces: np.ndarray | None = None  # a mesh to voxelise (modality voxels): `array` holds its vertices
    parent: str = ""  # the source object's parent, which the result gets too
    object_name: str = ""  # the source object ('' for an image), hidden after success when asked
    # (N, 3) uint8 sRGB from the object's colour attribute: one per point of `array` (a voxel grid: one per cell)
    colours: np.ndarray | None = None


def object_kind(obj: bpy.types.Object, preferred: str) -> str:
    """How an object that can be a source is read: a voxel object always as its voxels; a mesh or point cloud
    as `preferred` says (SURFACE, VERTICES or VOXELIZE), or as surface samples and vertices while it is IMAGE."""
    if obj.occnet.kind == "VOXELS":  # type: ignore[attr-defined]
        return "VOXELS"
    if preferred == "IMAGE":
        return "VERTICES" if obj.type == "POINTCLOUD" else "SURFACE"
    return preferred


def chosen_source(settings: Any, obj: bpy.types.Object | None) -> str:
    """What Reconstruct will use, the one rule the panel shows and the operator follows: the active object
    when it can be a source (object_kind), else the chosen image when Source is Image. Returns SURFACE,
    VERTICES, VOXELIZE, VOXELS, IMAGE, or '' when there is nothing to reconstruct."""
    if obj is not None and obj.type in SOURCE_TYPES:
        return object_kind(obj, str(settings.source_kind))
    return "IMAGE" if settings.source_kind == "IMAGE" else ""


def chosen_targets(settings: Any, active: bpy.types.Object | None,
                   selected: Iterable[bpy.types.Object]) -> list[tuple[Any, str]]:
    """Everything one click reconstructs, as (object or image, kind): the active object when it can be a
    source, then every other selected object that can be one (by name); else the chosen image. [] when
    there is nothing."""
    kind = chosen_source(settings, active)
    if kind == "IMAGE":
        return [(settings.image, kind)] if settings.image is not None else []
    if not kind or active is None:
        return []
    others = sorted((obj for obj in selected if obj != active and obj.type in SOURCE_TYPES), key=lambda o: o.name)
    return [(active, kind)] + [(obj, object_kind(obj, str(settings.source_kind))) for obj in others]


def describe_source(settings: Any, obj: bpy.types.Object | None,
                    selected: Iterable[bpy.types.Object] = ()) -> str:
    """The panel's line about what Reconstruct will use."""
    kind = chosen_source(settings, obj)
    if kind == "IMAGE":
        return f"image '{settings.image.name}'" if settings.image is not None else "an image (pick one)"
    if not kind or obj is None:
        return ""
    targets = chosen_targets(settings, obj, selected)
    if len(targets) > 1:
        names = [f"'{target.name}'" for target, _ in targets]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return f"{len(targets)} objects, one job each: {shown}"
    what = {"VOXELS": "its voxels", "VOXELIZE": "the mesh voxelised at 32³", "VERTICES": "its points",
            "SURFACE": "points on its surface" if obj.type == "MESH" else "its points"}[kind]
    return f"'{obj.name}', {what}"


def extraction_key(threshold: float, resolution: int | str, trim_unseen: float = 0.0) -> str:
    """What a result's `extracted` record holds: the threshold and trim (as the float properties store them) and
    the resolution."""
    return f"{float(np.float32(threshold)):.6g}@{int(resolution)}" + \
        (f"~{float(np.float32(trim_unseen)):.6g}" if trim_unseen else "")


def result_name(source: str, modality: str) -> str:
    """'Chair' -> 'Chair.occnet'; never 'Chair.occnet.occnet' (a result reconstructed again) nor
    'photo.png.occnet' (an image's file suffix)."""
    base = source
    while base.endswith(".occnet"):
        base = base[: -len(".occnet")]
    if modality == "image":
        stem, dot, suffix = base.rpartition(".")
        if dot and stem and suffix.lower() in ("png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "exr", "tga"):
            base = stem
    return f"{base or 'result'}.occnet"


def read_source(obj: bpy.types.Object | None, depsgraph: bpy.types.Depsgraph, kind: str = "SURFACE") -> Source:
    """The object's evaluated geometry (modifiers applied) in the network's frame; raises SourceError.

    kind: SURFACE (points sampled on the faces), VERTICES (the points as they are) or VOXELIZE (the mesh
    itself, which the backend voxelises at 32^3 for voxel weights)."""
    if obj is None or obj.type not in SOURCE_TYPES:
        raise SourceError("select a mesh or point cloud object to reconstruct")
    matrix = obj.matrix_world.copy()
    # "" stands for a scene's master collection (embedded data, not in bpy.data.collections).
    collections = tuple("" if c.is_embedded_data else c.name for c in obj.users_collection)
    if obj.occnet.kind == "VOXELS":  # type: ignore[attr-defined]
        grid, cell_colours = _voxels_as_shown(obj, depsgraph)
        if not grid.any():
            raise SourceError(f"the voxel object '{obj.name}' has no filled voxels")
        return Source(obj.name, "voxels", grid, matrix, collections, parent=_parent(obj), object_name=obj.name,
                      colours=cell_colours)
    evaluated = obj.evaluated_get(depsgraph)
    colours: np.ndarray | None
    if obj.type == "POINTCLOUD":
        points = _attribute(evaluated.data, "position", np.float32, 3)
        colours, _ = _colours(evaluated.data, len(points))
    else:
        mesh = evaluated.to_mesh()
        try:
            points = _positions(mesh)
            tris = _triangles(mesh) if kind in ("SURFACE", "VOXELIZE") else np.zeros((0, 3), np.int32)
            colours, per_corner = _colours(mesh, len(points))
            corners = None  # (T, 3, 3): each triangle's corners' colours, for the surface samples
            if kind == "SURFACE" and colours is not None:
                corners = colours[tris] if per_corner is None else per_corner[_triangle_corners(mesh)]
        finally:
            evaluated.to_mesh_clear()
        if kind == "VOXELIZE":
            if len(tris) == 0:
                raise SourceError(f"'{obj.name}' has no faces to voxelise; use Source: Surface samples or "
                                  "Vertices for bare points")
            points = geometry.check_points(points, obj.name, drop_non_finite=False)
            return Source(obj.name, "voxels", geometry.blender_to_network(points), matrix, collections, tris,
                          parent=_parent(obj), object_name=obj.name, colours=colours)
        if kind == "SURFACE" and len(tris) and np.isfinite(points).all():
            points, colours = geometry.sample_surface(points, tris, SURFACE_SAMPLES, corner_colours=corners)
    if kind == "VOXELIZE":
        raise SourceError(f"'{obj.name}' is a point cloud: only meshes can be voxelised; use Source: Vertices")
    points = geometry.check_points(points, obj.name)
    if len(points) > MAX_POINTS:  # the backend gives a network 20,000 at most; keep the request small
        keep = np.random.default_rng(0).choice(len(points), MAX_POINTS, replace=False)
        points, colours = points[keep], None if colours is None else colours[keep]
    return Source(obj.name, "pointcloud", geometry.blender_to_network(points), matrix, collections,
                  parent=_parent(obj), object_name=obj.name, colours=colours)


COLOUR_TYPES = ("FLOAT_COLOR", "BYTE_COLOR")


def colour_attribute(data: Any) -> Any:
    """The colour attribute of a mesh or point cloud that a reconstruction takes its colours from: the one it
    renders with (Material Preview's), else the active one, else the first; None when it has none."""
    attributes = getattr(data, "color_attributes", None)
    if attributes is None or not len(attributes):
        return None
    render = getattr(attributes, "render_color_index", -1)
    if 0 <= render < len(attributes):
        return attributes[render]
    return getattr(attributes, "active_color", None) or attributes[0]  # a point cloud's have no active one


def _colours(data: Any, count: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The colour attribute's sRGB bytes per point (N, 3) and, when it is stored per face corner, per corner (C,
    3) (whose mean is each point's); (None, None) without one."""
    attribute = colour_attribute(data)
    if attribute is None or attribute.data_type not in COLOUR_TYPES or attribute.domain not in ("POINT", "CORNER"):
        return None, None
    values = np.empty(len(attribute.data) * 4, np.float32)
    attribute.data.foreach_get("color_srgb", values)  # the sRGB values files hold, whichever way it is stored
    rgb = np.clip(np.nan_to_num(values.reshape(-1, 4)[:, :3]), 0.0, 1.0)
    if attribute.domain == "POINT":
        return _bytes(rgb) if len(rgb) == count else None, None
    corner_vertex = np.empty(len(data.loops), np.int32)
    data.loops.foreach_get("vertex_index", corner_vertex)
    per_vertex = geometry.corner_to_vertex(rgb, corner_vertex, count)
    return _bytes(per_vertex), _bytes(rgb)


def _bytes(rgb: np.ndarray) -> np.ndarray:
    return np.rint(rgb * 255.0).astype(np.uint8)


def _triangle_corners(mesh: bpy.types.Mesh) -> np.ndarray:
    """Each loop triangle's three corners (face-corner indices), (T, 3), in the order of _triangles."""
    corners = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("loops", corners)
    return corners.reshape(-1, 3)


def _parent(obj: bpy.types.Object) -> str:
    return obj.parent.name if obj.parent is not None and obj.parent_type == "OBJECT" else ""


def read_image_source(image: bpy.types.Image | None, cursor: Any) -> Source:
    """An image datablock's pixels, top row first, as RGBA in [0, 1]; the result goes to the 3D cursor."""
    if image is None:
        raise SourceError("pick an image in the OccNet panel (Source: Image)")
    width, height = image.size[0], image.size[1]
    channels = image.channels
    if width == 0 or height == 0 or channels not in (3, 4):
        raise SourceError(f"the image '{image.name}' has no pixels (is its file missing?); load or paint it "
                          "first")
    pixels = np.empty(width * height * channels, np.float32)
    image_pixels: Any = image.pixels  # the stubs type it as a float sequence without foreach_get
    image_pixels.foreach_get(pixels)
    rgba = pixels.reshape(height, width, channels)[::-1]  # Blender stores the bottom row first
    step = int(np.ceil(max(width, height) / MAX_IMAGE_SIDE))
    rgba = np.ascontiguousarray(np.clip(rgba[::step, ::step], 0.0, 1.0))
    if not np.isfinite(rgba).all():
        raise SourceError(f"the image '{image.name}' holds NaN or infinite values")
    return Source(image.name, "image", rgba, Matrix.Translation(cursor), ("",))


def _voxels_as_shown(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> tuple[np.ndarray, np.ndarray | None]:
    """A voxel object's 32^3 grid as the viewport shows it: each cube's cell found from where its faces
    are now (moved or scaled in Edit Mode, or by modifiers), not only from the index it was imported with; and,
    when it is painted (a colour attribute), each cell's colour, one per cell in C order."""
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        index = _attribute(mesh, VOXEL_ATTRIBUTE, np.int32)
        centres = np.empty(len(mesh.polygons) * 3, np.float32)
        mesh.polygons.foreach_get("center", centres)
        face_colours = _face_colours(mesh)
    finally:
        evaluated.to_mesh_clear()
    grid, outside, cell_colours = geometry.grid_from_faces(index, centres.reshape(-1, 3), face_colours)
    if outside:  # the grid cannot hold them: refused rather than reconstructed without them
        cubes = outside + int(grid.sum())
        raise SourceError(f"'{obj.name}': {outside} of {cubes} voxel cubes lie outside its 32³ box (moved or scaled "
                          "in Edit Mode or by a modifier); scale the object in Object Mode instead, or move them back")
    return grid, cell_colours


def _face_colours(mesh: bpy.types.Mesh) -> np.ndarray | None:
    """Each face's colour (F, 3) uint8 sRGB, the mean of its corners' (per point or per corner, as painted);
    None without a colour attribute."""
    per_vertex, per_corner = _colours(mesh, len(mesh.vertices))
    if per_vertex is None:
        return None
    if per_corner is None:
        corner_vertex = np.empty(len(mesh.loops), np.int32)
        mesh.loops.foreach_get("vertex_index", corner_vertex)
        per_corner = per_vertex[corner_vertex]
    sizes = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("loop_total", sizes)
    face_of_corner = np.repeat(np.arange(len(sizes)), sizes)  # loops are stored face after face
    sums = np.stack([np.bincount(face_of_corner, weights=per_corner[:, c], minlength=len(sizes))
                     for c in range(3)], axis=1)
    return np.rint(sums / np.maximum(sizes, 1)[:, None]).astype(np.uint8)


def _positions(mesh: bpy.types.Mesh) -> np.ndarray:
    out: np.ndarray = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", out)
    return out.reshape(-1, 3)


def _triangles(mesh: bpy.types.Mesh) -> np.ndarray:
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", tris)
    return tris.reshape(-1, 3)


def _attribute(data: Any, name: str, dtype: type, width: int = 1) -> np.ndarray:
    attribute = data.attributes.get(name)
    if attribute is None:
        raise SourceError(f"'{data.name}' has no '{name}' attribute; import it again")
    out: np.ndarray = np.empty(len(attribute.data) * width, dtype)
    key = "vector" if width == 3 else "value"
    attribute.data.foreach_get(key, out)
    return out.reshape(-1, width) if width > 1 else out


def fill_mesh(mesh: bpy.types.Mesh, vertices: np.ndarray, faces: np.ndarray, smooth: bool = True,
              fast: bool = True) -> None:
    """Give an empty mesh these vertices (Blender frame) and faces (all of one size).

    Fast: the attribute API, edges computed in numpy (Blender's own edge calculation is most of the
    time otherwise). Where the internal attributes (`.corner_vert`, `.edge_verts`, `.corner_edge`) are
    missing, or fast is False, the older vertices/loops path with Blender's edge calculation."""
    vertices = np.ascontiguousarray(vertices, np.float32).ravel()
    corners = np.ascontiguousarray(faces, np.int32).ravel()
    mesh.vertices.add(len(vertices) // 3)
    mesh.loops.add(len(corners))
    mesh.polygons.add(len(faces))
    attributes: Any = mesh.attributes  # the stubs' Attribute lacks the subtypes' `data`
    edges = geometry.mesh_edges(faces, len(vertices) // 3) if fast else None
    if edges is not None and {"position", ".corner_vert", ".corner_edge"} <= set(attributes.keys()):
        mesh.edges.add(len(edges[0]))
        if ".edge_verts" not in attributes:  # a Blender that stores edges differently
            mesh.clear_geometry()
            return fill_mesh(mesh, vertices.reshape(-1, 3), faces, smooth, fast=False)
        attributes["position"].data.foreach_set("vector", vertices)
        attributes[".corner_vert"].data.foreach_set("value", corners)
        attributes[".edge_verts"].data.foreach_set("value", edges[0].ravel())
        attributes[".corner_edge"].data.foreach_set("value", edges[1])
        mesh.polygons.foreach_set("loop_start", np.arange(0, len(corners), faces.shape[1], dtype=np.int32))
        mesh.update()
    else:
        mesh.vertices.foreach_set("co", vertices)
        mesh.loops.foreach_set("vertex_index", corners)
        mesh.polygons.foreach_set("loop_start", np.arange(0, len(corners), faces.shape[1], dtype=np.int32))
        mesh.update(calc_edges=True)
    # New faces are smooth (no `sharp_face` attribute); shade_smooth/flat exist since Blender 4.1.
    if not smooth:
        mesh.shade_flat()
    elif "sharp_face" in attributes:
        mesh.shade_smooth()


def replace_geometry(mesh: bpy.types.Mesh, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Swap a mesh's geometry in place (same datablock, materials kept)."""
    mesh.clear_geometry()
    fill_mesh(mesh, vertices, faces)


def add_object(name: str, vertices: np.ndarray, faces: np.ndarray, matrix_world: Matrix,
               collections: tuple[str, ...], scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer | None,
               smooth: bool = True, parent: str = "", select: str = "ONLY") -> bpy.types.Object:
    """A new mesh object, linked where the source was (else to the scene), parented as the source was; nothing
    is left behind on failure. collections: names, "" for the scene's own. select: ONLY (the new object alone
    selected, and active) or ADD (selected beside what is, the active object unchanged)."""
    mesh = bpy.data.meshes.new(name)
    obj: bpy.types.Object | None = None
    try:
        fill_mesh(mesh, vertices, faces, smooth)
        obj = bpy.data.objects.new(name, mesh)
        inside = set(scene.collection.children_recursive)
        found = [scene.collection if not c else bpy.data.collections.get(c) for c in collections]
        targets = [t for t in found if t is not None and (t == scene.collection or t in inside)]
        if not targets:  # the source's collections are gone or belong to another scene
            targets = [scene.collection]
        for target in targets:
            target.objects.link(obj)
        if parent and parent in bpy.data.objects:
            obj.parent = bpy.data.objects[parent]
        obj.matrix_world = matrix_world.copy()  # after parenting: the world placement is the source's
        if view_layer is not None:
            if select == "ONLY":
                for other in view_layer.objects:
                    other.select_set(False)
                view_layer.objects.active = obj
            obj.select_set(True)
        return obj
    except Exception:
        if obj is not None:
            bpy.data.objects.remove(obj)
        bpy.data.meshes.remove(mesh)
        raise


RESULT_COLOURS = "Color"  # the result's colour attribute (the name Blender's own importers give theirs)
COLOUR_MATERIAL = "OccNet colours"


def set_colours(obj: bpy.types.Object, colours: np.ndarray | None) -> None:
    """Give a result the input's colours ((V, 3) uint8 sRGB, one per vertex) as its active and render colour
    attribute, and a material whose Base Color reads it, so Solid (Attribute colour) and Material Preview show
    them; None takes both away again (a re-extraction with colours off)."""
    mesh = obj.data
    assert isinstance(mesh, bpy.types.Mesh)
    attributes: Any = mesh.color_attributes
    old = attributes.get(RESULT_COLOURS)
    if old is not None:
        attributes.remove(old)
    if colours is None or len(colours) != len(mesh.vertices):
        index = mesh.materials.find(COLOUR_MATERIAL)  # looked up, never made: a plain result stays plain
        if index >= 0:
            mesh.materials.pop(index=index)
        return
    material = _colour_material()
    attribute = attributes.new(RESULT_COLOURS, "BYTE_COLOR", "POINT")
    rgba = np.ones((len(colours), 4), np.float32)
    rgba[:, :3] = colours / 255.0
    attribute.data.foreach_set("color_srgb", rgba.ravel())
    attributes.active_color = attribute
    attributes.render_color_index = attributes.find(RESULT_COLOURS)
    if mesh.materials.find(material.name) < 0 and not len(mesh.materials):
        mesh.materials.append(material)


def _colour_material() -> bpy.types.Material:
    """The material every coloured result shares: Principled BSDF, Base Color from the 'Color' attribute (made once;
    a user's changes to it are kept)."""
    material = bpy.data.materials.get(COLOUR_MATERIAL)
    if material is not None:
        return material
    material = bpy.data.materials.new(COLOUR_MATERIAL)
    material.use_nodes = True
    tree = material.node_tree
    assert tree is not None
    shader = next((node for node in tree.nodes if node.type == "BSDF_PRINCIPLED"), None)
    if shader is None:
        shader = tree.nodes.new("ShaderNodeBsdfPrincipled")
        output = next(node for node in tree.nodes if node.type == "OUTPUT_MATERIAL")
        tree.links.new(shader.outputs["BSDF"], output.inputs["Surface"])
    source: Any = tree.nodes.new("ShaderNodeVertexColor")  # the Color Attribute node
    source.layer_name = RESULT_COLOURS
    source.location = (shader.location[0] - 300, shader.location[1])
    tree.links.new(source.outputs["Color"], shader.inputs["Base Color"])
    return material


def describe_size(obj: bpy.types.Object, resolution: int, scene: bpy.types.Scene) -> str:
    """'Size 300 mm x 280 mm x 300 mm, cells of 2.6 mm at 128³': the source's extent in the scene's units and the
    cell the resolution gives it (the detail to expect: nothing much finer than a cell or two)."""
    size = [float(obj.dimensions[axis]) for axis in range(3)]
    if not max(size) > 0:
        return ""
    cell = cell_size(max(size), resolution)
    return f"Size {' x '.join(_length(d, scene) for d in size)}, cells of {_length(cell, scene)} at {resolution}³"


# The scene's chosen length unit (Scene > Units > Length): metres each, and its symbol. Adaptive: Blender picks.
LENGTH_UNITS = {"KILOMETERS": (1e3, "km"), "METERS": (1.0, "m"), "CENTIMETERS": (1e-2, "cm"),
                "MILLIMETERS": (1e-3, "mm"), "MICROMETERS": (1e-6, "µm"), "MILES": (1609.344, "mi"),
                "FEET": (0.3048, "ft"), "INCHES": (0.0254, "in"), "THOU": (2.54e-5, "thou")}


def _length(value: float, scene: bpy.types.Scene) -> str:
    """A length as the scene shows lengths: in its unit (a scan in millimetres reads in millimetres)."""
    units = scene.unit_settings
    if units.system == "NONE":
        return f"{value:.4g}"
    metres = value * units.scale_length
    if units.length_unit in LENGTH_UNITS:
        size, symbol = LENGTH_UNITS[units.length_unit]
        return f"{metres / size:.3g} {symbol}"
    return bpy.utils.units.to_string(units.system, "LENGTH", metres, precision=3, split_unit=False,
                                     compatible_unit=False)
