"""Many small clouds: one `reconstruct FOLDER -o OUT` (the network loaded once) against one `reconstruct` call per
cloud, side by side in one run, and `--jobs 2` beside them.

    python bench/bench_batch.py [--count 100] [--resolution 32]
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


def clouds(folder: Path, count: int) -> list[Path]:
    """Noisy ellipsoids and boxes of 2,000 points, as .xyz files."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
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
    parser.add_argument("--resolution", default="32")
    parser.add_argument("--quick", action="store_true", help="10 clouds")
    args = parser.parse_args()
    if args.quick:
        args.count = 10
    cli = [sys.executable, "-m", "blender_occnet", "reconstruct"]
    with tempfile.TemporaryDirectory() as folder:
        inputs = Path(folder) / "in"
        inputs.mkdir()
        paths = clouds(inputs, args.count)
        (Path(folder) / "single").mkdir()
        one_by_one = sum(timed([*cli, str(p), "-o", str(Path(folder) / "single" / f"{p.stem}.obj"),
                                "--resolution", args.resolution, "--quiet"]) for p in paths)
        batch = timed([*cli, str(inputs), "-o", str(Path(folder) / "batch"), "--resolution", args.resolution,
                       "--quiet"])
        jobs = timed([*cli, str(inputs), "-o", str(Path(folder) / "jobs"), "--resolution", args.resolution,
                      "--quiet", "--jobs", "2"])
    print(f"{args.count} clouds of 2,000 points, {args.resolution} cells:")
    print(f"  one reconstruct call each  {one_by_one:7.1f} s")
    print(f"  one call for the folder    {batch:7.1f} s  ({one_by_one / batch:.1f}x faster)")
    print(f"  the folder with --jobs 2   {jobs:7.1f} s  ({one_by_one / jobs:.1f}x faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
