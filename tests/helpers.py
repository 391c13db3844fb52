"""Helpers for tests: networks with every parameter and statistic randomised, original-format files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
