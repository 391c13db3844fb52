"""`python -m training.shapes OUT ...`: the command line that builds the collection (and its renders)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __doc__ as PACKAGE_DOC
from .categories import CATEGORIES
from .dataset import build_dataset, model_id
from .organic import ORGANIC_CATEGORIES
from .writer import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.shapes", description=PACKAGE_DOC.splitlines()[0])
    parser.add_argument("out", type=Path, help="dataset folder (created; existing models are kept)")
    parser.add_argument("--per-category", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--categories", default=",".join(CATEGORIES),
                        help="comma-separated subset; the organic ones (" + ",".join(ORGANIC_CATEGORIES)
                             + ") are built when named, or all of them with --organic")
    parser.add_argument("--organic", action="store_true",
                        help="add every organic category (training/shapes/organic.py)")
    parser.add_argument("--uniform-points", type=int, default=100_000, help="points.npz size")
    parser.add_argument("--near-points", type=int, default=None, help="points_near.npz size (default: uniform)")
    parser.add_argument("--near-sigmas", default="0.01,0.05", help="noise of the near points, equal shares")
    parser.add_argument("--surface-points", type=int, default=100_000, help="pointcloud.npz size")
    parser.add_argument("--no-mesh", action="store_true", help="skip mesh.obj")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--render", action="store_true",
                        help="also render img_choy2016/ (24 views) of every model without them (needs bpy)")
    parser.add_argument("--render-engine", choices=("BLENDER_WORKBENCH", "CYCLES"), default="BLENDER_WORKBENCH",
                        help="Workbench falls back to Cycles where it cannot start")
    args = parser.parse_args(argv)
    if args.render and args.no_mesh:
        parser.error("--render renders mesh.obj: drop --no-mesh")
    categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    if args.organic:
        categories += [c for c in ORGANIC_CATEGORIES if c not in categories]
    settings = Settings(n_uniform=args.uniform_points, n_near=args.near_points, n_surface=args.surface_points,
                        near_sigmas=tuple(float(v) for v in args.near_sigmas.split(",")), mesh=not args.no_mesh)
    try:
        counts = build_dataset(args.out, categories, args.per_category, args.seed, settings, args.workers)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {counts['written']} models written, {counts['skipped']} already there")
    if args.render:
        from ..render import render_models, report

        folders = [args.out / c / model_id(c, i) for c in categories for i in range(args.per_category)]
        print(report(render_models(folders, engine=args.render_engine)))
    return 0
