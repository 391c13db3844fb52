"""Putting a one-million-triangle result into a Blender scene: the add-on's path against from_pydata.

Runs the bpy wheel headless. Every variant ends in the same state (a linked, smooth-shaded object whose
mesh has the same vertices and faces); the timings include building it from float32/int32 arrays as the
backend sends them, and for from_pydata the `.tolist()` that calling it takes. Also: reading the
positions back (foreach_get against a Python loop).

    .venv/bin/python bench/bench_scene_io.py [--quick] [--triangles N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="occnet-bench-"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bpy  # noqa: E402
from mathutils import Matrix  # noqa: E402

from blender_occnet.addon import scene_io  # noqa: E402


def torus(triangles: int) -> tuple[np.ndarray, np.ndarray]:
    """A closed torus with about `triangles` triangles: float32 vertices, int32 faces."""
    rows = max(3, int(np.sqrt(triangles / 4)))
    cols = max(3, triangles // (2 * rows))
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, rows, endpoint=False),
                       np.linspace(0, 2 * np.pi, cols, endpoint=False), indexing="ij")
    vertices = np.stack([(1 + 0.3 * np.cos(v)) * np.cos(u), (1 + 0.3 * np.cos(v)) * np.sin(u), 0.3 * np.sin(v)],
                        axis=-1).reshape(-1, 3).astype(np.float32)
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    a, b = i * cols + j, ((i + 1) % rows) * cols + j
    c, d = ((i + 1) % rows) * cols + (j + 1) % cols, i * cols + (j + 1) % cols
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return vertices, faces.astype(np.int32)


def add_with_pydata(vertices: np.ndarray, faces: np.ndarray) -> bpy.types.Object:
    mesh = bpy.data.meshes.new("pydata")
    mesh.from_pydata(vertices.tolist(), [], faces.tolist())
    mesh.update()
    mesh.shade_smooth()
    obj = bpy.data.objects.new("pydata", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def add_with_loops(vertices: np.ndarray, faces: np.ndarray) -> bpy.types.Object:
    mesh = bpy.data.meshes.new("loops")
    scene_io.fill_mesh(mesh, vertices, faces, fast=False)
    obj = bpy.data.objects.new("loops", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def best_of(repeats: int, make: Callable[[], bpy.types.Object]) -> tuple[float, bpy.types.Object]:
    times, obj = [], None
    for _ in range(repeats):
        bpy.ops.wm.read_homefile(use_empty=True)
        started = time.perf_counter()
        obj = make()
        times.append(time.perf_counter() - started)
    assert obj is not None
    return min(times), obj


def signature(obj: bpy.types.Object) -> tuple[int, int, float, bool]:
    mesh = obj.data
    smooth = np.zeros(len(mesh.polygons), bool)
    mesh.polygons.foreach_get("use_smooth", smooth)
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    return len(mesh.vertices), len(mesh.polygons), round(float(co.sum()), 1), bool(smooth.all())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run each instead of the best of three")
    parser.add_argument("--triangles", type=int, default=1_000_000)
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    vertices, faces = torus(args.triangles)
    # The same mesh with vertices and faces in random order: the worst case for the add-on's edge sort.
    rng = np.random.default_rng(0)
    permutation = rng.permutation(len(vertices))
    shuffled_vertices = vertices[permutation]
    shuffled_faces = np.argsort(permutation).astype(np.int32)[faces][rng.permutation(len(faces))]

    def addon(v: np.ndarray, f: np.ndarray) -> Callable[[], bpy.types.Object]:
        return lambda: scene_io.add_object("occnet", v, f, Matrix.Identity(4), ("",), bpy.context.scene,
                                           bpy.context.view_layer)

    rows = []
    results = {}
    for name, make in (("add-on: attribute API, numpy edges (faces in meshing order)", addon(vertices, faces)),
                       ("add-on: the same, vertices and faces shuffled", addon(shuffled_vertices, shuffled_faces)),
                       ("add-on fallback: vertices/loops/polygons foreach_set",
                        lambda: add_with_loops(vertices, faces)),
                       ("`from_pydata` (lists from `.tolist()`)", lambda: add_with_pydata(vertices, faces))):
        seconds, obj = best_of(repeats, make)
        results[name] = signature(obj)
        rows.append((name, seconds))
    assert len(set(results.values())) == 1, results
    base = rows[-1][1]
    print(f"\nInsert a result of {len(faces):,} triangles, {len(vertices):,} vertices into the scene "
          f"(bpy {bpy.app.version_string}, best of {repeats}):\n")
    print("| path | seconds | vs from_pydata |\n|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {base / seconds:.1f}x |")

    mesh = bpy.data.objects["pydata"].data
    started = time.perf_counter()
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    fast = time.perf_counter() - started
    started = time.perf_counter()
    slow = [v.co[:] for v in mesh.vertices]
    loop = time.perf_counter() - started
    assert np.allclose(np.asarray(slow, np.float32).ravel(), co)
    print(f"\nRead {len(mesh.vertices):,} vertex positions:\n")
    print("| path | seconds |\n|---|---:|")
    print(f"| `foreach_get` into float32 | {fast:.4f} |\n| Python loop over `mesh.vertices` | {loop:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
