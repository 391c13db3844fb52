#!/usr/bin/env python
"""Quality against the tools users already have (issue 22), on the same noisy point clouds, side by side:

- network: the bundled point-cloud weights as they predict (fit off);
- fitted: the same with test-time fitting (fit on; what 'auto' does for these clouds);
- fitted_trimmed: fitted, with Trim unseen at BENCH_TRIM_UNSEEN (not in the default set: for one-sided scans);
- poisson: Open3D's screened Poisson as scan users run it: normals from 15 neighbours, oriented consistently
  (tangent planes, 15 neighbours), depth 8, the 5% lowest-density vertices trimmed;
- points_to_volume: Blender's Points to Volume -> Volume to Mesh (geometry nodes through bpy), voxel size 1.5x
  the cloud's median nearest-neighbour spacing, radius that spacing (the balls of neighbours touch).

    .venv/bin/python bench/bench_quality.py [--per-category 2] [--counts 300,3000,20000]
        [--splits procedural,organic] [--json out/bench_quality.json] [--pictures out/quality] [--quick]

Shapes: the procedural test shapes (training.shapes.generate with seeds apart from the dataset builder's), the
organic test shapes (training.shapes.organic.test_shapes: blobs, smooth unions, tubes, creatures, shells) and, with
--splits novel, kinds never trained on (novel_shapes.py: knots, springs, faceted rocks, gears, mushrooms).
Clouds: uniform on the true surface plus Gaussian noise of sigma 0.005 of the shape's size; with --scan NAME, as
training.scans.EVALUATION_SCANS[NAME] makes them from 200,000 surface samples instead (`lines`: a line scanner's
rows, `partial`: one side), the count being whatever the scan keeps. Scores against the
true surface (100,000 samples): Chamfer-L1, normal consistency, F-score at 1%, IoU where the mesh is closed.
Seconds are each method's wall time on the same cloud in the same run (ratios, not absolute figures, carry).
Open3D comes from requirements/bench.txt (`./dev bench` installs it; never the extension's requirements).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blender_occnet.occnet.checkpoints import load_weights  # noqa: E402
from blender_occnet.occnet.fitting import FitSettings  # noqa: E402
from blender_occnet.occnet.generation import ExtractionSettings, Reconstructor  # noqa: E402
from blender_occnet.occnet.preprocess import prepare_for_network  # noqa: E402
from blender_occnet.occnet.registry import finer_weights  # noqa: E402
from training.metrics import SurfaceSample, inside_mesh, iou, sample_mesh, surface_metrics  # noqa: E402
from training.scans import EVALUATION_SCANS, scan_like  # noqa: E402
from training.shapes import CATEGORIES, generate  # noqa: E402

NOISE = 0.005
TRUTH_SAMPLES = 100_000
IOU_POINTS = 20_000
PROCEDURAL_SEED = 424_242  # apart from the dataset builder's seeds (training.shapes.dataset.model_rng)

Mesh = tuple[np.ndarray, np.ndarray]
Method = Callable[[np.ndarray], tuple[Mesh, dict[str, float]]]


@dataclass
class TestShape:
    split: str
    category: str
    name: str
    shape: Any  # a SolidShape: sample_surface, contains


def test_shapes(splits: list[str], per_category: int) -> list[TestShape]:
    shapes = []
    if "procedural" in splits:
        for index, category in enumerate(CATEGORIES):
            for i in range(per_category):
                shape = generate(category, np.random.default_rng([PROCEDURAL_SEED, index, i]))
                shapes.append(TestShape("procedural", category, f"{category}_{i:02d}", shape))
    if "organic" in splits:
        from training.shapes import organic

        shapes += [TestShape("organic", category, name, shape)
                   for category, name, shape in organic.test_shapes(per_category)]
    if "novel" in splits:  # kinds no network here was trained on (novel_shapes.py)
        from novel_shapes import novel_shapes

        shapes += [TestShape("novel", category, name, shape) for category, name, shape in novel_shapes(per_category)]
    return shapes


# ------------------------------------------------------------------------------------------ the methods


BUNDLED = ROOT / "blender_occnet" / "weights" / "pointcloud.safetensors"


class Network:
    """Point-cloud weights through the core, as the CLI runs them: the bundled ones unless named, and then, as for
    a request naming none, the fine ones for a dense cloud (registry.finer_weights)."""

    def __init__(self, path: Path = BUNDLED, fit: dict[str, float] | None = None) -> None:
        self.path = path
        self.weights = load_weights(path)
        self.reconstructor = Reconstructor(self.weights, "cpu")
        self.fine: Reconstructor | None = None  # loaded when a cloud first needs it
        kinds = {f.name: f.type for f in dataclasses.fields(FitSettings)}
        self.fit_settings = FitSettings(**{k: int(v) if kinds[k] == "int" else float(v)
                                           for k, v in (fit or {}).items()})

    def method(self, fit: str, trim_unseen: float = 0.0) -> Method:
        def run(points: np.ndarray) -> tuple[Mesh, dict[str, float]]:
            prepared = prepare_for_network(self.weights.config, "pointcloud", points)
            reconstructor = self.reconstructor
            fine = finer_weights(self.path, prepared)
            if fine is not None:
                self.fine = self.fine or Reconstructor(load_weights(fine), "cpu")
                reconstructor = self.fine
            settings = ExtractionSettings(threshold=reconstructor.weights.threshold, resolution=128,
                                          trim_unseen=trim_unseen)
            mesh = reconstructor.encode(prepared, fit=fit, fit_settings=self.fit_settings,
                                        fit_threshold=settings.threshold).extract(settings)
            return (mesh.vertices, mesh.faces), {"seconds_fit": float(mesh.stats.get("seconds_fit", 0.0)),
                                                 "seconds_extract": float(mesh.stats["seconds_total"]),
                                                 "fine": float(fine is not None)}

        return run


# fitted_trimmed: the fitted mesh with Trim unseen at this distance (a fraction of the object's size): the surface a
# one-sided scan shows and nothing else, as Poisson's density trim gives it.
BENCH_TRIM_UNSEEN = 0.03


def open3d_missing() -> bool:
    """Open3D (the Poisson baseline) is a development requirement only: say how to get it when it is missing."""
    try:
        import open3d  # noqa: F401
    except ImportError:
        print("Open3D is missing: `./dev bench` installs requirements/bench.txt (or pip install -r it)")
        return True
    return False


def poisson(points: np.ndarray) -> tuple[Mesh, dict[str, float]]:
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(15))
    cloud.orient_normals_consistent_tangent_plane(15)
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=8)
    densities = np.asarray(densities)
    mesh.remove_vertices_by_mask(densities < np.quantile(densities, 0.05))
    return (np.asarray(mesh.vertices, np.float32), np.asarray(mesh.triangles, np.int64)), {}


def median_spacing(points: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    return float(np.median(cKDTree(points).query(points, k=2)[0][:, 1]))


def points_to_volume(points: np.ndarray) -> tuple[Mesh, dict[str, float]]:
    """Blender's own nodes: the cloud as a mesh's vertices -> Mesh to Points -> Points to Volume -> Volume to
    Mesh, evaluated by the depsgraph and read back."""
    import bpy

    spacing = median_spacing(points)
    mesh = bpy.data.meshes.new("cloud")
    mesh.vertices.add(len(points))
    mesh.vertices.foreach_set("co", points.astype(np.float32).ravel())
    obj = bpy.data.objects.new("cloud", mesh)
    bpy.context.scene.collection.objects.link(obj)
    tree = bpy.data.node_groups.new("points_to_volume", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    group_in, group_out = tree.nodes.new("NodeGroupInput"), tree.nodes.new("NodeGroupOutput")
    to_points = tree.nodes.new("GeometryNodeMeshToPoints")
    to_volume = tree.nodes.new("GeometryNodePointsToVolume")
    to_mesh = tree.nodes.new("GeometryNodeVolumeToMesh")
    to_volume.inputs["Resolution Mode"].default_value = "Size"
    to_volume.inputs["Voxel Size"].default_value = 1.5 * spacing
    to_volume.inputs["Radius"].default_value = spacing
    tree.links.new(group_in.outputs[0], to_points.inputs["Mesh"])
    tree.links.new(to_points.outputs[0], to_volume.inputs["Points"])
    tree.links.new(to_volume.outputs[0], to_mesh.inputs["Volume"])
    tree.links.new(to_mesh.outputs[0], group_out.inputs[0])
    modifier = obj.modifiers.new("points_to_volume", "NODES")
    modifier.node_group = tree
    try:
        evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        result = evaluated.to_mesh()
        result.calc_loop_triangles()
        vertices = np.empty(len(result.vertices) * 3, np.float32)
        result.vertices.foreach_get("co", vertices)
        triangles = np.empty(len(result.loop_triangles) * 3, np.int64)
        result.loop_triangles.foreach_get("vertices", triangles)
        evaluated.to_mesh_clear()
    finally:
        bpy.data.objects.remove(obj)
        bpy.data.meshes.remove(mesh)
        bpy.data.node_groups.remove(tree)
    return (vertices.reshape(-1, 3), triangles.reshape(-1, 3)), {}


# ------------------------------------------------------------------------------------------ scoring


def closed(faces: np.ndarray) -> bool:
    """Every edge shared by exactly two faces."""
    if not len(faces):
        return False
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool((counts == 2).all())


def score(mesh: Mesh, truth: SurfaceSample, shape: Any, probes: np.ndarray) -> dict[str, float]:
    vertices, faces = mesh
    if not len(faces):
        return {"chamfer_l1": float("nan"), "normal_consistency": float("nan"), "f_score": 0.0, "iou": float("nan")}
    metrics = surface_metrics(sample_mesh(vertices, faces, TRUTH_SAMPLES), truth)
    result = {k: metrics[k] for k in ("chamfer_l1", "normal_consistency", "f_score", "accuracy", "completeness")}
    result["iou"] = iou(inside_mesh(vertices, faces, probes), shape.contains(probes)) if closed(faces) \
        else float("nan")
    return result


SCAN_SAMPLES = 200_000  # surface samples a --scan cloud is made from


def cloud(shape: Any, count: int, rng: np.random.Generator, scan: str) -> np.ndarray:
    """The input: `count` noisy uniform samples, or the scan `scan` of the surface (EVALUATION_SCANS)."""
    if scan:
        points, normals = shape.sample_surface(SCAN_SAMPLES, rng)
        return scan_like(points, normals, rng, EVALUATION_SCANS[scan]).astype(np.float32)
    points = shape.sample_surface(count, rng)[0]
    return (points + rng.normal(scale=NOISE, size=points.shape)).astype(np.float32)


def run(shapes: list[TestShape], counts: list[int], methods: dict[str, Method],
        pictures: Path | None, scan: str = "") -> list[dict[str, Any]]:
    rows = []
    for number, item in enumerate(shapes):
        truth = SurfaceSample(*item.shape.sample_surface(TRUTH_SAMPLES, np.random.default_rng([1, number])))
        probes = np.random.default_rng([2, number]).uniform(-0.55, 0.55, (IOU_POINTS, 3))
        for count in counts:
            rng = np.random.default_rng([3, number, count])
            points = cloud(item.shape, count, rng, scan)
            meshes = {}
            for name, method in methods.items():
                started = time.perf_counter()
                mesh, extra = method(points)
                seconds = time.perf_counter() - started
                meshes[name] = mesh
                row = {"split": item.split, "category": item.category, "shape": item.name, "points": count,
                       "input_points": len(points),
                       "method": name, "seconds": seconds, "faces": len(mesh[1]), **extra,
                       **score(mesh, truth, item.shape, probes)}
                rows.append(row)
            print(f"{item.split:10s} {item.name:14s} {len(points):6d}  " + "  ".join(
                f"{r['method']} {10 * r['chamfer_l1']:.3f}/{r['f_score']:.2f}/{r['seconds']:.1f}s"
                for r in rows[-len(methods):]), flush=True)
            if pictures is not None:
                picture(pictures / f"{item.split}_{item.name}_{count}.png", points, truth, meshes)
    return rows


# ------------------------------------------------------------------------------------------ reporting


def summarise(rows: list[dict[str, Any]], challenger: str = "fitted") -> str:
    lines = []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for split in dict.fromkeys(r["split"] for r in rows):
        lines += [f"\n{split}: mean over shapes (Chamfer-L1 x10, normal consistency, F@1%, IoU where closed, "
                  "seconds)\n", "| points | method | CD-L1 x10 | NC | F@1% | IoU | closed | s |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for count in sorted({r["points"] for r in rows if r["split"] == split}):
            for method in methods:
                sel = [r for r in rows if r["split"] == split and r["points"] == count and r["method"] == method]
                if not sel:
                    continue
                ious = [r["iou"] for r in sel if np.isfinite(r["iou"])]
                lines.append(f"| {count} | {method} | {10 * _mean(sel, 'chamfer_l1'):.4f} | "
                             f"{_mean(sel, 'normal_consistency'):.3f} | {_mean(sel, 'f_score'):.3f} | "
                             f"{np.mean(ious) if ious else float('nan'):.3f} | {len(ious)}/{len(sel)} | "
                             f"{_mean(sel, 'seconds'):.2f} |")
        if challenger in methods:
            lines += [f"\n{split}: share of shapes on which {challenger} beats each other method (Chamfer-L1 lower "
                      "and F@1% higher, both), and its time against each",
                      "| points | against | CD better | F better | both | time ratio |",
                      "|---:|---|---:|---:|---:|---:|"]
            for count in sorted({r["points"] for r in rows if r["split"] == split}):
                mine = {r["shape"]: r for r in rows if r["split"] == split and r["points"] == count
                        and r["method"] == challenger}
                for other in methods:
                    if other == challenger:
                        continue
                    theirs = {r["shape"]: r for r in rows if r["split"] == split and r["points"] == count
                              and r["method"] == other}
                    pairs = [(mine[s], theirs[s]) for s in mine if s in theirs]
                    cd = np.mean([a["chamfer_l1"] < b["chamfer_l1"] for a, b in pairs])
                    fs = np.mean([a["f_score"] > b["f_score"] for a, b in pairs])
                    both = np.mean([a["chamfer_l1"] < b["chamfer_l1"] and a["f_score"] > b["f_score"]
                                    for a, b in pairs])
                    ratio = np.median([a["seconds"] / b["seconds"] for a, b in pairs])
                    lines.append(f"| {count} | {other} | {cd:.0%} | {fs:.0%} | {both:.0%} | {ratio:.2f}x |")
            fits = [r for r in rows if r["split"] == split and r["method"] == challenger and r.get("seconds_extract")]
            if fits:
                ratios = {c: np.median([r["seconds_fit"] / r["seconds_extract"] for r in fits if r["points"] == c])
                          for c in sorted({r["points"] for r in fits})}
                lines.append(f"\n{split}: {challenger}'s fitting against its own 128-cell extraction (median ratio): "
                             + ", ".join(f"{c} points {ratio:.1f}x" for c, ratio in ratios.items()))
        counts = sorted({r["points"] for r in rows if r["split"] == split})
        if len(counts) > 1:
            lines.append(f"\n{split}: more points never hurt (Chamfer-L1 at each count <= at the one below), "
                         "shapes for which it holds:")
            for method in methods:
                by_shape: dict[str, dict[int, float]] = {}
                for r in rows:
                    if r["split"] == split and r["method"] == method:
                        by_shape.setdefault(r["shape"], {})[r["points"]] = r["chamfer_l1"]
                holds = [all(cd[counts[i + 1]] <= cd[counts[i]] for i in range(len(counts) - 1))
                         for cd in by_shape.values() if all(c in cd for c in counts)]
                lines.append(f"- {method}: {sum(holds)} of {len(holds)}")
    return "\n".join(lines)


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in rows if np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))


def picture(path: Path, points: np.ndarray, truth: SurfaceSample, meshes: dict[str, Mesh]) -> None:
    """One row: the input cloud, the true surface, then each method's surface; points splatted with a z-buffer,
    shaded by their normals, all from the same view."""
    from PIL import Image, ImageDraw

    tiles = [("input", _splat(points, None)), ("truth", _splat(truth.points[:60_000], truth.normals[:60_000]))]
    for name, (vertices, faces) in meshes.items():
        if len(faces):
            sample = sample_mesh(vertices, faces, 60_000)
            tiles.append((name, _splat(sample.points, sample.normals)))
    image = Image.fromarray(np.concatenate([tile for _, tile in tiles], axis=1))
    draw = ImageDraw.Draw(image)
    for i, (name, tile) in enumerate(tiles):
        draw.text((i * tile.shape[1] + 6, 4), name, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _splat(points: np.ndarray, normals: np.ndarray | None, size: int = 260) -> np.ndarray:
    turn_y, tilt = 0.6, 0.45
    rotation = np.array([[np.cos(turn_y), 0, np.sin(turn_y)], [0, 1, 0], [-np.sin(turn_y), 0, np.cos(turn_y)]]) @ \
        np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    p = points @ rotation.T
    pixels = ((p[:, :2] * np.array([1, -1]) + 0.65) / 1.3 * size).astype(int)
    ok = ((pixels >= 0) & (pixels < size)).all(axis=1)
    if normals is None:
        shade = np.full(len(p), 0.25)
    else:
        shade = np.clip(0.25 + 0.75 * np.abs((normals @ rotation.T) @ np.array([0.3, 0.5, 0.81])), 0, 1)
    order = np.argsort(p[ok, 2])  # far first: nearer points overwrite them
    image = np.ones((size, size))
    image[pixels[ok][order, 1], pixels[ok][order, 0]] = shade[ok][order]
    return np.repeat((image * 255).astype(np.uint8)[..., None], 3, axis=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-category", type=int, default=2)
    parser.add_argument("--counts", default="300,3000,20000")
    parser.add_argument("--splits", default="procedural,organic")
    parser.add_argument("--methods", default="network,fitted,poisson,points_to_volume")
    parser.add_argument("--json", type=Path, help="write every row here")
    parser.add_argument("--pictures", type=Path, help="write one picture per shape and count here")
    parser.add_argument("--quick", action="store_true", help="1 shape per category, 300 and 3,000 points")
    parser.add_argument("--scan", choices=tuple(EVALUATION_SCANS), default="",
                        help="clouds as this scan gives them (one per shape; --counts is then ignored)")
    parser.add_argument("--weights", action="append", default=[], metavar="LABEL=PATH[@FIELD=VALUE,...]",
                        help="other point-cloud weights beside the bundled ones, as methods network_LABEL and "
                             "fitted_LABEL (after @: their fit's settings, occnet.fitting.FitSettings fields, "
                             "e.g. @upsample=1,learning_rate=0.01)")
    args = parser.parse_args(argv)
    if args.quick:
        args.per_category, args.counts = 1, "300,3000"
    if open3d_missing():
        return 1
    import torch

    torch.set_num_threads(2)
    network = Network()
    available: dict[str, Method] = {"network": network.method("off"), "fitted": network.method("on"),
                                    "fitted_trimmed": network.method("on", BENCH_TRIM_UNSEEN),
                                    "poisson": poisson, "points_to_volume": points_to_volume}
    methods = {name: available[name] for name in args.methods.split(",")}
    for entry in args.weights:  # each beside the bundled weights' own methods, in the same run
        label, _, where = entry.partition("=")
        path, _, fit = where.partition("@")
        other = Network(Path(path), dict(pair.split("=") for pair in fit.split(",")) if fit else None)
        for fit in ("network", "fitted"):
            if fit in methods:
                methods[f"{fit}_{label}"] = other.method("off" if fit == "network" else "on")
    shapes = test_shapes(args.splits.split(","), args.per_category)
    counts = [SCAN_SAMPLES] if args.scan else [int(c) for c in args.counts.split(",")]
    rows = run(shapes, counts, methods, args.pictures, args.scan)
    print(summarise(rows))
    if args.json:
        write_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
