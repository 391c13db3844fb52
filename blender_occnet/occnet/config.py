"""Model configuration: the few numbers that, with an architecture name, rebuild a network exactly."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InputError

# Architecture name -> modality of its input.
ARCH_MODALITY = {
    "onet-img": "image",
    "onet-img-legacy": "image",
    "onet-pointcloud": "pointcloud",
    "onet-voxels": "voxels",
    # Convolutional Occupancy Networks (local features on planes or a grid; see local.py).
    "convonet-pointcloud-3plane": "pointcloud",
    "convonet-pointcloud-1plane": "pointcloud",
    "convonet-pointcloud-grid": "pointcloud",
    "convonet-voxels-3plane": "voxels",
    "convonet-voxels-1plane": "voxels",
    "convonet-voxels-grid": "voxels",
}

# Where a ConvONet architecture keeps its features: plane names (axes they span) or the 3D grid.
FEATURE_PLANES = {"3plane": ("xz", "xy", "yz"), "1plane": ("xz",), "grid": ("grid",)}

# Upper bounds on every size a weights file's config may ask for (a file claiming hidden_size=60000 or
# image_size=40000 would otherwise make the backend build gigabytes before any shape check). Each is far
# beyond the released models'; loading also checks the widths against the tensors (checkpoints.py).
FIELD_BOUNDS = {"c_dim": 4096, "hidden_size": 4096, "encoder_hidden": 4096, "n_input_points": 100_000,
                "image_size": 1024, "feature_resolution": 256, "unet_depth": 6, "unet_filters": 256}
GRID_RESOLUTION_BOUND = 128  # a 3D feature grid of 128^3 is already 8M cells per channel

# What a network may hold, counted by model.check_size before anything is built (issue 24: a 324-byte weights file
# asked for a 6-level U-Net of 256 filters, 2 billion values, and ONet widths of 4,096 for a billion). The largest
# known architecture (onet-img, a ResNet-18 encoder) holds 13.4M values; a ConvONet's widest feature map (a 32^3
# grid of 32 channels) 1M. Each bound leaves room for custom networks several times larger.
MAX_NETWORK_VALUES = 64_000_000  # 256 MB of float32
MAX_FEATURE_VALUES = 1 << 27  # one full-resolution feature map of a ConvONet: 512 MB of float32
# What a weights file (a .pt archive's members inflated, a download) may hold (1 GB): a network of
# MAX_NETWORK_VALUES in float32, an optimiser's two moments beside it and room for as much again (the released
# files are 8 to 160 MB).
MAX_WEIGHTS_FILE_BYTES = MAX_NETWORK_VALUES * 4 * 4

# Which fields mean something to which architectures; the others are kept at their defaults.
_GLOBAL_FIELDS = ("c_dim", "hidden_size")
_FIELDS_USED = {
    "onet-image": ("image_size",),
    "onet-pointcloud": ("encoder_hidden", "n_input_points"),
    "onet-voxels": (),
    "convonet-pointcloud": ("encoder_hidden", "n_input_points", "feature_resolution", "unet_depth",
                            "unet_filters"),
    "convonet-voxels": ("feature_resolution", "unet_depth", "unet_filters"),
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build an OccupancyNetwork; stored in every checkpoint we write.

    Defaults are those of the released models (see ARCHITECTURES); smaller networks only change
    the widths, never the module names, so a state_dict always has the original's keys.
    """

    arch: str
    c_dim: int = 256          # size of the code c the encoder produces
    hidden_size: int = 256    # decoder width
    encoder_hidden: int = 512  # ResNet-PointNet width (pointcloud only)
    # Point clouds: ONet's global encoder sees exactly this many points; a local (ConvONet) encoder is
    # trained around this count and at inference takes every point up to MAX_LOCAL_INPUT_POINTS.
    n_input_points: int = 300
    image_size: int = 224  # side of the square image the encoder is given (image only; the released: 224)
    # ConvONet only: side of each feature plane or of the feature grid, and its U-Net (2D: depth, that
    # is levels including the finest; 3D: levels), with `unet_filters` channels at the finest level.
    feature_resolution: int = 64
    unet_depth: int = 4
    unet_filters: int = 32

    def __post_init__(self) -> None:
        if self.arch not in ARCH_MODALITY:
            raise InputError(f"unknown architecture {self.arch!r}{_did_you_mean(self.arch, ARCH_MODALITY)}; "
                             f"choose one of {', '.join(ARCH_MODALITY)}")
        for name in FIELD_BOUNDS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"model config: {name} must be a positive integer, got {value!r}")
            if value > FIELD_BOUNDS[name]:
                raise InputError(f"model config: {name} {value:,} is over the {FIELD_BOUNDS[name]:,} this project "
                                 "accepts")
        if self.local:
            if self.planes == ("grid",) and self.feature_resolution > GRID_RESOLUTION_BOUND:
                raise InputError(f"model config: a feature grid of {self.feature_resolution}^3 is over the "
                                 f"{GRID_RESOLUTION_BOUND}^3 this project accepts")
            if self.feature_resolution % (2 ** (self.unet_depth - 1)):
                raise InputError(f"model config: feature_resolution {self.feature_resolution} must be divisible by "
                                 f"2**(unet_depth - 1) = {2 ** (self.unet_depth - 1)} (the U-Net halves it "
                                 f"{self.unet_depth - 1} times)")
            if self.unet_filters % 8 and self.planes == ("grid",):
                raise InputError(f"model config: unet_filters must be a multiple of 8 (group norm), got "
                                 f"{self.unet_filters}")
        # Settings of one encoder mean nothing to the others: keep them at their defaults so that two
        # configs building the same network compare equal.
        used = _FIELDS_USED[f"{self.family}-{self.modality}"]
        for name in FIELD_BOUNDS:
            if name not in _GLOBAL_FIELDS and name not in used:
                object.__setattr__(self, name, type(self).__dataclass_fields__[name].default)

    @property
    def modality(self) -> str:
        return ARCH_MODALITY[self.arch]

    @property
    def family(self) -> str:
        """'onet' (one global code per shape) or 'convonet' (features on planes or a grid)."""
        return self.arch.split("-", 1)[0]

    @property
    def local(self) -> bool:
        return self.family == "convonet"

    @property
    def planes(self) -> tuple[str, ...]:
        """ConvONet: the feature planes ('xz', 'xy', 'yz') or ('grid',); () for ONet."""
        return FEATURE_PLANES[self.arch.rsplit("-", 1)[1]] if self.local else ()

    @property
    def legacy(self) -> bool:
        """The paper's image model: conditional batch norm through Linear instead of Conv1d layers."""
        return self.arch == "onet-img-legacy"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Build from a plain mapping; an unknown key fails and names the nearest valid one."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise InputError(f"model config: unknown key {key!r}{_did_you_mean(key, known)}")
        if "arch" not in values:
            raise InputError("model config: 'arch' is missing")
        return cls(**dict(values))


