#!/usr/bin/env python
"""Test-time fitting's settings side by side: the fitted reconstruction of bench_quality.py's shapes and clouds
under variants of the engine's constants, in one run, shape by shape.

    .venv/bin/python bench/fit_variants.py [--splits procedural,organic,novel] [--scan lines|partial]
        [--count 3000] [--per-category 1] [--only NAME,...] [--variant LABEL=CHANGE[+CHANGE...]] ...
        [--json F] [--pictures DIR]

A CHANGE is `module.CONSTANT=value` for a module of blender_occnet.occnet (`fitting.PROJECTION_SIDEWAYS_COSINE=0.5`,
`winding.GAP_REACH=0.15`: module globals the engine reads when it runs), or one of the ablations: `noproject` (the
mesh is not moved onto the points; it is still smoothed), `noguide` (no winding-number guide). The variant `base`
(today's engine) always runs first. Each variant's setting is in force only while its own reconstruction runs, so
every variant sees the same cloud. Printed: Chamfer-L1 x10 and F-score at 1% per shape and variant, then the means
and how many shapes each variant improves or worsens by more than 1%. For choosing constants; bench_quality.py is
the comparison against the tools users have.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import (  # noqa: E402
    IOU_POINTS,
    SCAN_SAMPLES,
    TRUTH_SAMPLES,
    Network,
    cloud,
    picture,
    score,
    test_shapes,
    write_rows,
)

from training.metrics import SurfaceSample  # noqa: E402
from training.scans import EVALUATION_SCANS  # noqa: E402

ABLATIONS = {
    "noproject": [("generation", "project_onto_points", lambda vertices, *args, **kwargs: (vertices, 0))],
    "noguide": [("winding", "GUIDE_AGREEMENT", 2.0)],  # an agreement no field reaches: the guide never applies
}


def parse_variant(text: str) -> tuple[str, list[tuple[str, str, Any]]]:
    """'LABEL=fitting.X=0.5+noguide' -> ('LABEL', [('fitting', 'X', 0.5), ('winding', 'GUIDE_AGREEMENT', 2.0)])."""
    label, _, spec = text.partition("=")
    if not spec or "." in label or label == "base":
        raise SystemExit(f"--variant {text!r}: give it a label other than 'base' first, e.g. side=fitting.X=0.5")
    changes: list[tuple[str, str, Any]] = []
    for part in filter(None, spec.split("+")):
        if part in ABLATIONS:
            changes += ABLATIONS[part]
            continue
        name, _, value = part.partition("=")
        module, _, constant = name.partition(".")
        current = getattr(importlib.import_module(f"blender_occnet.occnet.{module}"), constant)
        changes.append((module, constant, type(current)(float(value)) if not isinstance(current, bool)
                        else value.lower() in ("1", "true")))
    return label, changes


@contextlib.contextmanager
def applied(changes: list[tuple[str, str, Any]]) -> Iterator[None]:
    modules = [importlib.import_module(f"blender_occnet.occnet.{m}") for m, _, _ in changes]
    saved = [getattr(module, name) for module, (_, name, _) in zip(modules, changes)]
    try:
        for module, (_, name, value) in zip(modules, changes):
            setattr(module, name, value)
        yield
    finally:
        for module, (_, name, _), value in reversed(list(zip(modules, changes, saved))):
            setattr(module, name, value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", default="procedural,organic,novel")
    parser.add_argument("--per-category", type=int, default=1)
    parser.add_argument("--scan", choices=tuple(EVALUATION_SCANS), default="")
    parser.add_argument("--count", type=int, default=3000, help="points of a uniform cloud (without --scan)")
    parser.add_argument("--only", default="", help="comma-separated shape names (e.g. knot_00,chair_00)")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=CHANGE[+CHANGE...]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--pictures", type=Path)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    variants = dict([("base", [])] + [parse_variant(v) for v in args.variant])
    fitted = Network().method("on")
    shapes = test_shapes(args.splits.split(","), args.per_category)
    wanted = set(filter(None, args.only.split(",")))
    count = SCAN_SAMPLES if args.scan else args.count
    rows: list[dict[str, Any]] = []
    for number, item in enumerate(shapes):  # the numbering bench_quality.run gives, so the clouds are its own
        if wanted and item.name not in wanted:
            continue
        truth = SurfaceSample(*item.shape.sample_surface(TRUTH_SAMPLES, np.random.default_rng([1, number])))
        probes = np.random.default_rng([2, number]).uniform(-0.55, 0.55, (IOU_POINTS, 3))
        points = cloud(item.shape, count, np.random.default_rng([3, number, count]), args.scan)
        meshes = {}
        for label, changes in variants.items():
            with applied(changes):
                meshes[label] = fitted(points)[0]
            rows.append({"shape": item.name, "split": item.split, "variant": label,
                         **score(meshes[label], truth, item.shape, probes)})
        print(f"{item.name:14s} " + "  ".join(f"{r['variant']} {10 * r['chamfer_l1']:.4f}/{r['f_score']:.3f}"
                                              for r in rows[-len(variants):]), flush=True)
        if args.pictures is not None:
            picture(args.pictures / f"{item.name}_{args.scan or count}.png", points, truth, meshes)
    base = {r["shape"]: r for r in rows if r["variant"] == "base"}
    for label in variants:
        mine = [r for r in rows if r["variant"] == label]
        better = sum(r["chamfer_l1"] < 0.99 * base[r["shape"]]["chamfer_l1"] for r in mine)
        worse = sum(r["chamfer_l1"] > 1.01 * base[r["shape"]]["chamfer_l1"] for r in mine)
        print(f"{label:12s} Chamfer-L1 x10 {10 * np.mean([r['chamfer_l1'] for r in mine]):.4f}  "
              f"F@1% {np.mean([r['f_score'] for r in mine]):.3f}  "
              f"NC {np.mean([r['normal_consistency'] for r in mine]):.3f}  better {better}, worse {worse}")
    if args.json:
        write_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
