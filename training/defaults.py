"""`python -m training.defaults [--minutes M]`: reproduce (or keep training) the bundled default weights.

Builds the procedural dataset if it is missing (with renders when the image weights are asked for),
trains each bundled weights file's configuration for up to M minutes (resuming an earlier run where one exists, so
repeated calls continue the same curve; on a machine without the run, starting from the bundled weights),
and exports the best weights of each into blender_occnet/weights/ with a model card: the history the
weights have been through and test-split metrics. Weights no better than the bundled ones are not exported.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from blender_occnet.common.errors import OccNetError
from blender_occnet.occnet.checkpoints import Weights
from blender_occnet.occnet.registry import describe

from .config import CONFIG_DIR, load_config
from .evaluate import evaluate, format_table
from .export import export_run
from .shapes import CATEGORIES, ORGANIC_CATEGORIES, Settings, build_dataset, model_id
from .train import CHECKPOINT, train

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "blender_occnet" / "weights"
MODALITIES = ("pointcloud", "voxels", "image")
# The configuration behind each bundled weights file, by the file's name (pointcloud.yaml and voxels.yaml hold the
# earlier global-code networks; pointcloud_local.yaml, voxels_local.yaml and image.yaml the procedural-only runs the
# wide ones continued). pointcloud_fine: the same network on 64x64 planes, for dense clouds (registry.FINE_WEIGHTS).
CONFIGS = {"pointcloud": "pointcloud_wide.yaml", "pointcloud_fine": "pointcloud_wide64.yaml",
           "voxels": "voxels_wide.yaml", "image": "image_wide.yaml"}
BUNDLED = tuple(CONFIGS)


def modality_of(name: str) -> str:
    """The modality of a bundled weights file's name (pointcloud_fine -> pointcloud)."""
    return name.split("_")[0]


# Point-cloud weights are also scored from this many input points (the sparse end of what users have) and
# from the points seen from one direction (a partial scan); voxel weights from the grid of such a scan. Each
# evaluation goes into the model card under its key.
SPARSE_INPUT_POINTS = 300
CARD_EVALUATIONS: dict[str, tuple[tuple[str, dict], ...]] = {
    "pointcloud": (("test_metrics_sparse", {"input_points": SPARSE_INPUT_POINTS}),
                   ("test_metrics_partial", {"scan": "partial"})),
    "voxels": (("test_metrics_partial", {"scan": "partial"}),),
}


@dataclasses.dataclass(frozen=True)
class DatasetRecipe:
    """The procedural collection a modality's weights train on (python -m training.shapes makes it)."""

    folder: str
    per_category: int
    categories: tuple[str, ...] = CATEGORIES
    seed: int = 0


