"""`python -m training.evaluate WEIGHTS DATA_FOLDER`: reconstruct a split and report the paper's metrics.

Per category and as the mean over categories (class means first, as the paper): IoU on the uniform
points of points.npz, Chamfer-L1 (and x10, as the paper's tables print it), normal consistency and
F-score at 1%, against the surface samples of pointcloud.npz. For voxel weights the IoU and the
Chamfer-L1 of the 32^3 input grid itself are reported beside the network's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from blender_occnet.common.errors import InputError, OccNetError
from blender_occnet.common.files import atomic_output
from blender_occnet.common.policy import ENSEMBLE_SIZES, RESOLUTIONS
from blender_occnet.occnet.checkpoints import load_weights
from blender_occnet.occnet.frames import SHAPENET_V1_FRAME, relative_frame
from blender_occnet.occnet.generation import ExtractionSettings, Reconstructor
from blender_occnet.occnet.preprocess import PreparedInput

from .data import ShapeDataset
from .metrics import SurfaceSample, inside_mesh, iou, sample_mesh, surface_metrics
from .scans import EVALUATION_SCANS

METRICS = ("iou", "chamfer_l1", "chamfer_l1_x10", "normal_consistency", "f_score")


def evaluate(weights_path: str | Path, data: str | Path, split: str = "test", resolution: int = 128,
             limit: int = 0, categories: list[str] | None = None, device: str = "auto",
             surface_samples: int = 100_000, progress: bool = True, input_points: int = 0,
             refine_steps: int = 0, data_frame: dict[str, str] | None = None, scan: str = "",
             ensemble: int = 0) -> dict[str, Any]:
    """input_points: the size of each input cloud (default: the weights' n_input_points, a local network's
    too: scores are measured at a stated count, not at the every point up to 20,000 that
    preprocess.prepare_for_network gives a reconstruction); refine_steps: vertex refinement after
    extraction (the paper's setting is 30), to measure what it buys; data_frame: how the dataset's shapes
    stand when not in the project's frame (the authors' ShapeNet data: v1's); scan: a name of
    scans.EVALUATION_SCANS (point clouds: 'partial', the points seen from one direction), else the whole
    clean surface sample; ensemble: shifted encodings averaged (occnet/shifts.py: 1, 2 or 4; 0, the default,
    as a reconstruction chooses), said in the report."""
    weights = load_weights(weights_path)
    if data_frame is not None:  # the inputs are not in the project's frame: turn them from theirs
        weights.card = {**weights.card, "frame": relative_frame(data_frame, weights.card.get("frame"))}
    reconstructor = Reconstructor(weights, device)
    dataset = ShapeDataset(data, split, weights.modality, categories,
                           n_input_points=input_points or weights.config.n_input_points,
                           cache=False, image_size=weights.config.image_size,
                           **_scan_options(scan, weights.modality))
    settings = ExtractionSettings(threshold=weights.threshold, resolution=resolution,
                                  refine_steps=refine_steps, colours=False)
    per_category: dict[str, list[dict[str, float]]] = defaultdict(list)
    seen: dict[str, int] = defaultdict(int)
    started = time.perf_counter()
    indices = [i for i, m in enumerate(dataset.models) if not limit or _take(seen, m.category, limit)]
    bar = _bar(progress, len(indices))
    for index in indices:
        model = dataset.models[index]
        rng = np.random.default_rng([0, index])
        item = dataset.validation_item(index, rng, n_points=10**9)  # all uniform points
        prepared = PreparedInput(weights.modality, item["inputs"], np.zeros(3), 1.0)
        shape = reconstructor.encode(prepared, ensemble=ensemble)
        used_ensemble = shape.ensemble
        mesh = shape.extract(settings)
        # item["points"] and the mesh share the input frame; the dataset's surface samples are mapped
        # into it the same way the query points were.
        row = {"iou": iou(inside_mesh(mesh.vertices, mesh.faces, item["points"]), item["occ"] >= 0.5)}
        truth = _truth_surface(model.folder, item)
        if len(mesh.faces):
            row.update(surface_metrics(sample_mesh(mesh.vertices, mesh.faces, surface_samples), truth))
        else:
            row.update(chamfer_l1=float("nan"), chamfer_l1_x10=float("nan"), normal_consistency=0.0, f_score=0.0)
        if weights.modality == "voxels":
            row["input_iou"] = _voxel_input_iou(item)
            row["input_chamfer_l1"] = _voxel_input_chamfer(item, truth, surface_samples)
        per_category[model.category].append(row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    report = _summarise(per_category, weights, split, resolution, time.perf_counter() - started, refine_steps)
    if weights.modality == "pointcloud":
        report["input_points"] = dataset.n_input_points
    if indices:
        report["ensemble"] = used_ensemble
    if scan:
        report["scan"] = scan
    return report


def _scan_options(scan: str, modality: str) -> dict[str, Any]:
    if not scan:
        return {}
    if scan not in EVALUATION_SCANS:
        raise InputError(f"unknown scan {scan!r}; choose from {', '.join(EVALUATION_SCANS)}")
    if modality == "image":
        raise InputError(f"--scan {scan} is for point-cloud and voxel weights; these take images")
    return {"scan_like": 1.0, "scan_settings": EVALUATION_SCANS[scan]}


def _truth_surface(folder: Path, item: dict[str, np.ndarray]) -> SurfaceSample:
    """The shape's surface samples, mapped into the input's frame like its query points."""
    with np.load(folder / "pointcloud.npz", allow_pickle=False) as cloud:
        points, normals = cloud["points"].astype(np.float64), cloud["normals"].astype(np.float64)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return SurfaceSample((points - item["loc"]) / item["scale"], normals)


def _voxel_input_chamfer(item: dict[str, np.ndarray], truth: SurfaceSample, samples: int) -> float:
    """Chamfer-L1 of the 32^3 input grid's own surface (the blocks' boundary) against the truth."""
    from skimage.measure import marching_cubes

    grid = np.pad(item["inputs"] > 0.5, 1).astype(np.float32)
    if not grid.any():
        return float("nan")
    vertices, faces, _, _ = marching_cubes(grid, 0.5)
    # Padded index i + 1 is voxel i, whose centre is at (i + 0.5) / 32 - 0.5.
    vertices = (vertices - 0.5) / item["inputs"].shape[0] - 0.5
    return float(surface_metrics(sample_mesh(vertices.astype(np.float32), faces.astype(np.int32), samples),
                                 truth)["chamfer_l1"])


def _voxel_input_iou(item: dict[str, np.ndarray]) -> float:
    """IoU of the 32^3 input grid itself with the truth (the baseline the paper compares against)."""
    grid = item["inputs"] > 0.5
    cells = np.floor((item["points"] + 0.5) * 32).astype(np.int64)
    valid = ((cells >= 0) & (cells < 32)).all(axis=1)
    occupied = np.zeros(len(cells), dtype=bool)
    occupied[valid] = grid[cells[valid, 0], cells[valid, 1], cells[valid, 2]]
    return iou(occupied, item["occ"] >= 0.5)


def _summarise(per_category: dict[str, list[dict[str, float]]], weights: Any, split: str, resolution: int,
               seconds: float, refine_steps: int = 0) -> dict[str, Any]:
    keys = list(METRICS) + (["input_iou", "input_chamfer_l1"] if weights.modality == "voxels" else [])
    categories = {c: {k: float(np.nanmean([r[k] for r in rows])) for k in keys} | {"shapes": len(rows)}
                  for c, rows in sorted(per_category.items())}
    mean = {k: float(np.nanmean([v[k] for v in categories.values()])) for k in keys}
    return {"weights": weights.source, "arch": weights.config.arch, "modality": weights.modality, "split": split,
            "resolution": resolution, "refine_steps": refine_steps, "threshold": weights.threshold,
            "seconds": round(seconds, 1),
            "categories": categories, "mean": mean}


def format_table(report: dict[str, Any]) -> str:
    keys = [k for k in (*METRICS, "input_iou", "input_chamfer_l1") if k in report["mean"]]
    header = f"{'category':12} {'shapes':>6} " + " ".join(f"{k:>18}" for k in keys)
    lines = [header, "-" * len(header)]
    for name, values in report["categories"].items():
        lines.append(f"{name:12} {values['shapes']:>6} " + " ".join(f"{values[k]:18.4f}" for k in keys))
    lines.append(f"{'mean':12} {sum(v['shapes'] for v in report['categories'].values()):>6} "
                 + " ".join(f"{report['mean'][k]:18.4f}" for k in keys))
    return "\n".join(lines)


def _take(seen: dict[str, int], category: str, limit: int) -> bool:
    seen[category] += 1
    return seen[category] <= limit


def _bar(enabled: bool, total: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="shape", dynamic_ncols=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="weights file (.safetensors, or an original .pt)")
    parser.add_argument("data", help="dataset folder in the original layout")
    parser.add_argument("--split", default="test")
    parser.add_argument("--resolution", type=int, default=128, choices=RESOLUTIONS)
    parser.add_argument("--limit", type=int, default=0, help="at most this many shapes per category")
    parser.add_argument("--categories", help="comma-separated categories (default: all)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--input-points", type=int, default=0,
                        help="point clouds: points per input cloud (default: the weights' n_input_points)")
    parser.add_argument("--refine", type=int, default=0, metavar="N", help="refinement steps (default 0)")
    parser.add_argument("--data-frame", choices=("project", "shapenet-v1"), default="project",
                        help="how the dataset's shapes stand: this project's (its own and prepared data) or "
                             "ShapeNetCore v1's (the authors' preprocessed ShapeNet)")
    parser.add_argument("--scan", choices=tuple(EVALUATION_SCANS), default="",
                        help="point clouds and voxels: score inputs as a scanner gives them ('partial': the points "
                             "seen from one direction, or the voxels they pass through) instead of the whole surface")
    parser.add_argument("--ensemble", type=int, default=0, choices=(0, *ENSEMBLE_SIZES),
                        help="point clouds: shifted encodings averaged (default 0: as a reconstruction chooses, "
                             "4 for a local network without a fit; 1: the network's field as it is)")
    parser.add_argument("--json", help="also write the report as JSON to this file")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        report = evaluate(args.weights, args.data, args.split, args.resolution, args.limit,
                          args.categories.split(",") if args.categories else None, args.device,
                          progress=not args.quiet, input_points=args.input_points, refine_steps=args.refine,
                          data_frame=SHAPENET_V1_FRAME if args.data_frame == "shapenet-v1" else None,
                          scan=args.scan, ensemble=args.ensemble)
    except OccNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_table(report))
    if args.json:
        with atomic_output(args.json) as tmp:
            Path(tmp).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
