"""Model configuration: the few numbers that, with an architecture name, rebuild a network exactly."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import InputError

MODALITIES = ("image", "pointcloud", "voxels")

# Architecture name -> modality of its input.
ARCH_MODALITY = {
    "onet-img": "image",
    "onet-img-legacy": "image",
    "onet-pointcloud": "pointcloud",
    "onet-voxels": "voxels",
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
    n_input_points: int = 300  # points the point-cloud encoder is given (pointcloud only)
    image_size: int = 224  # side of the square image the encoder is given (image only; the released: 224)

    def __post_init__(self) -> None:
        if self.arch not in ARCH_MODALITY:
            raise InputError(f"unknown architecture {self.arch!r}{_did_you_mean(self.arch, ARCH_MODALITY)}; "
                             f"choose one of {', '.join(ARCH_MODALITY)}")
        for name in ("c_dim", "hidden_size", "encoder_hidden", "n_input_points", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"model config: {name} must be a positive integer, got {value!r}")
        # Settings of one encoder mean nothing to the others: keep them at their defaults so that two
        # configs building the same network compare equal.
        unused = {"pointcloud": ("image_size",), "image": ("encoder_hidden", "n_input_points"),
                  "voxels": ("encoder_hidden", "n_input_points", "image_size")}[self.modality]
        for name in unused:
            object.__setattr__(self, name, type(self).__dataclass_fields__[name].default)

    @property
    def modality(self) -> str:
        return ARCH_MODALITY[self.arch]

    @property
    def legacy(self) -> bool:
        """The paper's image model: conditional batch norm through Linear instead of Conv1d layers."""
        return self.arch == "onet-img-legacy"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelConfig":
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


def default_config(arch: str) -> ModelConfig:
    """The released model's configuration for an architecture name."""
    if arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture {arch!r}{_did_you_mean(arch, ARCHITECTURES)}; "
                         f"choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
