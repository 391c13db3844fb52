"""The networks: an encoder for the observation and a decoder of occupancy at points, built from a config.

Two families share one interface (encode, decode, forward, and `fixed_decoder` for generation):
- OccupancyNetwork (Mescheder et al. 2019): one global code per shape, a conditional-batch-norm decoder;
- ConvolutionalOccupancyNetwork (Peng et al. 2020): features on planes or a grid, a local decoder.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .config import ARCHITECTURES, MAX_FEATURE_VALUES, MAX_NETWORK_VALUES, ModelConfig
from .decoder import DecoderCBatchNorm
from .encoders import ImageEncoder, PointNetEncoder, VoxelEncoder
from .errors import InputError
from .local import Features, FixedLocalDecoder, LocalDecoder, LocalPoolPointNet, LocalVoxelEncoder

DecodeFn = Callable[[torch.Tensor], torch.Tensor]  # box points (N, 3) -> logits (N,)


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

    def fixed_decoder(self, c: torch.Tensor) -> DecodeFn:
        """The decoder for one shape's code (1, c_dim) as a fast function of points (eval mode)."""
        from .inference import FoldedDecoder

        return FoldedDecoder(self.decoder, c.clone())  # clone: out of inference mode, for autograd


class ConvolutionalOccupancyNetwork(nn.Module):
    """f(p, x) with x encoded into feature planes or a grid that the decoder samples at p."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        args = (config.planes, config.c_dim, config.feature_resolution, config.unet_depth, config.unet_filters)
        self.encoder: LocalPoolPointNet | LocalVoxelEncoder
        if config.modality == "pointcloud":
            self.encoder = LocalPoolPointNet(args[0], config.c_dim, config.encoder_hidden, *args[2:])
        else:
            self.encoder = LocalVoxelEncoder(*args)
        self.decoder = LocalDecoder(config.c_dim, config.hidden_size)

    def encode(self, inputs: torch.Tensor) -> Features:
        return self.encoder(inputs)

    def decode(self, points: torch.Tensor, features: Features) -> torch.Tensor:
        return self.decoder(points, features)

    def forward(self, points: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self.decode(points, self.encode(inputs))

    def fixed_decoder(self, features: Features) -> DecodeFn:
        return FixedLocalDecoder(self.decoder, features)


Network = OccupancyNetwork | ConvolutionalOccupancyNetwork


def build_model(config: ModelConfig) -> Network:
    """A freshly initialised network for a configuration (refused first when it is beyond any known size)."""
    check_size(config)
    return _construct(config)


def _construct(config: ModelConfig) -> Network:
    if config.local:
        return ConvolutionalOccupancyNetwork(config)
    return OccupancyNetwork(config)


@functools.lru_cache(maxsize=64)
def state_shapes(config: ModelConfig) -> Mapping[str, tuple[int, ...]]:
    """Every parameter's and buffer's shape in the network a config builds, from a build on the meta device:
    the sizes are the network's own, and nothing is allocated (a config of billions of values costs nothing)."""
    with torch.device("meta"):
        model = _construct(config)
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}


def network_size(config: ModelConfig) -> int:
    """How many values (parameters and buffers) the network a config builds holds."""
    return sum(math.prod(shape) for shape in state_shapes(config).values())


def check_size(config: ModelConfig) -> None:
    """Refuse a config whose network, or a ConvONet's feature map, is beyond MAX_*_VALUES; nothing built."""
    values = network_size(config)
    if values > MAX_NETWORK_VALUES:
        largest = max(ARCHITECTURES.values(), key=network_size)
        raise InputError(f"model config: a {config.arch} network of {values:,} values ({values * 4 / 1e9:.1f} GB) "
                         f"is over the {MAX_NETWORK_VALUES:,} this project accepts (the largest known, "
                         f"{largest.arch}, holds {network_size(largest):,}): a weights file that asks for it is "
                         "damaged, a training config must ask for less")
    if config.local:
        cells = len(config.planes) * config.feature_resolution ** (3 if config.planes == ("grid",) else 2)
        features = cells * max(config.c_dim, config.unet_filters)
        if features > MAX_FEATURE_VALUES:
            raise InputError(f"model config: a feature map of {features:,} values ({features * 4 / 1e9:.1f} GB) is "
                             f"over the {MAX_FEATURE_VALUES:,} this project accepts; lower feature_resolution or "
                             "unet_filters")


def fixed_decoder(model: Network, encoding: torch.Tensor | Features) -> DecodeFn:
    """The model's decoder fixed on an encoding that the same model produced (a code or feature maps)."""
    if isinstance(model, ConvolutionalOccupancyNetwork):
        assert isinstance(encoding, dict), "a ConvONet encodes to feature maps"
        return model.fixed_decoder(encoding)
    assert isinstance(encoding, torch.Tensor), "an ONet encodes to one code"
    return model.fixed_decoder(encoding)


def encoding_is_finite(encoding: Any) -> bool:
    """Whether a code or every feature map holds finite values only."""
    values = encoding.values() if isinstance(encoding, dict) else [encoding]
    return all(bool(torch.isfinite(v).all()) for v in values)
