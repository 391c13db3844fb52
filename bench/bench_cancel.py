"""Cancel latency: a real backend reconstructs the car sample with the bundled voxel weights; Cancel is
sent after a spread of delays, and the time until the backend answers 'cancelled' is printed (or the
result, when the job had already finished). Target: at most 0.5 s at any resolution (issue 13).

    .venv/bin/python bench/bench_cancel.py [--quick] [--resolutions 256,512] [--refine N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from blender_occnet.common.backend_client import BackendClient  # noqa: E402
from blender_occnet.common.messages import Progress  # noqa: E402
from blender_occnet.occnet.preprocess import prepare_voxels  # noqa: E402

DELAYS = (0.3, 0.8, 1.5, 2.5, 4.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--resolutions", default="256,512")
    parser.add_argument("--refine", type=int, default=0)
    args = parser.parse_args()
    grid = prepare_voxels(ROOT / "blender_occnet" / "samples" / "car_voxels.binvox").array.astype(np.uint8)
    client = BackendClient.start_local(sys.executable)
    print("| cells | refine steps | cancel after s | answer | latency s | stage |")
    print("|---:|---:|---:|---|---:|---|")
    try:
        for resolution in [int(r) for r in args.resolutions.split(",")][: 1 if args.quick else None]:
            for delay in DELAYS[: 2 if args.quick else None]:
                job = client.reconstruct("voxels", grid, weights="voxels", resolution=resolution,
                                         refine_steps=args.refine, normals=True)
                time.sleep(delay)
                sent, stage = time.monotonic(), ""
                client.cancel(job)
                while True:
                    event = client.wait_event(timeout=120)
                    if event.job != job:
                        continue
                    if isinstance(event, Progress):
                        stage = event.stage
                        continue
                    print(f"| {resolution} | {args.refine} | {delay} | {event.type} | "
                          f"{time.monotonic() - sent:.2f} | {stage} |")
                    break
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
