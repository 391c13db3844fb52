"""What the process boundary adds to a reconstruction: client round trip against the backend's own time.

Runs a real backend child process (stdin/stdout pipes, as the add-on does) on a random network whose
surface at 256 cells has about a million triangles, and measures in the same run:
  - the reconstruction inside the backend (its own seconds_backend),
  - the wall time the client sees from sending the request to holding the result arrays,
  - the same reconstruction in-process, without any boundary.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blender_occnet.common.backend_client import BackendClient  # noqa: E402
from blender_occnet.common.messages import Result  # noqa: E402
from blender_occnet.occnet.checkpoints import Weights, load_weights, save_weights  # noqa: E402
from blender_occnet.occnet.config import ModelConfig  # noqa: E402
from blender_occnet.occnet.generation import ExtractionSettings, Reconstructor  # noqa: E402
from blender_occnet.occnet.model import build_model  # noqa: E402
from blender_occnet.occnet.preprocess import prepare_voxels  # noqa: E402


def wiggly_voxel_weights(folder: Path) -> Path:
    """A random voxel network whose occupancy has a detailed surface (many triangles at 256 cells)."""
    torch.manual_seed(0)
    config = ModelConfig("onet-voxels", c_dim=64, hidden_size=64)
    model = build_model(config).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not name.endswith(("running_mean", "running_var")):
                fan_in = tensor[0].numel() if tensor.ndim >= 2 else 8
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 1.6 / fan_in ** 0.5)
        model.decoder.fc_p.weight.mul_(12.0)  # higher spatial frequency: more surface
        logits = model(torch.rand(1, 8192, 3) * 1.1 - 0.55, torch.from_numpy(source())[None].float())
        model.decoder.fc_out.bias -= logits.median()
    path = folder / "wiggly.safetensors"
    save_weights(path, Weights(config, model.state_dict(), 0.5, {"summary": "benchmark network"}))
    return path


def source() -> np.ndarray:
    grid = np.zeros((32,) * 3, np.uint8)
    grid[4:28, 8:24, 6:26] = 1
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="128 cells, one repetition")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    resolution = 128 if args.quick else 256
    repeats = 1 if args.quick else args.repeats

    with tempfile.TemporaryDirectory() as folder:
        weights_path = wiggly_voxel_weights(Path(folder))
        client = BackendClient.start_local(sys.executable, [folder])
        try:
            rows = []
            for _ in range(repeats):
                started = time.perf_counter()
                job = client.reconstruct("voxels", source(), weights="wiggly", resolution=resolution, device="cpu")
                while True:
                    event = client.wait_event(timeout=600)
                    if event.job == job and event.type in ("result", "error"):
                        break
                wall = time.perf_counter() - started
                assert isinstance(event, Result), event
                arrays = [a for a in (event.vertices, event.faces, event.normals) if a is not None]
                rows.append((wall, event.stats.seconds_backend, len(event.faces), sum(a.nbytes for a in arrays)))
            # The same work in-process, no boundary at all.
            reconstructor = Reconstructor(load_weights(weights_path), "cpu")
            started = time.perf_counter()
            mesh = reconstructor.encode(prepare_voxels(source())).extract(
                ExtractionSettings(threshold=0.5, resolution=resolution))
            in_process = time.perf_counter() - started
        finally:
            client.close()

    print(f"process boundary, voxels network, {resolution} cells, {len(mesh.faces):,} triangles")
    print(f"{'run':>4} {'client wall s':>14} {'backend s':>10} {'boundary s':>11} {'boundary %':>11} {'MB back':>8}")
    for i, (wall, backend, _, nbytes) in enumerate(rows):
        print(f"{i + 1:>4} {wall:14.3f} {backend:10.3f} {wall - backend:11.3f} "
              f"{100 * (wall - backend) / backend:10.1f}% {nbytes / 1e6:8.1f}")
    best = min(rows, key=lambda r: r[0] - r[1])
    print(f"in-process reconstruction: {in_process:.3f} s; client wall / in-process = {best[0] / in_process:.3f}")


if __name__ == "__main__":
    main()
