"""Convolutional Occupancy Networks (Peng et al. 2020): features kept on planes or a grid in space.

The encoder turns the observation into feature maps: three axis-aligned planes ('xz', 'xy', 'yz'),
one plane, or a 3D grid, each refined by a U-Net. The decoder reads the features at a query point by
bilinear (trilinear) interpolation, sums them over the planes, and runs a small residual MLP on the
point and that feature. A point's logit depends on its neighbourhood only, so thin parts survive and
the network generalises to shapes it has not seen.

Coordinates follow the released models: a point p of the 1.1 box maps to p / (1 + 0.1 + eps) + 0.5 in
[0, 1) (clamped), the cell index on an R x R plane is ix + R * iy, on the grid ix + R * (iy + R * iz)
with ix = floor(x * R). Scatter mean and max use PyTorch's own index_add_ / scatter_reduce: nothing
compiled. Module names match the released checkpoints (see unet.py for the U-Nets).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import ResnetBlockFC
from .unet import UNet2D, UNet3D

PADDING = 0.1  # the box is the unit cube plus this much
# Epsilons of the reference's normalisation (planes and grid use different ones; kept so released
# weights see exactly the cells they were trained with).
PLANE_EPS, GRID_EPS = 1e-5, 1e-3
PLANE_AXES = {"xz": (0, 2), "xy": (0, 1), "yz": (1, 2)}

Features = dict[str, torch.Tensor]  # plane name or 'grid' -> (B, C, R, R) or (B, C, R, R, R)


def normalised_coordinates(points: torch.Tensor, plane: str) -> torch.Tensor:
    """Box points (..., 3) -> coordinates in [0, 1) on a plane (..., 2) or in the grid (..., 3)."""
    if plane == "grid":
        xy, eps = points, GRID_EPS
    else:
        xy, eps = points[..., list(PLANE_AXES[plane])], PLANE_EPS
    xy = xy / (1 + PADDING + eps) + 0.5
    return torch.where(xy >= 1, torch.full_like(xy, 1 - eps), xy).clamp_min(0.0)


def cell_index(coords: torch.Tensor, resolution: int) -> torch.Tensor:
    """Coordinates in [0, 1) (..., 2 or 3) -> flat cell index (...,) as the reference numbers cells."""
    cells = (coords * resolution).long()
    index = cells[..., 0] + resolution * cells[..., 1]
    if coords.shape[-1] == 3:
        index = cells[..., 0] + resolution * (cells[..., 1] + resolution * cells[..., 2])
    return index


def scatter_mean(values: torch.Tensor, index: torch.Tensor, n_cells: int) -> torch.Tensor:
    """values (B, N, C) averaged into cells index (B, N) -> (B, n_cells, C); empty cells are 0."""
    b, n, c = values.shape
    flat = (index + n_cells * torch.arange(b, device=index.device)[:, None]).reshape(-1)
    sums = values.new_zeros(b * n_cells, c).index_add_(0, flat, values.reshape(-1, c))
    counts = torch.bincount(flat, minlength=b * n_cells).clamp_min_(1).to(values.dtype)
    return (sums / counts[:, None]).view(b, n_cells, c)


def occupied_cells(index: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Cells index (B, N) renumbered over the occupied cells of the batch: (inverse (B*N,), count).

    Pooling over these rather than over whole planes is ten times faster forward and backward (a
    64x64 plane at batch 32); one renumbering serves every pooling of the encoder."""
    b = index.shape[0]
    flat = (index + (index.max() + 1) * torch.arange(b, device=index.device)[:, None]).reshape(-1)
    cells, inverse = torch.unique(flat, return_inverse=True)
    return inverse, len(cells)


def pool_max(values: torch.Tensor, cells: tuple[torch.Tensor, int]) -> torch.Tensor:
    """Each point gets the channel-wise max over the points sharing its cell: (B, N, C) -> (B, N, C)."""
    b, n, c = values.shape
    inverse, count = cells
    pooled = values.new_zeros(count, c).scatter_reduce(
        0, inverse[:, None].expand(-1, c), values.reshape(-1, c), "amax", include_self=False)
    return pooled[inverse].view(b, n, c)


