"""Building blocks shared by the encoders and the decoder (module names match the original's)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CBatchNorm1d(nn.Module):
    """Conditional batch norm: gamma(c) * BN(x) + beta(c), with gamma and beta 1x1 convs of the code.

    `legacy=True` gives the paper's variant with Linear layers `fc_gamma`/`fc_beta` instead of the
    Conv1d layers `conv_gamma`/`conv_beta`; both compute the same function.
    """

    def __init__(self, c_dim: int, f_dim: int, legacy: bool = False):
        super().__init__()
        self.legacy = legacy
        if legacy:
            self.fc_gamma = nn.Linear(c_dim, f_dim)
            self.fc_beta = nn.Linear(c_dim, f_dim)
        else:
            self.conv_gamma = nn.Conv1d(c_dim, f_dim, 1)
            self.conv_beta = nn.Conv1d(c_dim, f_dim, 1)
        self.bn = nn.BatchNorm1d(f_dim, affine=False)
        gamma, beta = self.gamma_beta_layers()
        # Start as the identity: gamma = 1, beta = 0 whatever c is.
        assert gamma.bias is not None and beta.bias is not None
        nn.init.zeros_(gamma.weight)
        nn.init.ones_(gamma.bias)
        nn.init.zeros_(beta.weight)
        nn.init.zeros_(beta.bias)

    def gamma_beta_layers(self) -> tuple[nn.Linear | nn.Conv1d, nn.Linear | nn.Conv1d]:
        if self.legacy:
            return self.fc_gamma, self.fc_beta
        return self.conv_gamma, self.conv_beta

    def gamma_beta(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel scale and shift for codes c (B, C): each (B, f_dim, 1)."""
        gamma_layer, beta_layer = self.gamma_beta_layers()
        if self.legacy:
            return gamma_layer(c).unsqueeze(2), beta_layer(c).unsqueeze(2)
        c = c.unsqueeze(2)
        return gamma_layer(c), beta_layer(c)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.gamma_beta(c)
        return gamma * self.bn(x) + beta


class CResnetBlockConv1d(nn.Module):
    """Residual block on (B, H, T) features, conditioned on c through two CBatchNorm1d layers."""

    def __init__(self, c_dim: int, size: int, legacy: bool = False):
        super().__init__()
        self.bn_0 = CBatchNorm1d(c_dim, size, legacy=legacy)
        self.bn_1 = CBatchNorm1d(c_dim, size, legacy=legacy)
        self.fc_0 = nn.Conv1d(size, size, 1)
        self.fc_1 = nn.Conv1d(size, size, 1)
        nn.init.zeros_(self.fc_1.weight)  # the block starts as the identity

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        net = self.fc_0(F.relu(self.bn_0(x, c)))
        dx = self.fc_1(F.relu(self.bn_1(net, c)))
        return x + dx


class ResnetBlockFC(nn.Module):
    """Fully connected residual block size_in -> size_out with a linear shortcut when they differ."""

    def __init__(self, size_in: int, size_out: int):
        super().__init__()
        size_h = min(size_in, size_out)
        self.fc_0 = nn.Linear(size_in, size_h)
        self.fc_1 = nn.Linear(size_h, size_out)
        self.shortcut = nn.Linear(size_in, size_out, bias=False) if size_in != size_out else None
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dx = self.fc_1(F.relu(self.fc_0(F.relu(x))))
        x_s = self.shortcut(x) if self.shortcut is not None else x
        return x_s + dx
