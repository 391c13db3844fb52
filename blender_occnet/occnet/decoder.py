"""The conditional-batch-norm decoder: (points, code) -> occupancy logits."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import CBatchNorm1d, CResnetBlockConv1d

N_BLOCKS = 5


class DecoderCBatchNorm(nn.Module):
    """fc_p lifts points to `hidden_size` channels, five conditioned residual blocks, then fc_out.

    Points are (B, T, 3); the layers are 1x1 Conv1d over (B, H, T), as in the original.
    """

    def __init__(self, c_dim: int, hidden_size: int = 256, legacy: bool = False):
        super().__init__()
        self.fc_p = nn.Conv1d(3, hidden_size, 1)
        for i in range(N_BLOCKS):
            self.add_module(f"block{i}", CResnetBlockConv1d(c_dim, hidden_size, legacy=legacy))
        self.bn = CBatchNorm1d(c_dim, hidden_size, legacy=legacy)
        self.fc_out = nn.Conv1d(hidden_size, 1, 1)

    def blocks(self) -> list[CResnetBlockConv1d]:
        return [getattr(self, f"block{i}") for i in range(N_BLOCKS)]

    def forward(self, points: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        net = self.fc_p(points.transpose(1, 2))
        for block in self.blocks():
            net = block(net, c)
        return self.fc_out(F.relu(self.bn(net, c))).squeeze(1)