class LocalEncoder(nn.Module):
    """What both encoders share: point features scattered (mean) onto the planes or the grid, each
    refined by the one U-Net (`unet` for planes, `unet3d` for the grid: the released key names)."""

    def __init__(self, planes: tuple[str, ...], c_dim: int, resolution: int, depth: int, filters: int):
        super().__init__()
        self.planes = planes
        self.c_dim = c_dim
        self.resolution = resolution
        self.unet: nn.Module | None = None
        self.unet3d: nn.Module | None = None
        if planes == ("grid",):
            self.unet3d = UNet3D(c_dim, depth, filters)
        else:
            self.unet = UNet2D(c_dim, depth, filters)

    def cell_indices(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        return {plane: cell_index(normalised_coordinates(points, plane), self.resolution) for plane in self.planes}

    def feature_maps(self, c: torch.Tensor, index: dict[str, torch.Tensor]) -> Features:
        """Per-point features c (B, N, C) at cells `index` -> the refined maps."""
        b, r = c.shape[0], self.resolution
        features = {}
        for plane in self.planes:
            if plane == "grid":
                grid = scatter_mean(c, index[plane], r ** 3).view(b, r, r, r, self.c_dim).permute(0, 4, 1, 2, 3)
                assert self.unet3d is not None
                features[plane] = self.unet3d(grid.contiguous())
            else:
                plane_map = scatter_mean(c, index[plane], r * r).view(b, r, r, self.c_dim).permute(0, 3, 1, 2)
                assert self.unet is not None
                features[plane] = self.unet(plane_map.contiguous())
        return features


class LocalPoolPointNet(LocalEncoder):
    """ResNet-PointNet whose pooling is local: after each block a point gets the max over its cells."""

    def __init__(self, planes: tuple[str, ...], c_dim: int, hidden: int, resolution: int, depth: int,
                 filters: int, n_blocks: int = 5):
        super().__init__(planes, c_dim, resolution, depth, filters)
        self.fc_pos = nn.Linear(3, 2 * hidden)
        self.blocks = nn.ModuleList(ResnetBlockFC(2 * hidden, hidden) for _ in range(n_blocks))
        self.fc_c = nn.Linear(hidden, c_dim)

    def forward(self, points: torch.Tensor) -> Features:
        index = self.cell_indices(points)
        occupied = [occupied_cells(cells) for cells in index.values()]
        net = self.blocks[0](self.fc_pos(points))
        for block in self.blocks[1:]:
            pooled = torch.stack([pool_max(net, cells) for cells in occupied]).sum(0)
            net = block(torch.cat([net, pooled], dim=2))
        return self.feature_maps(self.fc_c(net), index)


class LocalVoxelEncoder(LocalEncoder):
    """One 3x3x3 conv on the occupancy grid; each voxel's feature scattered from its centre."""

    def __init__(self, planes: tuple[str, ...], c_dim: int, resolution: int, depth: int, filters: int):
        super().__init__(planes, c_dim, resolution, depth, filters)
        self.conv_in = nn.Conv3d(1, c_dim, 3, padding=1)

    def forward(self, voxels: torch.Tensor) -> Features:
        b = voxels.shape[0]
        c = F.relu(self.conv_in(voxels.unsqueeze(1))).flatten(2).transpose(1, 2)  # (B, D*H*W, C)
        centres = voxel_centres(tuple(voxels.shape[1:]), voxels)
        index = {k: v.expand(b, -1) for k, v in self.cell_indices(centres).items()}
        return self.feature_maps(c, index)


def voxel_centres(shape: torch.Size | tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """(1, D*H*W, 3) positions of a grid's voxels, indexed [x, y, z], in the order of flatten().

    The reference spaces them from -0.5 to 0.5 inclusive (linspace), not at the cell centres; the
    released voxel weights were trained so, and so are ours."""
    axes = [torch.linspace(-0.5, 0.5, n, device=like.device, dtype=like.dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(1, -1, 3)


def sample_features(features: Features, points: torch.Tensor) -> torch.Tensor:
    """Features at points (B, T, 3): the sum over planes of the bilinear (grid: trilinear) samples,
    border padding, align_corners=True; (B, C, T)."""
    total: torch.Tensor | None = None
    for plane, fmap in features.items():
        coords = 2.0 * normalised_coordinates(points, plane) - 1.0
        if plane == "grid":
            sampled = F.grid_sample(fmap, coords[:, :, None, None], padding_mode="border", align_corners=True,
                                    mode="bilinear")[:, :, :, 0, 0]
        else:
            sampled = F.grid_sample(fmap, coords[:, :, None], padding_mode="border", align_corners=True,
                                    mode="bilinear")[:, :, :, 0]
        total = sampled if total is None else total + sampled
    assert total is not None
    return total


class LocalDecoder(nn.Module):
    """net = fc_p(p); per block: net += fc_c[i](feature(p)); net = block(net); logit = fc_out(relu(net))."""

    def __init__(self, c_dim: int, hidden_size: int, n_blocks: int = 5):
        super().__init__()
        self.fc_c = nn.ModuleList(nn.Linear(c_dim, hidden_size) for _ in range(n_blocks))
        self.fc_p = nn.Linear(3, hidden_size)
        self.blocks = nn.ModuleList(ResnetBlockFC(hidden_size, hidden_size) for _ in range(n_blocks))
        self.fc_out = nn.Linear(hidden_size, 1)

    def forward(self, points: torch.Tensor, features: Features) -> torch.Tensor:
        c = sample_features(features, points).transpose(1, 2)
        net = self.fc_p(points)
        for fc_c, block in zip(self.fc_c, self.blocks):
            net = block(net + fc_c(c))
        return self.fc_out(F.relu(net)).squeeze(-1)


def _linear(module: nn.Module | torch.Tensor) -> nn.Linear:
    """A layer known to be nn.Linear, as such (ModuleList items and attributes are typed as Module)."""
    assert isinstance(module, nn.Linear), type(module)
    return module


class FixedLocalDecoder:
    """decoder(points, features) for one shape's fixed features, as a function of points alone.

    The five per-block feature projections run as one (rows, C) x (C, 5H) product, and on the CPU
    without autograd the points go through in slices that keep the activations in the cache."""

    SLICE_ROWS = 8192

    def __init__(self, decoder: LocalDecoder, features: Features, slice_rows: int | None = None):
        with torch.no_grad():
            self.features = {k: v.detach().clone() for k, v in features.items()}
            if any(v.shape[0] != 1 for v in self.features.values()):
                raise ValueError("FixedLocalDecoder takes the features of one shape (batch size 1)")
            fc_c = [_linear(fc) for fc in decoder.fc_c]
            self.w_c = torch.cat([fc.weight.t() for fc in fc_c], dim=1).contiguous()  # (C, nH)
            self.b_c = torch.cat([fc.bias for fc in fc_c]).contiguous()
            self.wp, self.bp = decoder.fc_p.weight.t().contiguous(), decoder.fc_p.bias.detach().clone()
            self.blocks = [(fc_0.weight.t().contiguous(), fc_0.bias.detach().clone(),
                            fc_1.weight.t().contiguous(), fc_1.bias.detach().clone())
                           for fc_0, fc_1 in ((_linear(b.fc_0), _linear(b.fc_1)) for b in decoder.blocks)]
            self.w_out, self.b_out = decoder.fc_out.weight.t().contiguous(), decoder.fc_out.bias.detach().clone()
        self.hidden = self.wp.shape[1]
        self.slice_rows = slice_rows or self.SLICE_ROWS

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Points (N, 3) of the box -> logits (N,); differentiable with respect to the points."""
        if (torch.is_grad_enabled() and points.requires_grad) or points.device.type != "cpu":
            return self._forward(points)
        out = torch.empty(points.shape[0], dtype=self.b_out.dtype, device=points.device)
        for start in range(0, points.shape[0], self.slice_rows):
            out[start:start + self.slice_rows] = self._forward(points[start:start + self.slice_rows])
        return out

    def _forward(self, points: torch.Tensor) -> torch.Tensor:
        c = sample_features(self.features, points[None])[0].t()  # (N, C)
        conditioned = torch.addmm(self.b_c, c, self.w_c)  # (N, n_blocks * H)
        net = torch.addmm(self.bp, points, self.wp)
        h = self.hidden
        for i, (w0, b0, w1, b1) in enumerate(self.blocks):
            net = net + conditioned[:, i * h:(i + 1) * h]
            dx = torch.addmm(b1, torch.relu(torch.addmm(b0, torch.relu(net), w0)), w1)
            net = net + dx
        return torch.addmm(self.b_out, torch.relu(net), self.w_out).squeeze(1)
