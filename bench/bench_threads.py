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

--against-original: the same reconstruction by an original-style generator (the reference's
generate_from_latent loop: the network's plain forward on batches of 100,000 points, values to float64,
MISE from 32 cells, marching cubes) in the environment the reference runs in (torch's defaults: every
core, libgomp's default spin), against the project's own pipeline in the environment the backend sets
(a short spin, every core but Blender's), quiet and loaded, with the ratio original / ours.

    .venv/bin/python bench/bench_threads.py [--quick] [--load-processes N] [--against-original]
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
from blender_occnet.common.weights_catalogue import BUNDLED_DIR
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
if len(sys.argv) > 4 and sys.argv[4] == "original":
    from blender_occnet.occnet.meshing import extract_mesh
    from blender_occnet.occnet.mise import MISE
    net, level = local.build(), float(torch.logit(torch.tensor(local.threshold, dtype=torch.float64)))
    start = time.perf_counter()
    with torch.no_grad():
        c = net.encode(torch.from_numpy(prepared.array)[None])
        mise = MISE(32, 2, level)
        query = mise.query()
        while len(query):
            box = torch.from_numpy(1.1 * (query / mise.resolution - 0.5)).float()
            values = torch.cat([net.decode(part[None], c).squeeze(0) for part in torch.split(box, 100_000)])
            mise.update(query, values.numpy().astype("float64"))
            query = mise.query()
        extract_mesh(mise.to_dense(), level, 1.1)
    out["original_s"] = time.perf_counter() - start
print(json.dumps(out))
"""


def busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1


def run_child(policy: str, threads: int, n: int, repeats: int, original: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "OPENBLAS_"))}
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif policy.startswith("spin"):  # spin this many iterations, then sleep (libgomp's default: 300,000)
        env["GOMP_SPINCOUNT"] = policy[len("spin"):]
    env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(n), str(repeats),
                           "original" if original else "ours"], env=env,
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
    parser.add_argument("--against-original", action="store_true",
                        help="an original-style generator in torch's default environment against ours as the "
                             "backend runs it")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    n, repeats, rounds = (50_000, 2, 1) if args.quick else (200_000, 3, args.rounds)
    if args.against_original:
        return against_original(cores, args.load_processes, rounds, n, repeats)
    policies = ("default", "passive", *(f"spin{n}" for n in args.spin_counts.split(",") if n))
    configs = [(policy, threads) for threads in sorted({1, cores}) for policy in policies]
    results: dict[tuple[str, str, int], list[dict]] = {}
    for _ in range(rounds):
        for state in ("quiet", "loaded"):
            load = loaded(args.load_processes) if state == "loaded" else []
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
              f"{med['convonet_points_per_s']:,.0f} | {med['reconstruct_s']:.2f} | "
              f"{base / med['reconstruct_s']:.2f}x |")
    return 0


def loaded(processes: int) -> list[multiprocessing.Process]:
    """Busy loops in other processes, bounded in time; the caller terminates them."""
    load = [multiprocessing.Process(target=busy, args=(900.0,), daemon=True) for _ in range(processes)]
    for p in load:
        p.start()
    return load


def against_original(cores: int, load_processes: int, rounds: int, n: int, repeats: int) -> int:
    sys.path.insert(0, str(ROOT))
    from blender_occnet.common.torch_env import SHORT_SPIN, backend_threads

    spin = f"spin{SHORT_SPIN['GOMP_SPINCOUNT']}"
    # Ours as the backend runs it (every core but Blender's) and as the command line does (every core).
    ours_threads = {"backend": backend_threads(), "command line": cores}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(rounds):
        for state in ("quiet", "loaded"):
            load = loaded(load_processes) if state == "loaded" else []
            try:
                reference = run_child("default", cores, n, repeats, original=True)["original_s"]
                for name, threads in ours_threads.items():
                    ours = run_child(spin, threads, n, repeats)["reconstruct_s"]
                    results.setdefault((state, name), []).append((reference, ours))
            finally:
                for p in load:
                    p.terminate()
                    p.join()
    print(f"{cores} cores, {load_processes} busy process(es) when loaded, {rounds} round(s), medians; chair "
          f"sample, 128 cells, bundled point-cloud weights. Original-style: torch's defaults ({cores} threads, "
          f"libgomp's default spin); ours: {spin}")
    print("| machine | ours as | threads | original-style s | ours s | ratio original / ours (pairwise median) |")
    print("|---|---|---:|---:|---:|---:|")
    for (state, name), pairs in results.items():
        reference = statistics.median(r for r, _ in pairs)
        ours = statistics.median(o for _, o in pairs)
        ratio = statistics.median(r / o for r, o in pairs)
        print(f"| {state} | {name} | {ours_threads[name]} | {reference:.2f} | {ours:.2f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
