"""What an architecture family is: one entry holding everything the project asks of a kind of network.

A family (ONet, ConvONet, or a new one) is one module that makes a `Family` and one call to
`config.register_family`; the config checks, model building, checkpoint loading and generation look it up
by architecture name. This module and the families' declarations import no torch: the architecture names
and their configs are read where torch must not be loaded yet (the command line sets torch's threads first).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..common.architectures import SHIPPED

if TYPE_CHECKING:
    import torch

    from .config import ModelConfig
    from .model import Network

DecodeFn = Callable[["torch.Tensor"], "torch.Tensor"]  # box points (N, 3) -> logits (N,)
# (tensor key, axis, config field, tensor size per unit of the field): a width a weights file's config states
# and one of its tensors carries, checked against each other before anything is built.
WidthKey = tuple[str, int, str, int]


@dataclass(frozen=True)
class Architecture:
    """One named network of a family, with the configuration of its released model."""

    name: str
    modality: str  # the input it takes: 'image', 'pointcloud' or 'voxels'
    label: str  # one line for a person choosing it
    defaults: Mapping[str, int] = field(default_factory=dict)  # the released model's config values
    variant: Mapping[str, Any] = field(default_factory=dict)  # what the family's builder reads off the name
    keys_like: str = ""  # another architecture whose files hold the very same keys (cannot be told apart)


def shipped(name: str, defaults: Mapping[str, int], variant: Mapping[str, Any] | None = None,
            keys_like: str = "") -> Architecture:
    """One of the architectures this project ships, its modality and label as common/architectures.py names it
    (which the add-on reads without torch)."""
    entry = SHIPPED[name]
    return Architecture(entry.name, entry.modality, entry.label, defaults, variant or {}, keys_like)


def _network_fixed_decoder(model: Network, encoding: Any) -> DecodeFn:
    return model.fixed_decoder(encoding)


def _no_check(config: ModelConfig) -> None:
    return None


def _no_feature_map(config: ModelConfig) -> int:
    return 0


def _no_config_values(state_dict: Mapping[str, Any]) -> dict[str, int]:
    return {}


@dataclass(frozen=True)
class Family:
    """Everything that differs between kinds of network; the rest of the project looks it up."""

    name: str
    label: str
    architectures: tuple[Architecture, ...]
    # Modality -> the config fields, beyond c_dim and hidden_size, its networks read; the others keep their
    # defaults, so that two configs building the same network compare equal.
    fields: Mapping[str, tuple[str, ...]]
    build: Callable[[ModelConfig], Network]  # a freshly initialised network for a config
    # Checkpoint-key signature: whether a state_dict's keys are this family's, then which architecture they
    # are (None: the family's, but which one cannot be told: the caller must name it).
    signature: Callable[[Collection[str]], bool]
    recognise: Callable[[Mapping[str, Any]], str | None]
    # Config values read off a state_dict's tensors (a smaller custom network loads too), and the widths a
    # file's stated config must agree with.
    read_config: Callable[[Mapping[str, Any]], dict[str, int]] = _no_config_values
    widths: tuple[WidthKey, ...] = ()
    # The decoder fixed on one encoding of the same network, as generation evaluates it.
    fixed_decoder: Callable[[Network, Any], DecodeFn] = _network_fixed_decoder
    check: Callable[[ModelConfig], None] = _no_check  # rules on a config beyond each field's bound
    feature_values: Callable[[ModelConfig], int] = _no_feature_map  # its largest feature map, in values
    # Features in space rather than one code: an input cloud is kept whole, and fitting can adapt the features.
    local: bool = False
