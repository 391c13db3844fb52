"""`python -m training.defaults [--minutes M]`: reproduce (or keep training) the bundled default weights.

Builds the procedural dataset if it is missing (with renders when the image weights are asked for), trains each modality's configuration for up to M
minutes of this session (resuming an earlier run where one exists, so repeated calls continue the
same curve; on a machine without the run, starting from the bundled weights), and exports the best
weights of each into blender_occnet/weights/.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from blender_occnet.occnet.errors import OccNetError

from .config import CONFIG_DIR, load_config
from .export import export_run
from .shapes import Settings, build_dataset
from .train import CHECKPOINT, train

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "blender_occnet" / "weights"
MODALITIES = ("pointcloud", "voxels", "image")
DATASET = {"per_category": 150, "seed": 0}
DATASET_SETTINGS = Settings(n_uniform=32768, n_surface=30000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.defaults", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="training time per modality in this call")
    parser.add_argument("--modalities", default=",".join(MODALITIES))
    parser.add_argument("--data", default="data/shapes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    unknown = sorted(set(modalities) - set(MODALITIES))
    if unknown:
        parser.error(f"unknown modalities {unknown}; choose from {', '.join(MODALITIES)}")
    try:
        build_dataset(args.data, per_category=DATASET["per_category"], seed=DATASET["seed"],
                      settings=DATASET_SETTINGS, workers=2, progress=True)
        if "image" in modalities:  # renders of models that have none yet (needs the bpy module)
            from .render import render_models, report
            from .shapes import CATEGORIES, model_id

            folders = [Path(args.data) / c / model_id(c, i) for c in CATEGORIES for i in range(DATASET["per_category"])]
            print(report(render_models(folders)))
        for modality in modalities:
            config = load_config(CONFIG_DIR / f"{modality}.yaml")
            run = Path(config.training.out_dir)
            # Each call adds `minutes` to what the run has already spent.
            spent = 0.0
            if (run / CHECKPOINT).exists():
                from .train import load_checkpoint

                spent = float(load_checkpoint(run / CHECKPOINT)["state"]["seconds"]) / 60
            config.data = dataclasses.replace(config.data, path=args.data)
            config.training = dataclasses.replace(config.training, max_minutes=spent + args.minutes)
            # A fresh machine has no run folder: continue from the bundled weights rather than from scratch.
            bundled = WEIGHTS_DIR / f"{modality}.safetensors"
            summary = train(config, resume=(run / CHECKPOINT).exists(),
                            init_weights=bundled if bundled.exists() else None)
            weights = export_run(run, WEIGHTS_DIR / f"{modality}.safetensors",
                                 {"reproduce": "python -m training.defaults"})
            print(f"{modality}: step {summary['step']}, best validation IoU {summary['best_iou']:.3f}; "
                  f"wrote {WEIGHTS_DIR / f'{modality}.safetensors'} ({weights.config.arch})")
    except OccNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
