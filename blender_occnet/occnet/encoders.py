"""Encoders: an observation (image, point cloud, voxel grid) -> a code c of size c_dim.

The ResNet-18 is written here with torchvision's module names, so the original checkpoints load
without torchvision (whose PyPI build does not import beside the CPU torch these machines use, and
which would add a large dependency for ~60 lines of network).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import ResnetBlockFC

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: two 3x3 convs with batch norm and an optional downsample."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return F.relu(out + identity)


class ResNet18Features(nn.Module):
    """ResNet-18 without its classifier: (B, 3, H, W) -> (B, 512) pooled features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class ImageEncoder(nn.Module):
    """ResNet-18 on an RGB image in [0, 1] (ImageNet normalisation applied here), then Linear(512, c_dim)."""

    mean: torch.Tensor  # buffers, declared for the type checker
    std: torch.Tensor

    def __init__(self, c_dim: int):
        super().__init__()
        self.features = ResNet18Features()
        self.fc = nn.Linear(512, c_dim)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features((images - self.mean) / self.std))


class PointNetEncoder(nn.Module):
    """ResNet-PointNet: per-point residual MLP with max-pooled features fed back after blocks 0-3."""

    block_4: ResnetBlockFC  # added by name below (the released checkpoints' keys), declared for the type checker

    def __init__(self, c_dim: int, hidden: int):
        super().__init__()
        self.fc_pos = nn.Linear(3, 2 * hidden)
        for i in range(5):
            self.add_module(f"block_{i}", ResnetBlockFC(2 * hidden, hidden))
        self.fc_c = nn.Linear(hidden, c_dim)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        net = self.fc_pos(points)  # (B, T, 2h)
        for i in range(4):
            net = getattr(self, f"block_{i}")(net)  # (B, T, h)
            pooled = net.max(dim=1, keepdim=True).values.expand_as(net)
            net = torch.cat([net, pooled], dim=2)
        net = self.block_4(net).max(dim=1).values
        return self.fc_c(F.relu(net))


class VoxelEncoder(nn.Module):
    """3D CNN on a (B, 32, 32, 32) occupancy grid: five convs down to (512, 2, 2, 2), then Linear."""

    def __init__(self, c_dim: int):
        super().__init__()
        self.conv_in = nn.Conv3d(1, 32, 3, padding=1)
        self.conv_0 = nn.Conv3d(32, 64, 3, padding=1, stride=2)
        self.conv_1 = nn.Conv3d(64, 128, 3, padding=1, stride=2)
        self.conv_2 = nn.Conv3d(128, 256, 3, padding=1, stride=2)
        self.conv_3 = nn.Conv3d(256, 512, 3, padding=1, stride=2)
        self.fc = nn.Linear(512 * 2 * 2 * 2, c_dim)

    def forward(self, voxels: torch.Tensor) -> torch.Tensor:
        net = self.conv_in(voxels.unsqueeze(1))
        for conv in (self.conv_0, self.conv_1, self.conv_2, self.conv_3):
            net = conv(F.relu(net))
        return self.fc(F.relu(net.flatten(1)))
