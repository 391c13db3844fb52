"""Many small clouds: one `reconstruct FOLDER -o OUT` (the network loaded once) against one `reconstruct` call per
cloud, side by side in one run, and `--jobs 2` beside them.

    python bench/bench_batch.py [--count 100] [--rounds 5] [--resolution 32]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def clouds(folder: Path, count: int, first: int = 0) -> list[Path]:
    """Noisy ellipsoids and boxes of 2,000 points, as .xyz files (numbered from `first`, each its own draw)."""
    paths = []
    for i in range(first, first + count):
        rng = np.random.default_rng(i)
        d = rng.normal(size=(2000, 3))
        if i % 2:
            d /= np.linalg.norm(d, axis=1, keepdims=True)
        else:  # a box: each point pushed onto the face of its largest coordinate
            d = np.clip(d / 2, -1, 1)
            axis = np.abs(d).argmax(1)
            d[np.arange(len(d)), axis] = np.sign(d[np.arange(len(d)), axis])
        points = d * rng.uniform(0.2, 0.6, 3) + rng.normal(scale=0.005, size=d.shape)
        paths.append(folder / f"cloud{i:03d}.xyz")
        np.savetxt(paths[-1], points, fmt="%.5f")
    return paths


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5,
                        help="the clouds split into this many folders, each run all three ways in turn, so that a "
                             "machine whose load drifts weighs on the three alike")
    parser.add_argument("--resolution", default="32")
    parser.add_argument("--quick", action="store_true", help="10 clouds")
    args = parser.parse_args()
    if args.quick:
        args.count, args.rounds = 10, 1
    cli = [sys.executable, "-m", "blender_occnet", "reconstruct"]
    seconds = {"single": 0.0, "folder": 0.0, "jobs": 0.0}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for round_ in range(args.rounds):
            inputs = root / f"in{round_}"
            inputs.mkdir()
            paths = clouds(inputs, args.count // args.rounds, first=round_ * (args.count // args.rounds))
            out = {name: root / f"{name}{round_}" for name in seconds}
            out["single"].mkdir()
            seconds["single"] += sum(timed([*cli, str(p), "-o", str(out["single"] / f"{p.stem}.obj"),
                                            "--resolution", args.resolution, "--quiet"]) for p in paths)
            seconds["folder"] += timed([*cli, str(inputs), "-o", str(out["folder"]), "--resolution",
                                        args.resolution, "--quiet"])
            seconds["jobs"] += timed([*cli, str(inputs), "-o", str(out["jobs"]), "--resolution", args.resolution,
                                      "--quiet", "--jobs", "2"])
    count = args.count // args.rounds * args.rounds
    print(f"{count} clouds of 2,000 points, {args.resolution} cells, in {args.rounds} rounds:")
    for name, label in (("single", "one reconstruct call each"), ("folder", "one call for the folder"),
                        ("jobs", "the folder with --jobs 2")):
        ratio = "" if name == "single" else f"  ({seconds['single'] / seconds[name]:.1f}x faster)"
        print(f"  {label:26s} {seconds[name]:7.1f} s{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
