"""The Occupancy Network family (Mescheder et al. 2019): one global code per shape, a conditional-batch-norm
decoder. Its network is model.OccupancyNetwork, imported only when one is built."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from .families import Family, shipped

if TYPE_CHECKING:
    from .config import ModelConfig
    from .model import Network


def _build(config: ModelConfig) -> Network:
    from .model import OccupancyNetwork

    return OccupancyNetwork(config)


def _signature(keys: Collection[str]) -> bool:
    """Its decoder's conditional batch norms (the Conv1d or the paper's Linear ones)."""
    return any(key.startswith(("decoder.bn.", "decoder.block0.")) for key in keys)


def _recognise(state_dict: Mapping[str, Any]) -> str | None:
    """Told by the encoder."""
    if "encoder.features.conv1.weight" in state_dict:
        return "onet-img-legacy" if "decoder.bn.fc_gamma.weight" in state_dict else "onet-img"
    if "encoder.fc_pos.weight" in state_dict:
        return "onet-pointcloud"
    if "encoder.conv_in.weight" in state_dict:
        return "onet-voxels"
    return None


def _read_config(state_dict: Mapping[str, Any]) -> dict[str, int]:
    values = {}
    fc_p = state_dict.get("decoder.fc_p.weight")
    gamma = state_dict.get("decoder.bn.fc_gamma.weight", state_dict.get("decoder.bn.conv_gamma.weight"))
    fc_pos = state_dict.get("encoder.fc_pos.weight")
    if fc_p is not None and fc_p.ndim == 3:
        values["hidden_size"] = int(fc_p.shape[0])
    if gamma is not None and gamma.ndim >= 2:
        values["c_dim"] = int(gamma.shape[1])
    if fc_pos is not None and fc_pos.ndim == 2:
        values["encoder_hidden"] = int(fc_pos.shape[0]) // 2
    return values


ONET = Family(
    name="onet",
    label="Occupancy Network: one global code per shape",
    # The four released conditional models of the original project.
    architectures=(
        shipped("onet-img", {"c_dim": 256, "hidden_size": 256}),
        shipped("onet-img-legacy", {"c_dim": 256, "hidden_size": 256}, variant={"legacy": True}),
        shipped("onet-pointcloud", {"c_dim": 512, "hidden_size": 256, "encoder_hidden": 512}),
        shipped("onet-voxels", {"c_dim": 256, "hidden_size": 256}),
    ),
    fields={"image": ("image_size",), "pointcloud": ("encoder_hidden", "n_input_points"), "voxels": ()},
    build=_build,
    signature=_signature,
    recognise=_recognise,
    read_config=_read_config,
    widths=(("decoder.fc_p.weight", 0, "hidden_size", 1), ("encoder.fc_pos.weight", 0, "encoder_hidden", 2),
            ("decoder.bn.conv_gamma.weight", 1, "c_dim", 1), ("decoder.bn.fc_gamma.weight", 1, "c_dim", 1)),
)
