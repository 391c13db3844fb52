"""Threads and OpenMP's wait policy on a quiet and on a loaded machine, side by side in one run.

Each configuration runs in a fresh process (libgomp reads its settings once, when torch loads):
  - wait policy: libgomp's default (spinning between parallel regions), PASSIVE (sleep at once), or a
    short spin (GOMP_SPINCOUNT), and 1 thread or every core;
  - machine: quiet, or loaded by busy loops in other processes (Blender beside the backend), each
    bounded in time and stopped when the measurement ends.
Measured in each: the ONet folded decoder (global code, hidden 128) and the bundled ConvONet point-cloud
decoder in points/s, and a whole reconstruction of the chair sample at 128 cells with the bundled
point-cloud weights. Configurations are interleaved over rounds; medians are printed with the ratio
of each to the default policy on the same machine state.

    .venv/bin/python bench/bench_threads.py [--quick] [--load-processes N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import torch
from blender_occnet.occnet.checkpoints import Weights, load_weights
from blender_occnet.occnet.config import ModelConfig
from blender_occnet.occnet.generation import ExtractionSettings, Reconstructor
from blender_occnet.occnet.model import build_model
from blender_occnet.occnet.preprocess import prepare_for_network
from blender_occnet.occnet.registry import BUNDLED_DIR
n, repeats = int(sys.argv[2]), int(sys.argv[3])
sample = sys.argv[1] + "/blender_occnet/samples/chair_pointcloud.ply"
torch.manual_seed(0)
onet_config = ModelConfig("onet-pointcloud", c_dim=128, hidden_size=128, encoder_hidden=128)
onet = Weights(onet_config, build_model(onet_config).state_dict(), 0.2)
local = load_weights(BUNDLED_DIR / "pointcloud.safetensors")
out = {"threads": torch.get_num_threads()}
points = torch.rand(n, 3) * 1.1 - 0.55
for name, weights in (("onet", onet), ("convonet", local)):
    net = weights.build()
    with torch.inference_mode():
        decode = net.fixed_decoder(net.encode(torch.from_numpy(
            prepare_for_network(weights.config, "pointcloud", sample).array)[None]))
        decode(points[:1000])
        times = []
        for _ in range(repeats):
            start = time.perf_counter(); decode(points); times.append(time.perf_counter() - start)
    out[name + "_points_per_s"] = n / statistics.median(times)
rec = Reconstructor(local, "cpu")
prepared = prepare_for_network(local.config, "pointcloud", sample)
start = time.perf_counter()
rec.encode(prepared).extract(ExtractionSettings(threshold=local.threshold, resolution=128))
out["reconstruct_s"] = time.perf_counter() - start
print(json.dumps(out))
"""


def busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1


def run_child(policy: str, threads: int, n: int, repeats: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "OPENBLAS_"))}
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif policy.startswith("spin"):  # spin this many iterations, then sleep (libgomp's default: 300,000)
        env["GOMP_SPINCOUNT"] = policy[len("spin"):]
    env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(n), str(repeats)], env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--load-processes", type=int, default=1, help="busy processes beside (default 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spin-counts", default="10000", help="GOMP_SPINCOUNT values to try as well")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    n, repeats, rounds = (50_000, 2, 1) if args.quick else (200_000, 3, args.rounds)
    policies = ("default", "passive", *(f"spin{n}" for n in args.spin_counts.split(",") if n))
    configs = [(policy, threads) for threads in sorted({1, cores}) for policy in policies]
    results: dict[tuple[str, str, int], list[dict]] = {}
    for _ in range(rounds):
        for state in ("quiet", "loaded"):
            load = []
            if state == "loaded":
                load = [multiprocessing.Process(target=busy, args=(900.0,), daemon=True)
                        for _ in range(args.load_processes)]
                for p in load:
                    p.start()
            try:
                for policy, threads in configs:
                    results.setdefault((state, policy, threads), []).append(run_child(policy, threads, n, repeats))
            finally:
                for p in load:
                    p.terminate()
                    p.join()
    print(f"{cores} cores, {args.load_processes} busy process(es) when loaded, {rounds} round(s), medians; "
          "ratio: to the default policy at the same thread count and machine state")
    print("| machine | wait policy | threads | ONet decoder points/s | ConvONet decoder points/s | "
          "chair 128³ s | ratio (reconstruction) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (state, policy, threads), rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        base = statistics.median(r["reconstruct_s"] for r in results[(state, "default", threads)])
        print(f"| {state} | {policy} | {threads} | {med['onet_points_per_s']:,.0f} | "
              f"{med['convonet_points_per_s']:,.0f} | {med['reconstruct_s']:.2f} | {base / med['reconstruct_s']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