# The four released conditional models of the original project.
ARCHITECTURES: dict[str, ModelConfig] = {
    "onet-img": ModelConfig("onet-img", c_dim=256, hidden_size=256),
    "onet-img-legacy": ModelConfig("onet-img-legacy", c_dim=256, hidden_size=256),
    "onet-pointcloud": ModelConfig("onet-pointcloud", c_dim=512, hidden_size=256, encoder_hidden=512),
    "onet-voxels": ModelConfig("onet-voxels", c_dim=256, hidden_size=256),
}
# ConvONet's released ShapeNet models (configs/pointcloud/shapenet_*.yaml, configs/voxel/shapenet_*.yaml):
# hidden 32 and code 32 everywhere; planes 64x64 with a 2D U-Net of depth 4, or a 32^3 grid with 3 levels.
_LOCAL = {"c_dim": 32, "hidden_size": 32, "encoder_hidden": 32, "unet_filters": 32}
ARCHITECTURES.update({
    "convonet-pointcloud-3plane": ModelConfig("convonet-pointcloud-3plane", n_input_points=3000,
                                              feature_resolution=64, unet_depth=4, **_LOCAL),
    "convonet-pointcloud-1plane": ModelConfig("convonet-pointcloud-1plane", n_input_points=3000,
                                              feature_resolution=64, unet_depth=4, **_LOCAL),
    "convonet-pointcloud-grid": ModelConfig("convonet-pointcloud-grid", n_input_points=3000,
                                            feature_resolution=32, unet_depth=3, **_LOCAL),
    "convonet-voxels-3plane": ModelConfig("convonet-voxels-3plane", feature_resolution=64, unet_depth=4, **_LOCAL),
    "convonet-voxels-1plane": ModelConfig("convonet-voxels-1plane", feature_resolution=64, unet_depth=4, **_LOCAL),
    "convonet-voxels-grid": ModelConfig("convonet-voxels-grid", feature_resolution=32, unet_depth=3, **_LOCAL),
})

# A local point-cloud encoder's cost grows with the points it is given (about 1 KB of activations per
# point and layer): at inference it takes every point up to this many, a random subset beyond.
MAX_LOCAL_INPUT_POINTS = 20_000


def default_config(arch: str) -> ModelConfig:
    """The released model's configuration for an architecture name."""
    if arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture {arch!r}{_did_you_mean(arch, ARCHITECTURES)}; "
                         f"choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
