"""Model configuration: the few numbers that, with an architecture name, rebuild a network exactly; and the
registry of architecture families (families.py) that the names are looked up in."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..common.errors import InputError
from .convonet import CONVONET
from .families import Architecture, Family
from .onet import ONET

# Upper bounds on every size a weights file's config may ask for (a file claiming hidden_size=60000 or
# image_size=40000 would otherwise make the backend build gigabytes before any shape check). Each is far
# beyond the released models'; loading also checks the widths against the tensors (checkpoints.py).
FIELD_BOUNDS = {"c_dim": 4096, "hidden_size": 4096, "encoder_hidden": 4096, "n_input_points": 100_000,
                "image_size": 1024, "feature_resolution": 256, "unet_depth": 6, "unet_filters": 256}

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

# The fields every family reads; which others a network reads is its family's (Family.fields).
_GLOBAL_FIELDS = ("c_dim", "hidden_size")


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
        self.family.check(self)
        # Settings of one encoder mean nothing to the others: keep them at their defaults so that two
        # configs building the same network compare equal.
        used = self.family.fields[self.modality]
        for name in FIELD_BOUNDS:
            if name not in _GLOBAL_FIELDS and name not in used:
                object.__setattr__(self, name, type(self).__dataclass_fields__[name].default)

    @property
    def architecture(self) -> Architecture:
        return _ARCHITECTURES[self.arch]

    @property
    def family(self) -> Family:
        return FAMILIES[_FAMILY_OF[self.arch]]

    @property
    def modality(self) -> str:
        return self.architecture.modality

    @property
    def local(self) -> bool:
        """Features in space (ConvONet) rather than one global code per shape (ONet)."""
        return self.family.local

    @property
    def planes(self) -> tuple[str, ...]:
        """ConvONet: the feature planes ('xz', 'xy', 'yz') or ('grid',); () for the others."""
        return tuple(self.architecture.variant.get("planes", ()))

    @property
    def legacy(self) -> bool:
        """The paper's image model: conditional batch norm through Linear instead of Conv1d layers."""
        return bool(self.architecture.variant.get("legacy", False))

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


# The registry, filled by register_family: family name -> family; architecture name -> its released model's config,
# its modality, its entry, its family's name. Read them; change them only through register_family.
FAMILIES: dict[str, Family] = {}
ARCHITECTURES: dict[str, ModelConfig] = {}
ARCH_MODALITY: dict[str, str] = {}
_ARCHITECTURES: dict[str, Architecture] = {}
_FAMILY_OF: dict[str, str] = {}


def register_family(family: Family) -> None:
    """Make a family's architectures known to every config, loader and generator."""
    taken = [a.name for a in family.architectures if a.name in _ARCHITECTURES]
    if family.name in FAMILIES or taken:
        raise ValueError(f"family {family.name!r} or its architectures {taken} are registered already")
    FAMILIES[family.name] = family
    for architecture in family.architectures:
        _ARCHITECTURES[architecture.name], _FAMILY_OF[architecture.name] = architecture, family.name
        ARCH_MODALITY[architecture.name] = architecture.modality
    try:
        for architecture in family.architectures:  # once the whole family is known (one may name another)
            ARCHITECTURES[architecture.name] = ModelConfig(architecture.name, **architecture.defaults)
    except Exception:
        unregister_family(family.name)
        raise


def unregister_family(name: str) -> None:
    """Forget a family (a test's own, once it is done)."""
    family = FAMILIES.pop(name)
    for architecture in family.architectures:
        for table in (_ARCHITECTURES, _FAMILY_OF, ARCH_MODALITY, ARCHITECTURES):
            table.pop(architecture.name, None)


register_family(ONET)
register_family(CONVONET)

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
