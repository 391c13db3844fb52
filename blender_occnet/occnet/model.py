"""The networks: an encoder for the observation and a decoder of occupancy at points, built from a config by
its architecture family (families.py, registered in config.py).

Every family's network is a Network (encode, decode, forward, and `fixed_decoder` for generation):
- OccupancyNetwork (Mescheder et al. 2019, onet.py): one global code per shape, a conditional-batch-norm decoder;
- ConvolutionalOccupancyNetwork (Peng et al. 2020, convonet.py): features on planes or a grid, a local decoder.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..common.errors import InputError
from .config import ARCHITECTURES, MAX_FEATURE_VALUES, MAX_NETWORK_VALUES, ModelConfig
from .decoder import DecoderCBatchNorm
from .encoders import ImageEncoder, PointNetEncoder, VoxelEncoder
from .families import DecodeFn
from .local import Features, FixedLocalDecoder, LocalDecoder, LocalPoolPointNet, LocalVoxelEncoder


class Network(nn.Module):
    """f(p, x) -> logit of the probability that point p is inside the shape observed in x: what every family's
    network is, through one encoding of x that its decoder then reads at any points."""

    config: ModelConfig
    encoder: Any  # each family's own modules
    decoder: Any

    def encode(self, inputs: torch.Tensor) -> Any:
        """Observation batch -> the family's encoding of each (a code, feature maps)."""
        raise NotImplementedError

    def decode(self, points: torch.Tensor, encoding: Any) -> torch.Tensor:
        """Points (B, T, 3) in the unit cube frame and their shapes' encodings -> logits (B, T)."""
        raise NotImplementedError

    def forward(self, points: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self.decode(points, self.encode(inputs))

    def fixed_decoder(self, encoding: Any) -> DecodeFn:
        """The decoder for one shape's encoding as a fast function of points (eval mode)."""
        raise NotImplementedError


# ONet's encoder for each modality.
GLOBAL_ENCODERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "image": lambda c: ImageEncoder(c.c_dim),
    "pointcloud": lambda c: PointNetEncoder(c.c_dim, c.encoder_hidden),
    "voxels": lambda c: VoxelEncoder(c.c_dim),
}


class OccupancyNetwork(Network):
    """One global code per shape, decoded with conditional batch norm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = GLOBAL_ENCODERS[config.modality](config)
        self.decoder = DecoderCBatchNorm(config.c_dim, config.hidden_size, legacy=config.legacy)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """Observation batch -> codes (B, c_dim)."""
        return self.encoder(inputs)

    def decode(self, points: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Points (B, T, 3) in the unit cube frame, codes (B, c_dim) -> logits (B, T)."""
        return self.decoder(points, c)

    def fixed_decoder(self, c: torch.Tensor) -> DecodeFn:
        """The decoder for one shape's code (1, c_dim) as a fast function of points (eval mode)."""
        from .inference import FoldedDecoder

        return FoldedDecoder(self.decoder, c.clone())  # clone: out of inference mode, for autograd


# ConvONet's encoder for each modality.
LOCAL_ENCODERS: dict[str, Callable[[ModelConfig], LocalPoolPointNet | LocalVoxelEncoder]] = {
    "pointcloud": lambda c: LocalPoolPointNet(c.planes, c.c_dim, c.encoder_hidden, c.feature_resolution,
                                              c.unet_depth, c.unet_filters),
    "voxels": lambda c: LocalVoxelEncoder(c.planes, c.c_dim, c.feature_resolution, c.unet_depth, c.unet_filters),
}


class ConvolutionalOccupancyNetwork(Network):
    """f(p, x) with x encoded into feature planes or a grid that the decoder samples at p."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = LOCAL_ENCODERS[config.modality](config)
        self.decoder = LocalDecoder(config.c_dim, config.hidden_size)

    def encode(self, inputs: torch.Tensor) -> Features:
        return self.encoder(inputs)

    def decode(self, points: torch.Tensor, features: Features) -> torch.Tensor:
        return self.decoder(points, features)

    def fixed_decoder(self, features: Features) -> DecodeFn:
        return FixedLocalDecoder(self.decoder, features)


def build_model(config: ModelConfig) -> Network:
    """A freshly initialised network for a configuration (refused first when it is beyond any known size)."""
    check_size(config)
    return _construct(config)


def _construct(config: ModelConfig) -> Network:
    return config.family.build(config)


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
    """Refuse a config whose network, or its feature map (ConvONet's), is beyond MAX_*_VALUES; nothing built."""
    values = network_size(config)
    if values > MAX_NETWORK_VALUES:
        largest = max(ARCHITECTURES.values(), key=network_size)
        raise InputError(f"model config: a {config.arch} network of {values:,} values ({values * 4 / 1e9:.1f} GB) "
                         f"is over the {MAX_NETWORK_VALUES:,} this project accepts (the largest known, "
                         f"{largest.arch}, holds {network_size(largest):,}): a weights file that asks for it is "
                         "damaged, a training config must ask for less")
    features = config.family.feature_values(config)
    if features > MAX_FEATURE_VALUES:
        raise InputError(f"model config: a feature map of {features:,} values ({features * 4 / 1e9:.1f} GB) is "
                         f"over the {MAX_FEATURE_VALUES:,} this project accepts; lower feature_resolution or "
                         "unet_filters")


def fixed_decoder(model: Network, encoding: torch.Tensor | Features) -> DecodeFn:
    """The model's decoder fixed on an encoding that the same model produced (a code or feature maps)."""
    return model.config.family.fixed_decoder(model, encoding)


def encoding_is_finite(encoding: Any) -> bool:
    """Whether a code or every feature map holds finite values only."""
    values = encoding.values() if isinstance(encoding, dict) else [encoding]
    return all(bool(torch.isfinite(v).all()) for v in values)