# Every network learns the man-made and the organic world (issue 23).
WIDE_WORLD = DatasetRecipe("data/shapes_wide", 100, CATEGORIES + ORGANIC_CATEGORIES)
DATASETS = {"pointcloud": WIDE_WORLD, "voxels": WIDE_WORLD, "image": WIDE_WORLD}
HISTORY = "continued_from.json"
DATASET_SETTINGS = Settings(n_uniform=32768, n_surface=30000)
NOTES = {
    "pointcloud": "a Convolutional Occupancy Network with three 32x32 feature planes (the released ShapeNet model "
                  "has 64x64 and a deeper U-Net), trained on the CPU on clouds of 300 to 20,000 points of 1,500 "
                  "procedural shapes of 15 categories (10 man-made, 5 organic), half of them degraded as scans "
                  "are (partial views, uneven density, holes, noise, stray points); python -m training.defaults "
                  "continues it",
    "pointcloud_fine": "the point-cloud Convolutional Occupancy Network on three 64x64 feature planes (the released "
                       "ShapeNet model's size; its U-Net stays shallower), continued from the 32x32 weights on the "
                       "same clouds; a reconstruction naming no weights takes it for dense clouds (points a median "
                       "0.016 of the object's size apart or closer), the 32x32 weights for sparser ones; "
                       "python -m training.defaults continues it",
    "voxels": "a Convolutional Occupancy Network with three 32x32 feature planes on the 32^3 grid, trained on the "
              "CPU on 1,500 procedural shapes of 15 categories (10 man-made, 5 organic), half of the grids made as "
              "a voxelised scan gives them (the cells a scan passes through, open where it has gaps), the rest "
              "solid and shifted within their free room; python -m training.defaults continues it",
    "image": "the original's ResNet-18 encoder trained from scratch (no ImageNet weights here) on 112 px inputs, "
             "with a smaller decoder (hidden 128, code 128); trained on the CPU on 24 renders each of procedural "
             "collections of 1,500 shapes: 10 man-made categories, then 15 (10 man-made, 5 organic); "
             "python -m training.defaults continues it",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.defaults", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="training time per weights file in this call")
    parser.add_argument("--weights", "--modalities", dest="weights", default=",".join(BUNDLED),
                        help="the bundled weights files to train, by name (default: all)")
    parser.add_argument("--data", help="dataset folder for every modality asked for (default: each modality's "
                                       "own, built when missing: " + ", ".join(
                                           f"{m} {r.folder}" for m, r in DATASETS.items()) + ")")
    parser.add_argument("--eval-per-category", type=int, default=10,
                        help="test shapes per category evaluated into the model card (0: none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    names = [m.strip() for m in args.weights.split(",") if m.strip()]
    unknown = sorted(set(names) - set(BUNDLED))
    if unknown:
        parser.error(f"unknown weights {unknown}; choose from {', '.join(BUNDLED)}")
    try:
        for modality in dict.fromkeys(map(modality_of, names)):
            _build_data(modality, args.data)
        for name in names:
            modality = modality_of(name)
            config = load_config(CONFIG_DIR / CONFIGS[name])
            run = Path(config.training.out_dir)
            # Each call adds `minutes` to what the run has already spent.
            spent = 0.0
            if (run / CHECKPOINT).exists():
                from .train import load_checkpoint

                spent = float(load_checkpoint(run / CHECKPOINT)["state"]["seconds"]) / 60
            data = args.data or DATASETS[modality].folder
            config.data = dataclasses.replace(config.data, path=data)
            config.training = dataclasses.replace(config.training, max_minutes=spent + args.minutes)
            # A fresh machine has no run folder: continue from the bundled weights rather than from scratch,
            # and keep what they had been through in the card.
            bundled = WEIGHTS_DIR / f"{name}.safetensors"
            # Continue from the bundled weights only when they are of this configuration's architecture.
            same_arch = bundled.exists() and describe(bundled).arch == config.model_config.arch
            resume = (run / CHECKPOINT).exists()
            history = run / HISTORY  # what the weights this run started from had been through
            if not resume:
                run.mkdir(parents=True, exist_ok=True)
                history.write_text(json.dumps(_earlier_training(bundled) if same_arch else {}))
            earlier = json.loads(history.read_text()) if history.exists() else {}
            shipped = float(describe(bundled).card.get("metrics", {}).get("val_iou", 0.0)) if bundled.exists() else 0.0
            summary = train(config, resume=resume, init_weights=bundled if same_arch else None)
            if summary["best_iou"] <= shipped:  # a restarted optimiser can fall back before it climbs again
                print(f"{name}: step {summary['step']}, best validation IoU {summary['best_iou']:.3f}, not above "
                      f"the bundled weights' {shipped:.3f}: kept them; the next call resumes this run")
                continue
            weights = export_default(name, run, bundled, earlier, data, args.eval_per_category)
            print(f"{name}: step {summary['step']}, best validation IoU {summary['best_iou']:.3f}; "
                  f"wrote {bundled} ({weights.config.arch})")
    except OccNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _build_data(modality: str, folder: str | None) -> None:
    """The modality's procedural collection where it is missing (a folder the user names is theirs as it is)."""
    if folder is not None:
        return
    recipe = DATASETS[modality]
    build_dataset(recipe.folder, categories=recipe.categories, per_category=recipe.per_category, seed=recipe.seed,
                  settings=DATASET_SETTINGS, workers=2, progress=True)
    if modality == "image":  # renders of models that have none yet (needs the bpy module)
        from .render import render_models, report

        folders = [Path(recipe.folder) / c / model_id(c, i) for c in recipe.categories
                   for i in range(recipe.per_category)]
        print(report(render_models(folders)))


def export_default(name: str, run: Path, target: Path, earlier: dict, data: str,
                   eval_per_category: int) -> Weights:
    """The run's best weights -> `target` with the model card of the bundled weights `name`: the note, what came
    before this run, and (eval_per_category > 0) the evaluation command's metrics on that many test shapes per
    category."""
    modality = modality_of(name)
    # The procedural shapes stand y-up facing -z; the add-on turns Blender's z-up, -y front into this frame.
    card: dict = {"reproduce": "python -m training.defaults", "note": NOTES[name],
                  "frame": {"up": "+y", "front": "-z"}}
    if earlier:
        card["continued_from"] = earlier
    # float16 in the file: the three bundled weights must stay within 40 MB together.
    weights = export_run(run, target, card, half=True)
    if eval_per_category:
        report = evaluate(target, data, "test", limit=eval_per_category, progress=False)
        print(format_table(report))
        card["test_metrics"] = _card_metrics(report)
        for key, options in CARD_EVALUATIONS.get(modality, ()):
            scored = evaluate(target, data, "test", limit=eval_per_category, progress=False, **options)
            print(f"{key}:\n{format_table(scored)}")
            card[key] = _card_metrics(scored)
        weights = export_run(run, target, card, half=True)
    return weights


def _card_metrics(report: dict) -> dict:
    """What a model card keeps of an evaluation: how it was scored (input points, scan, shifted encodings), the
    means, the means of the man-made and the organic categories where both were scored, and IoU per category."""
    extra = {key: report[key] for key in ("input_points", "scan", "ensemble") if key in report}
    categories = report["categories"]
    groups = {"man_made": [c for c in categories if c not in ORGANIC_CATEGORIES],
              "organic": [c for c in categories if c in ORGANIC_CATEGORIES]}
    if all(groups.values()):
        extra["groups"] = {name: {k: round(float(sum(categories[c][k] for c in members) / len(members)), 4)
                                  for k in report["mean"]} for name, members in groups.items()}
    return {"split": "test", "resolution": report["resolution"], "threshold": report["threshold"], **extra,
            "shapes": sum(c["shapes"] for c in categories.values()),
            **{k: round(v, 4) for k, v in report["mean"].items()},
            "iou_per_category": {name: round(c["iou"], 4) for name, c in categories.items()}}


def _earlier_training(bundled: Path) -> dict:
    """What the bundled weights had been through, for a run that starts from them."""
    card = describe(bundled).card  # the header alone: no tensors loaded
    earlier = dict(card.get("continued_from") or {})
    steps = int(earlier.get("steps", 0)) + int(card.get("steps", 0))
    minutes = float(earlier.get("training_minutes", 0.0)) + float(card.get("training_minutes", 0.0))
    curve = list(earlier.get("learning_curve", [])) + [list(row) for row in card.get("learning_curve", [])]
    return {"steps": steps, "training_minutes": round(minutes, 1), "learning_curve": curve} if steps else {}


if __name__ == "__main__":
    sys.exit(main())
