"""Slider latency: in headless Blender with the extension installed, reconstruct the chair sample at 128
cells, then move the result's threshold (the live re-extraction: the backend re-meshes from the values it
kept) and time from the property change until the new mesh is in the scene; also refinement's cost
against the extraction itself (30 steps, the paper's setting). Targets: 0.3 s per move; refinement at
most the extraction's time (issue 13).

    .venv/bin/python bench/bench_slider.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

# bench_first_click points Blender at a throw-away user folder before it imports bpy: take bpy from it.
from bench_first_click import bpy, click, install  # the same installed extension and sample


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    addon = install()
    click("128")  # starts the backend and caches the weights
    plain = [click("128") for _ in range(1 if args.quick else 3)]
    refined = [click("128", refine_steps=30) for _ in range(1 if args.quick else 3)]
    click("128")
    result = next(o for o in bpy.data.objects if o.occnet.kind == "RESULT")
    moves = []
    for threshold in (0.3, 0.45, 0.25, 0.5, 0.35, 0.4)[: 2 if args.quick else None]:
        before = result.occnet.job
        started = time.perf_counter()
        result.occnet.threshold = threshold
        while addon.live.pending(result.name):
            addon.events.pump(timeout=0.01)
        assert result.occnet.job != before, bpy.context.window_manager.occnet_job.last_error
        moves.append(time.perf_counter() - started)
    addon.backend_session.shutdown()
    print("chair sample, 128 cells, medians")
    print("| what | seconds |")
    print("|---|---:|")
    print(f"| Reconstruct | {statistics.median(plain):.2f} |")
    print(f"| Reconstruct with 30 refinement steps | {statistics.median(refined):.2f} "
          f"({statistics.median(refined) / statistics.median(plain):.1f}x) |")
    print(f"| threshold move, property change to new mesh ({len(moves)} moves) | {statistics.median(moves):.3f} "
          f"(max {max(moves):.3f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
