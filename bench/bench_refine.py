#!/usr/bin/env python
"""Refinement: what it costs against the extraction and what it buys, side by side on test shapes.

    .venv/bin/python bench/bench_refine.py [--resolution 128] [--per-category 1] [--data data/shapes] [--quick]

Needs the procedural dataset (`python -m training.defaults` builds it); without it, says so and stops.
Bundled point-cloud weights, each test shape encoded once and extracted with each variant (values are
reused across extractions, so a variant's cost is its refine seconds against the first, plain extraction):

- none: marching cubes on the MISE lattice;
- reference30: the original's refinement, 30 RMSprop steps, its normal target differentiated (second order);
- optimise30: the project's "optimise" refinement (the same loss, the normal target held constant);
- project30: the project's default "project" refinement: Newton steps onto the iso-surface, at most 30
  (each vertex stops once it is there; "passes" counts the network passes that ran);
- simplified5000 (+...): the reference demo's setting, simplified to 5,000 faces first, then refined.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blender_occnet.occnet.checkpoints import load_weights  # noqa: E402
from blender_occnet.occnet.generation import EncodedShape, ExtractionSettings, Reconstructor  # noqa: E402
from blender_occnet.occnet.preprocess import PreparedInput  # noqa: E402
from tests.helpers import reference_refinement  # noqa: E402
from training.data import ShapeDataset  # noqa: E402
from training.evaluate import _truth_surface  # noqa: E402
from training.metrics import inside_mesh, iou, sample_mesh, surface_metrics  # noqa: E402

OURS = EncodedShape._refine


def reference_refine(self: EncodedShape, vertices: np.ndarray, faces: np.ndarray, settings: ExtractionSettings,
                     report: Any, should_cancel: Any) -> np.ndarray:
    return reference_refinement(self.decode, vertices, faces, settings.refine_steps, settings.threshold, settings.seed)


# name: (refinement function, settings); None runs the product's own
VARIANTS: dict[str, tuple[Any, dict[str, Any]]] = {
    "none": (None, {}),
    "reference30": (reference_refine, {"refine_steps": 30, "refine_method": "optimise"}),
    "optimise30": (None, {"refine_steps": 30, "refine_method": "optimise"}),
    "project30": (None, {"refine_steps": 30, "refine_method": "project"}),
    "simplified5000": (None, {"simplify_faces": 5000}),
    "simplified5000+optimise30": (None, {"simplify_faces": 5000, "refine_steps": 30, "refine_method": "optimise"}),
    "simplified5000+project30": (None, {"simplify_faces": 5000, "refine_steps": 30, "refine_method": "project"}),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--per-category", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "shapes")
    parser.add_argument("--quick", action="store_true", help="three shapes only")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no dataset at {args.data}: build it with `python -m training.defaults` first")
        return 0
    weights = load_weights(ROOT / "blender_occnet" / "weights" / "pointcloud.safetensors")
    reconstructor = Reconstructor(weights, "cpu")
    dataset = ShapeDataset(args.data, "test", "pointcloud", None, n_input_points=weights.config.n_input_points,
                           cache=False)
    seen: dict[str, int] = {}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    for index, model in enumerate(dataset.models):
        if seen.get(model.category, 0) >= args.per_category or (args.quick and len(seen) == 3):
            continue
        seen[model.category] = seen.get(model.category, 0) + 1
        item = dataset.validation_item(index, np.random.default_rng([0, index]), n_points=10**9)
        truth = _truth_surface(model.folder, item)
        shape = reconstructor.encode(PreparedInput("pointcloud", item["inputs"], np.zeros(3), 1.0))
        for name, (refine, settings) in VARIANTS.items():
            EncodedShape._refine = refine or OURS  # type: ignore[method-assign]
            started = time.perf_counter()
            mesh = shape.extract(ExtractionSettings(threshold=weights.threshold, resolution=args.resolution,
                                                    **settings))
            row = {"seconds": time.perf_counter() - started, "refine": float(mesh.stats.get("seconds_refine", 0)),
                   "passes": float(mesh.stats.get("refine_passes", settings.get("refine_steps", 0))),
                   "iou": iou(inside_mesh(mesh.vertices, mesh.faces, item["points"]), item["occ"] >= 0.5)}
            row.update(surface_metrics(sample_mesh(mesh.vertices, mesh.faces, 100_000), truth))
            rows[name].append(row)
        EncodedShape._refine = OURS  # type: ignore[method-assign]
    extraction = float(np.mean([r["seconds"] for r in rows["none"]]))
    print(f"{len(rows['none'])} test shapes, {args.resolution} cells, bundled point-cloud weights, means")
    print("| variant | passes | refine s | x extraction | IoU | Chamfer-L1 | normal consistency | F-score |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, found in rows.items():
        mean = {key: float(np.mean([r[key] for r in found])) for key in found[0]}
        print(f"| {name} | {mean['passes']:.1f} | {mean['refine']:.2f} | {mean['refine'] / extraction:.1f} | "
              f"{mean['iou']:.4f} | "
              f"{mean['chamfer_l1']:.5f} | {mean['normal_consistency']:.4f} | {mean['f_score']:.4f} |")
    print(f"(the plain extraction: {extraction:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
