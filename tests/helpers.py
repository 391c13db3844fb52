"""Helpers for tests: networks with every parameter and statistic randomised, hand-set networks whose
output is known exactly, original-format files."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from blender_occnet.occnet.config import ModelConfig
from blender_occnet.occnet.model import Network, build_model


def small_config(arch: str) -> ModelConfig:
    if arch.startswith("convonet-"):  # small planes (grid) and U-Net: fast, every layer still there
        return ModelConfig(arch, c_dim=16, hidden_size=16, encoder_hidden=16, n_input_points=300,
                           feature_resolution=16, unet_depth=2, unet_filters=8)
    return ModelConfig(arch, c_dim=32, hidden_size=32, encoder_hidden=32)


def randomized_model(config: ModelConfig, seed: int = 0) -> Network:
    """A network whose weights and batch-norm statistics are all random (the default init hides bugs:
    zero gammas, zero last layers)."""
    generator = torch.Generator().manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                tensor.fill_(7)
            elif name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            else:
                # Fan-in scaling keeps activations O(1) through deep stacks.
                fan_in = max(1, tensor[0].numel()) if tensor.ndim >= 2 else 10
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in ** 0.5)
    return model.eval()


def save_original_checkpoint(path: Path, model: Network, zip_format: bool = True) -> None:
    """Write a file the way the original project's CheckpointIO does: model, Adam state, counters and a
    numpy float64 `loss_val_best`."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    optimizer.zero_grad()
    sum(p.sum() for p in model.parameters()).backward()
    optimizer.step()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch_it": 12,
                "it": 3400, "loss_val_best": np.float64(-0.8123)}, path,
               _use_new_zipfile_serialization=zip_format)


