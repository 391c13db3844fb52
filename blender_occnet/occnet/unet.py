"""The U-Nets that refine ConvONet's feature planes (2D) and feature grids (3D).

Module names and layer order follow the released checkpoints (see convonet_checkpoint_keys.txt in the
team's notes): the 2D net is the classic U-Net with max pooling, transposed-conv upsampling and
concatenation; the 3D net is a 3D U-Net whose convs are GroupNorm -> Conv3d (no bias) -> ReLU, with
nearest-neighbour upsampling and no learnt upsampling layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DownConv(nn.Module):
    """Two 3x3 convs with ReLU; returns (pooled, before pooling) for the skip connection."""

    def __init__(self, in_channels: int, out_channels: int, pooling: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return (F.max_pool2d(x, 2) if self.pooling else x), x


class UpConv(nn.Module):
    """2x2 transposed conv up, concatenated with the skip (upsampled first), then two 3x3 convs."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.upconv = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv1 = nn.Conv2d(2 * out_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.upconv(x), skip], dim=1)
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class UNet2D(nn.Module):
    """(B, C, R, R) -> (B, C, R, R); `depth` levels (depth - 1 poolings), `filters` channels at the top."""

    def __init__(self, channels: int, depth: int, filters: int):
        super().__init__()
        widths = [filters * 2 ** i for i in range(depth)]
        self.down_convs = nn.ModuleList(
            DownConv(channels if i == 0 else widths[i - 1], widths[i], pooling=i < depth - 1) for i in range(depth))
        self.up_convs = nn.ModuleList(UpConv(widths[i], widths[i - 1]) for i in range(depth - 1, 0, -1))
        self.conv_final = nn.Conv2d(widths[0], channels, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # not ConvTranspose2d: as the reference initialises
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.down_convs:
            x, before_pool = down(x)
            skips.append(before_pool)
        for up, skip in zip(self.up_convs, reversed(skips[:-1])):
            x = up(skip, x)
        return self.conv_final(x)


def _groups(channels: int) -> int:
    return 8 if channels >= 8 else 1


class SingleConv(nn.Sequential):
    """GroupNorm on the input, 3x3x3 conv without bias, ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.add_module("groupnorm", nn.GroupNorm(_groups(in_channels), in_channels))
        self.add_module("conv", nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False))
        self.add_module("ReLU", nn.ReLU(inplace=True))


class DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, encoder: bool):
        super().__init__()
        # On the way down the first conv goes to half the output width (never below the input's).
        middle = max(out_channels // 2, in_channels) if encoder else out_channels
        self.add_module("SingleConv1", SingleConv(in_channels, middle))
        self.add_module("SingleConv2", SingleConv(middle, out_channels))


class Encoder3D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, pooling: bool):
        super().__init__()
        self.pooling = pooling
        self.basic_module = DoubleConv(in_channels, out_channels, encoder=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.basic_module(F.max_pool3d(x, 2) if self.pooling else x)


class Decoder3D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.basic_module = DoubleConv(in_channels, out_channels, encoder=False)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
        return self.basic_module(torch.cat([skip, x], dim=1))


class UNet3D(nn.Module):
    """(B, C, R, R, R) -> (B, C, R, R, R) with `levels` levels of filters * 2**k channels."""

    def __init__(self, channels: int, levels: int, filters: int):
        super().__init__()
        widths = [filters * 2 ** k for k in range(levels)]
        self.encoders = nn.ModuleList(
            Encoder3D(channels if k == 0 else widths[k - 1], widths[k], pooling=k > 0) for k in range(levels))
        self.decoders = nn.ModuleList(
            Decoder3D(widths[k] + widths[k - 1], widths[k - 1]) for k in range(levels - 1, 0, -1))
        self.final_conv = nn.Conv3d(widths[0], channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1])):
            x = decoder(skip, x)
        return self.final_conv(x)
