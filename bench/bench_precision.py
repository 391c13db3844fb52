"""Would the decoder in reduced precision give the same mesh? (issue 14 item 4)

For each bundled sample with its bundled weights, the points MISE evaluates at 128 cells are recorded,
then decoded again under autocast in bfloat16 and float16. The rule the project keeps: reduced precision
only where the inside/outside sign (against the weights' threshold) is the same at every evaluated point,
so the mesh is the same; otherwise float32 stays. The arithmetic is emulated on this CPU (autocast casts
the same layers to the same formats as on a GPU; a GPU's accumulation order differs, so its flips can only
be compared, not predicted, from these counts). Speed on a GPU is a figure to take where one is lent.

    .venv/bin/python bench/bench_precision.py [--resolution 128]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from blender_occnet.common.weights_catalogue import BUNDLED_DIR  # noqa: E402
from blender_occnet.occnet.checkpoints import load_weights  # noqa: E402
from blender_occnet.occnet.generation import ExtractionSettings, Reconstructor  # noqa: E402
from blender_occnet.occnet.preprocess import prepare_for_network  # noqa: E402

SAMPLES = {"pointcloud": "chair_pointcloud.ply", "voxels": "car_voxels.binvox", "image": "sofa_image.png"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, CPU autocast, {args.resolution} cells")
    print("| weights | points evaluated | dtype | signs flipped | largest |logit| among flips | "
          "logit error median / max |")
    print("|---|---:|---|---:|---:|---:|")
    for modality, sample in SAMPLES.items():
        weights = load_weights(BUNDLED_DIR / f"{modality}.safetensors")
        prepared = prepare_for_network(weights.config, modality, ROOT / "blender_occnet" / "samples" / sample)
        shape = Reconstructor(weights, "cpu").encode(prepared)
        seen: list[torch.Tensor] = []
        decode = shape.decode

        def recording(points: torch.Tensor, decode=decode, seen=seen) -> torch.Tensor:
            seen.append(points.clone())
            return decode(points)

        shape.decode = recording
        settings = ExtractionSettings(threshold=weights.threshold, resolution=args.resolution)
        shape.extract(settings)
        points = torch.cat(seen)
        level = settings.threshold_logit
        net = weights.build()
        with torch.inference_mode():
            encoding = net.encode(torch.from_numpy(prepared.array)[None])
            exact = torch.cat([net.decode(p[None], encoding)[0] for p in torch.split(points, 50_000)]).double()
            for dtype in (torch.bfloat16, torch.float16):
                with torch.autocast("cpu", dtype=dtype):
                    low = torch.cat([net.decode(p[None], encoding)[0].float() for p in torch.split(points, 50_000)])
                low = low.double()
                flipped = (exact > level) != (low > level)
                error = (low - exact).abs()
                near = float((exact[flipped] - level).abs().max()) if flipped.any() else 0.0
                print(f"| {modality} | {len(points):,} | {str(dtype).split('.')[-1]} | {int(flipped.sum()):,} "
                      f"({float(flipped.double().mean()):.3%}) | {near:.3f} | "
                      f"{float(error.median()):.4f} / {float(error.max()):.3f} |")
    gpu_against_cpu(args.resolution)
    return 0


def gpu_against_cpu(resolution: int) -> None:
    """Whole extractions on the GPU against the CPU, interleaved, medians of 3 (float32 on both)."""
    from blender_occnet.occnet.generation import mps_available

    device = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else None
    if device is None:
        print("\nNo CUDA or MPS device here: the GPU/CPU ratios are a figure to take on a machine with one.")
        return
    print(f"\n| weights | cells | CPU s | {device} s | CPU / {device} |\n|---|---:|---:|---:|---:|")
    for modality, sample in SAMPLES.items():
        weights = load_weights(BUNDLED_DIR / f"{modality}.safetensors")
        prepared = prepare_for_network(weights.config, modality, ROOT / "blender_occnet" / "samples" / sample)
        settings = ExtractionSettings(threshold=weights.threshold, resolution=resolution)
        times: dict[str, list[float]] = {"cpu": [], device: []}
        for _ in range(4):  # the first round warms both up and is not counted
            for where in times:
                reconstructor = Reconstructor(weights, where)
                start = time.perf_counter()
                reconstructor.encode(prepared).extract(settings)
                if where == "cuda":
                    torch.cuda.synchronize()
                times[where].append(time.perf_counter() - start)
        cpu, gpu = float(np.median(times["cpu"][1:])), float(np.median(times[device][1:]))
        print(f"| {modality} | {resolution} | {cpu:.2f} | {gpu:.2f} | {cpu / gpu:.1f}x |")


if __name__ == "__main__":
    sys.exit(main())
