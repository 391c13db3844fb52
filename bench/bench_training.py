"""Training speed on this CPU for the point-cloud configuration, and the share of each step spent
waiting for data (target: under 10%).

Builds a small procedural dataset in a temporary folder (or uses --data), then trains the bundled
point-cloud configuration (training/configs/pointcloud.yaml: hidden 128, code 128, 32 shapes x 1,024
points per step) for a fixed number of steps, twice in one run: with the loader's in-memory cache
(what training uses) and without it (every file read from disk each time).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.config import CONFIG_DIR, load_config  # noqa: E402
from training.shapes import Settings, build_dataset  # noqa: E402
from training.train import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--data", type=Path, help="an existing dataset folder (default: build a small one)")
    args = parser.parse_args()
    steps = 8 if args.quick else args.steps
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "shapes"
            started = time.perf_counter()
            build_dataset(data, per_category=8, seed=0, settings=Settings(n_uniform=32768, n_surface=30000, mesh=False),
                          progress=False)
            print(f"built a dataset of 80 shapes in {time.perf_counter() - started:.1f} s")
        rows = []
        for cache in (True, False):
            config = load_config(CONFIG_DIR / "pointcloud.yaml")
            config.data = dataclasses.replace(config.data, path=str(data), cache=cache, val_shapes=4)
            config.training = dataclasses.replace(config.training, out_dir=str(Path(tmp) / f"run-{cache}"),
                                                  max_steps=steps, validate_every=10**9, checkpoint_every=10**9)
            summary = train(config, progress=False)
            rows.append((cache, summary["seconds"] / steps, summary["data_share"]))
    print(f"\npoint-cloud configuration, {steps} steps of 32 shapes x 1,024 points")
    print(f"{'loader cache':>12} {'s/step':>8} {'steps/s':>8} {'waiting for data':>17}")
    for cache, per_step, share in rows:
        print(f"{'on' if cache else 'off':>12} {per_step:8.2f} {1 / per_step:8.3f} {100 * share:16.1f}%")


if __name__ == "__main__":
    main()
