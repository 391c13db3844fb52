"""`python -m training.export RUN_FOLDER OUT.safetensors`: a run's best weights in the format the add-on loads."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from blender_occnet.common.errors import InputError, OccNetError
from blender_occnet.occnet.checkpoints import Weights, save_weights

from .config import Config
from .train import BEST, CHECKPOINT, load_checkpoint


def export_run(run_dir: str | Path, out: str | Path, extra_card: dict | None = None, half: bool = False) -> Weights:
    """The run's best checkpoint (its last without one) with its configuration and model card; `half`
    stores the tensors as float16 (half the size, as the bundled weights are)."""
    run_dir = Path(run_dir)
    source = run_dir / BEST if (run_dir / BEST).exists() else run_dir / CHECKPOINT
    if not source.exists():
        raise InputError(f"{run_dir}: no checkpoint found (is this a training run folder?)")
    saved = load_checkpoint(source)
    config = Config.from_dict(json.loads(saved["config"]))
    state = saved["state"]
    card = {
        "summary": f"{config.model['arch']} trained by blender-occnet on {Path(config.data.path).name}",
        "data": {"path": config.data.path, "categories": config.data.categories,
                 "points_per_shape": config.data.points_per_shape,
                 "near_surface_fraction": config.data.near_surface_fraction},
        "steps": int(saved["step"]),
        "training_minutes": round(float(state.get("seconds", 0.0)) / 60, 1),
        "metrics": {"val_iou": round(float(state.get("best_iou", 0.0)), 4)},
        "learning_curve": _curve(run_dir / "validation.csv"),
        **(extra_card or {}),
    }
    # The threshold that scored best on the validation split (runs before candidates existed: the configured one).
    threshold = float(state.get("best_threshold", config.training.threshold))
    weights = Weights(config.model_config, saved["model"], threshold, card)
    save_weights(out, weights, half=half)
    return weights


def _curve(path: Path) -> list[list[float]]:
    """(step, validation IoU, minutes) rows of the run."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [[int(r["step"]), float(r["iou"]), round(float(r["seconds"]) / 60, 1)] for r in csv.DictReader(handle)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__)
    parser.add_argument("run", help="training run folder (training.out_dir)")
    parser.add_argument("output", help="weights file to write (.safetensors)")
    parser.add_argument("--card", default="{}", help="extra model-card fields as JSON")
    parser.add_argument("--half", action="store_true", help="store float16 tensors (half the file size)")
    args = parser.parse_args(argv)
    try:
        weights = export_run(args.run, args.output, json.loads(args.card), half=args.half)
    except (OccNetError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {weights.config.arch}, step {weights.card['steps']}, "
          f"validation IoU {weights.card['metrics']['val_iou']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
