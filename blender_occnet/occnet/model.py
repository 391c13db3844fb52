"""The Occupancy Network: an encoder for the observation and the conditional decoder, built from a config."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .decoder import DecoderCBatchNorm
from .encoders import ImageEncoder, PointNetEncoder, VoxelEncoder


def build_encoder(config: ModelConfig) -> nn.Module:
    if config.modality == "image":
        return ImageEncoder(config.c_dim)
    if config.modality == "pointcloud":
        return PointNetEncoder(config.c_dim, config.encoder_hidden)
    return VoxelEncoder(config.c_dim)


class OccupancyNetwork(nn.Module):
    """f(p, x) -> logit of the probability that point p is inside the shape observed in x."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config)
        self.decoder = DecoderCBatchNorm(config.c_dim, config.hidden_size, legacy=config.legacy)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """Observation batch -> codes (B, c_dim)."""
        return self.encoder(inputs)

    def decode(self, points: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Points (B, T, 3) in the unit cube frame, codes (B, c_dim) -> logits (B, T)."""
        return self.decoder(points, c)

    def forward(self, points: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self.decode(points, self.encode(inputs))


def build_model(config: ModelConfig) -> OccupancyNetwork:
    """A freshly initialised network for a configuration."""
    return OccupancyNetwork(config)
