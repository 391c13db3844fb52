"""Helpers for the Blender tests: the installed module's name, preferences, scenes and mesh checks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import bpy
import numpy as np

REPO = Path(__file__).resolve().parents[2]
MODULE = "bl_ext.user_default.occnet"


def configure(weights_dir: Path, python: str = sys.executable) -> Any:
    """Point the add-on's preferences at this interpreter (it has torch) and the test weights."""
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.backend_mode, prefs.python_path, prefs.weights_dir = "LOCAL", python, str(weights_dir)
    return prefs


def scene_snapshot() -> tuple[list[str], list[str], int]:
    return sorted(o.name for o in bpy.data.objects), sorted(m.name for m in bpy.data.meshes), len(bpy.data.objects)


def add_sphere(name: str = "Ball") -> bpy.types.Object:
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=2, location=(1.0, -2.0, 0.5), rotation=(0.3, 0.2, 1.0),
                                          scale=(1.0, 1.5, 0.8))
    obj = bpy.context.active_object
    obj.name = obj.data.name = name
    return obj


def edge_use_counts(mesh: bpy.types.Mesh) -> np.ndarray:
    """How many faces use each undirected edge of a triangle mesh."""
    corners = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", corners)
    tris = corners.reshape(-1, 3)
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return counts


def add_vertex_cloud(name: str, points: np.ndarray) -> bpy.types.Object:
    """A mesh object of loose vertices (what a scan import gives), linked, active and selected."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(points))
    mesh.vertices.foreach_set("co", np.asarray(points, np.float32).ravel())
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    return obj


def add_point_cloud(name: str = "Cloud", location: tuple[float, float, float] = (0.0, 3.0, 1.0)) -> bpy.types.Object:
    """A POINTCLOUD object of 3,000 points on an ellipsoid, alone selected, and active."""
    rng = np.random.default_rng(4)
    points = rng.normal(size=(3000, 3)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True) * np.array([1.0, 2.0, 0.5], np.float32)
    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)  # the conversion acts on every selected object
    add_vertex_cloud(name, points)
    bpy.ops.object.convert(target="POINTCLOUD")
    cloud = bpy.context.active_object
    assert cloud.type == "POINTCLOUD"
    cloud.location = location
    return cloud