def example_input(modality: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if modality == "image":
        return torch.rand(batch, 3, 224, 224, generator=generator)
    if modality == "pointcloud":
        return torch.rand(batch, 300, 3, generator=generator) - 0.5
    return (torch.rand(batch, 32, 32, 32, generator=generator) > 0.7).float()


def centre_logits(model: Network, inputs: torch.Tensor) -> Network:
    """Shift fc_out's bias so that half of the box is inside for `inputs`: a random network then has a
    surface at threshold 0.5 to extract."""
    points = torch.rand(1, 4096, 3, generator=torch.Generator().manual_seed(3)) * 1.1 - 0.55
    with torch.no_grad():
        logits = model(points, inputs)
        model.decoder.fc_out.bias -= logits.median()
    return model


# A 34^3 feature grid is the one size where the reference's voxel positions (linspace -0.5..0.5) fall one
# to a cell (voxel i -> cell i + 1), so no two voxels are averaged and no cell inside is left empty.
ANALYTIC_GRID = 34


def voxel_reading_network() -> Network:
    """A hand-set ConvONet voxel network (one 34^3 grid, one-level U-Net) whose logit at p is
    20 * (trilinear sample of 2 * occupancy - 1) - 1: it reconstructs exactly the grid it is given, so a
    result away from its voxels is the frame's fault, never the weights'.

    Channels carry (x, 1 - x). GroupNorm (one group) would rescale them by statistics of the grid; the
    convs shrink the features to 1e-6 so that GroupNorm's epsilon, not the grid, sets its scale (a fixed
    factor its gamma undoes), and the shift it subtracts is the same for both channels, which only their
    difference is read through. Grid cell k is read at the box point (k / 33 - 0.5) * 1.101: voxel i
    appears at ((i + 1) / 33 - 0.5) * 1.101, within 0.034 of its centre (the reference's own spacing)."""
    config = ModelConfig("convonet-voxels-grid", c_dim=2, hidden_size=2, feature_resolution=ANALYTIC_GRID,
                         unet_depth=1, unet_filters=8)  # channels beyond the first two stay zero
    model = build_model(config)
    tiny, eps = 1e-6, 1e-5
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.zero_()
        centre = (slice(None), slice(None), 1, 1, 1)
        encoder = model.encoder
        encoder.conv_in.weight[centre] = torch.tensor([[tiny], [-tiny]])  # (x, 1 - x), shrunk
        encoder.conv_in.bias.copy_(torch.tensor([0.0, tiny]))
        double = encoder.unet3d.encoders[0].basic_module
        for single, scale in ((double.SingleConv1, tiny), (double.SingleConv2, 1.0)):
            single.groupnorm.weight.fill_(eps ** 0.5 / tiny)  # undoes the 1/sqrt(eps) of a near-constant input
            single.groupnorm.bias.fill_(2.0)  # keeps both channels above zero through the ReLU
            single.conv.weight[:2, :2, 1, 1, 1] = scale * torch.eye(2)
        encoder.unet3d.final_conv.weight[:, :2, 0, 0, 0] = torch.eye(2)
        model.decoder.fc_c[0].weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
        model.decoder.fc_out.weight.copy_(torch.tensor([[20.0, -20.0]]))
        model.decoder.fc_out.bias.fill_(-1.0)
    return model.eval()


def voxel_reading_extent(lo: int, hi: int) -> tuple[float, float]:
    """Where voxel_reading_network puts the faces of the filled voxels lo..hi-1 along one axis (box
    coordinates): 0.025 of a read spacing inside the midpoint between neighbouring read positions (the
    logit's -1 bias), and next to the empty edge cell for a run that touches the grid's side."""
    def read(position: float) -> float:
        return (position / (ANALYTIC_GRID - 1) - 0.5) * 1.101
    low = read(0.05) if lo == 0 else read(lo + 0.525)
    high = read(33 - 0.05) if hi == 32 else read(hi + 0.475)
    return low, high


def corner_network() -> Network:
    """A ConvONet point-cloud network that ignores its input and fills the corner of the box where
    y - z - x > 0.3 (network frame: up +y, front -z): above, in front and at the network's -x side."""
    model = randomized_model(small_config("convonet-pointcloud-3plane"))
    with torch.no_grad():
        decoder = model.decoder
        for layer in [*decoder.fc_c, *(b.fc_0 for b in decoder.blocks), *(b.fc_1 for b in decoder.blocks)]:
            layer.weight.zero_()
            layer.bias.zero_()
        decoder.fc_p.weight.zero_()
        decoder.fc_p.bias.zero_()
        decoder.fc_p.weight[0] = torch.tensor([-1.0, 1.0, -1.0])
        decoder.fc_p.weight[1] = torch.tensor([1.0, -1.0, 1.0])
        decoder.fc_p.bias[:2] = torch.tensor([-0.3, 0.3])
        decoder.fc_out.weight.zero_()
        decoder.fc_out.weight[0, :2] = torch.tensor([10.0, -10.0])
        decoder.fc_out.bias.zero_()
    return model.eval()


# An L of voxels, binvox order [x, y, z] in the project's frame (up +y, front -z): a slab on the grid's
# floor and a tower at its -x, front corner. Front/back, left/right and up/down all differ.
ELL_SLAB = ((2, 30), (0, 6), (4, 28))
ELL_TOWER = ((2, 10), (6, 26), (4, 12))


def ell_grid() -> np.ndarray:
    grid = np.zeros((32, 32, 32), bool)
    for (x0, x1), (y0, y1), (z0, z1) in (ELL_SLAB, ELL_TOWER):
        grid[x0:x1, y0:y1, z0:z1] = True
    return grid


def read_box(box: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """The box (lo, hi) where voxel_reading_network puts the faces of a voxel box, in box coordinates."""
    extents = np.array([voxel_reading_extent(*axis) for axis in box])
    return extents[:, 0], extents[:, 1]


def box_distance(points: np.ndarray, boxes: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Signed distance of points (N, 3) to a union of axis-aligned boxes (negative inside; the min of
    the boxes' distances, exact near the surface)."""
    distances = []
    for lo, hi in boxes:
        outside = np.maximum(np.maximum(lo - points, points - hi), 0.0)
        depth = np.minimum(points - lo, hi - points).min(axis=1)  # > 0 inside
        distances.append(np.linalg.norm(outside, axis=1) - np.maximum(depth, 0.0))
    return np.min(distances, axis=0)


def reference_refinement(decode: Callable[[torch.Tensor], torch.Tensor], vertices: np.ndarray, faces: np.ndarray,
                         steps: int, threshold: float, seed: int = 0) -> np.ndarray:
    """The original's refinement as it stands (its normal target differentiated too: create_graph), in one
    pass over all faces: what the project's refinement is checked and benchmarked against."""
    v = torch.nn.Parameter(torch.tensor(vertices, dtype=torch.float32))
    f = torch.from_numpy(faces.astype(np.int64))
    optimizer = torch.optim.RMSprop([v], lr=1e-4)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        weights = torch.from_numpy(rng.dirichlet((0.5, 0.5, 0.5), size=len(faces)).astype(np.float32))
        corners = v[f]
        face_points = (corners * weights[:, :, None]).sum(dim=1)
        normal = torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 1], dim=1)
        normal = normal / (normal.norm(dim=1, keepdim=True) + 1e-10)
        occupancy = torch.sigmoid(decode(face_points))
        target = -torch.autograd.grad(occupancy.sum(), face_points, create_graph=True)[0]
        target = target / (target.norm(dim=1, keepdim=True) + 1e-10)
        loss = (occupancy - threshold).pow(2).sum() + 0.01 * (normal - target).pow(2).sum(1).sum()
        (loss / len(faces)).backward()
        optimizer.step()
    return v.detach().numpy()


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "64k") -> Iterator[Path]:
    """A real file system of `size` at `folder` (a tmpfs mounted for the test), filled but for a few KB: writes
    there fail for want of space as on a full disk. Skips the test where mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                 capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a small tmpfs here ({exc}): the disk-full tests need one")
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}): the disk-full tests need one")
    try:
        with open(folder / "filler", "wb") as handle:  # leaves a few KB: every later write of any size fails
            handle.write(bytes(48 << 10))
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)
