"""Local-feature (ConvONet) decoding against the global-code (ONet) decoder, side by side in one run.

Prints, for the bundled point-cloud weights (a ConvONet) and a global-code network of the previous bundled
architecture (ONet, hidden 128, code 128; random weights unless --global-weights names a file):
  - decoder throughput in points/s: the local decoder's plain forward (what training runs), its fixed-feature
    fast path (what generation runs), and ONet's folded decoder, at 1 and 2 threads;
  - whole reconstructions (encode + MISE + marching cubes) of the chair sample at 128 and 256 cells.

    .venv/bin/python bench/bench_local.py [--quick] [--global-weights OLD.safetensors]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blender_occnet.common.weights_catalogue import BUNDLED_DIR  # noqa: E402
from blender_occnet.occnet.checkpoints import Weights, load_weights  # noqa: E402
from blender_occnet.occnet.config import ModelConfig  # noqa: E402
from blender_occnet.occnet.generation import ExtractionSettings, Reconstructor  # noqa: E402
from blender_occnet.occnet.model import build_model  # noqa: E402
from blender_occnet.occnet.preprocess import prepare_for_network  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "blender_occnet" / "samples" / "chair_pointcloud.ply"


def global_weights(path: str | None) -> Weights:
    if path:
        return load_weights(path)
    config = ModelConfig("onet-pointcloud", c_dim=128, hidden_size=128, encoder_hidden=128)
    torch.manual_seed(0)
    return Weights(config, build_model(config).state_dict(), 0.2, {"summary": "random, for speed only"})


def points_per_second(fn: Callable[[torch.Tensor], torch.Tensor], n: int, repeats: int) -> float:
    points = torch.rand(n, 3) * 1.1 - 0.55
    with torch.inference_mode():
        fn(points[:1000])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(points)
            times.append(time.perf_counter() - start)
    return n / statistics.median(times)


def bench_decoders(local: Weights, glob: Weights, quick: bool) -> None:
    n, repeats = (50_000, 2) if quick else (200_000, 5)
    local_net, global_net = local.build(), glob.build()
    prepared_local = prepare_for_network(local.config, "pointcloud", SAMPLE)
    prepared_global = prepare_for_network(glob.config, "pointcloud", SAMPLE)
    with torch.inference_mode():
        features = local_net.encode(torch.from_numpy(prepared_local.array)[None])
        code = global_net.encode(torch.from_numpy(prepared_global.array)[None])
    fixed = local_net.fixed_decoder(features)
    folded = global_net.fixed_decoder(code)

    def plain(points: torch.Tensor) -> torch.Tensor:
        return local_net.decode(points[None], features)[0]

    print(f"Decoder throughput, {n:,} points per call, median of {repeats} (points/s):\n")
    print("| threads | local plain forward | local fixed-feature path | fixed / plain | global folded (ONet) "
          "| local fixed / global folded |")
    print("|---:|---:|---:|---:|---:|---:|")
    base = torch.get_num_threads()
    for threads in sorted({1, base}):
        torch.set_num_threads(threads)
        a, b, c = (points_per_second(f, n, repeats) for f in (plain, fixed, folded))
        print(f"| {threads} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x | {c:,.0f} | {b / c:.2f}x |")
    torch.set_num_threads(base)


def bench_reconstruction(local: Weights, glob: Weights, quick: bool) -> None:
    resolutions = (128,) if quick else (128, 256)
    print(f"\nWhole reconstruction of {SAMPLE.name} (encode + MISE from 32 + marching cubes), median of "
          f"{1 if quick else 3}:\n")
    print("| cells | local s | local points | global s | global points | global / local time |")
    print("|---:|---:|---:|---:|---:|---:|")
    for resolution in resolutions:
        row = []
        for weights in (local, glob):
            reconstructor = Reconstructor(weights, "cpu")
            prepared = prepare_for_network(weights.config, "pointcloud", SAMPLE)
            settings = ExtractionSettings(threshold=weights.threshold, resolution=resolution)
            times, points = [], 0
            for _ in range(1 if quick else 3):
                start = time.perf_counter()
                mesh = reconstructor.encode(prepared).extract(settings)
                times.append(time.perf_counter() - start)
                points = int(mesh.stats["points_evaluated"])
            row.append((statistics.median(times), points))
        (tl, pl), (tg, pg) = row
        print(f"| {resolution} | {tl:.2f} | {pl:,} | {tg:.2f} | {pg:,} | {tg / tl:.2f}x |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--local-weights", default=str(BUNDLED_DIR / "pointcloud.safetensors"))
    parser.add_argument("--global-weights", help="global-code point-cloud weights (default: random, same size "
                                                 "as the earlier bundled ones)")
    args = parser.parse_args()
    local = load_weights(args.local_weights)
    if not local.config.local:
        print(f"{args.local_weights} is not a local-feature network ({local.config.arch}); pass --local-weights")
        return 1
    glob = global_weights(args.global_weights)
    print(f"local: {local.config.arch} ({sum(t.numel() for t in local.state_dict.values()):,} values); "
          f"global: {glob.config.arch} ({sum(t.numel() for t in glob.state_dict.values()):,} values); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    bench_decoders(local, glob, args.quick)
    bench_reconstruction(local, glob, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
