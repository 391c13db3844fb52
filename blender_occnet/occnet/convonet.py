"""The Convolutional Occupancy Network family (Peng et al. 2020): features on planes or a grid in space that
a local decoder samples. Its network is model.ConvolutionalOccupancyNetwork, imported only when one is built."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from ..common.errors import CheckpointError, InputError
from .families import Family, shipped

if TYPE_CHECKING:
    from .config import ModelConfig
    from .model import Network

GRID = ("grid",)
THREE_PLANES = ("xz", "xy", "yz")  # plane names: the axes each spans
GRID_RESOLUTION_BOUND = 128  # a 3D feature grid of 128^3 is already 8M cells per channel


def _build(config: ModelConfig) -> Network:
    from .model import ConvolutionalOccupancyNetwork

    return ConvolutionalOccupancyNetwork(config)


def _check(config: ModelConfig) -> None:
    if config.planes == GRID and config.feature_resolution > GRID_RESOLUTION_BOUND:
        raise InputError(f"model config: a feature grid of {config.feature_resolution}^3 is over the "
                         f"{GRID_RESOLUTION_BOUND}^3 this project accepts")
    if config.feature_resolution % (2 ** (config.unet_depth - 1)):
        raise InputError(f"model config: feature_resolution {config.feature_resolution} must be divisible by "
                         f"2**(unet_depth - 1) = {2 ** (config.unet_depth - 1)} (the U-Net halves it "
                         f"{config.unet_depth - 1} times)")
    if config.unet_filters % 8 and config.planes == GRID:
        raise InputError(f"model config: unet_filters must be a multiple of 8 (group norm), got "
                         f"{config.unet_filters}")


def _feature_values(config: ModelConfig) -> int:
    """One feature map at full resolution: every plane's (or the grid's) cells times the widest channels."""
    cells = len(config.planes) * config.feature_resolution ** (3 if config.planes == GRID else 2)
    return cells * max(config.c_dim, config.unet_filters)


def _signature(keys: Collection[str]) -> bool:
    """Its local decoder, which reads the features through fc_c."""
    return "decoder.fc_c.0.weight" in keys


def _recognise(state_dict: Mapping[str, Any]) -> str | None:
    """A 2D U-Net means planes (three, as every released plane model but shapenet_1plane: pass --arch for a
    one-plane file), a 3D U-Net the grid. Raises for ConvONet's scene models, which need a sliding window over
    the scan."""
    kind = "pointcloud" if "encoder.fc_pos.weight" in state_dict else "voxels"
    if "encoder.unet3d.final_conv.weight" in state_dict:
        if _unet3d_levels(state_dict) > 3:
            raise CheckpointError(
                "a ConvONet scene model (a 3D U-Net of 4 levels, as room_grid64 and the sliding-window "
                "pointcloud_crop model): whole-room reconstruction is not supported yet; use an object model "
                "(shapenet_3plane, shapenet_grid32, voxel_shapenet_*)")
        return f"convonet-{kind}-grid"
    if "encoder.unet.conv_final.weight" in state_dict:
        return f"convonet-{kind}-3plane"
    return None


def _unet3d_levels(state_dict: Mapping[str, Any]) -> int:
    return len({k.split(".")[3] for k in state_dict if k.startswith("encoder.unet3d.encoders.")})


def _read_config(state_dict: Mapping[str, Any]) -> dict[str, int]:
    """Widths and the U-Net's depth and filters; a file does not record its plane or grid resolution: the
    released models' (64 for planes, 32 for the grid) is assumed."""
    values = {}
    fc_p, fc_c = state_dict.get("decoder.fc_p.weight"), state_dict.get("decoder.fc_c.0.weight")
    fc_pos = state_dict.get("encoder.fc_pos.weight")
    if fc_pos is not None and fc_pos.ndim == 2:
        values["encoder_hidden"] = int(fc_pos.shape[0]) // 2
    if fc_p is not None and fc_p.ndim == 2:
        values["hidden_size"] = int(fc_p.shape[0])
    if fc_c is not None and fc_c.ndim == 2:
        values["c_dim"] = int(fc_c.shape[1])
    down = {k.split(".")[3] for k in state_dict if k.startswith("encoder.unet.down_convs.")}
    first = state_dict.get("encoder.unet.down_convs.0.conv1.weight")
    if down and first is not None:
        values["unet_depth"], values["unet_filters"] = len(down), int(first.shape[0])
    first3d = state_dict.get("encoder.unet3d.encoders.0.basic_module.SingleConv2.conv.weight")
    if first3d is not None:
        values["unet_depth"], values["unet_filters"] = _unet3d_levels(state_dict), int(first3d.shape[0])
    return values


# The released ShapeNet models (configs/pointcloud/shapenet_*.yaml, configs/voxel/shapenet_*.yaml): hidden 32 and
# code 32 everywhere; planes 64x64 with a 2D U-Net of depth 4, or a 32^3 grid with 3 levels.
_WIDTHS = {"c_dim": 32, "hidden_size": 32, "encoder_hidden": 32, "unet_filters": 32}
_PLANES = {"feature_resolution": 64, "unet_depth": 4, **_WIDTHS}
_GRID = {"feature_resolution": 32, "unet_depth": 3, **_WIDTHS}
_CLOUD = {"n_input_points": 3000}

CONVONET = Family(
    name="convonet",
    label="Convolutional Occupancy Network: features on planes or a grid in space",
    architectures=(
        shipped("convonet-pointcloud-3plane", {**_CLOUD, **_PLANES}, {"planes": THREE_PLANES}),
        shipped("convonet-pointcloud-1plane", {**_CLOUD, **_PLANES}, {"planes": ("xz",)},
                keys_like="convonet-pointcloud-3plane"),
        shipped("convonet-pointcloud-grid", {**_CLOUD, **_GRID}, {"planes": GRID}),
        shipped("convonet-voxels-3plane", _PLANES, {"planes": THREE_PLANES}),
        shipped("convonet-voxels-1plane", _PLANES, {"planes": ("xz",)}, keys_like="convonet-voxels-3plane"),
        shipped("convonet-voxels-grid", _GRID, {"planes": GRID}),
    ),
    fields={"pointcloud": ("encoder_hidden", "n_input_points", "feature_resolution", "unet_depth", "unet_filters"),
            "voxels": ("feature_resolution", "unet_depth", "unet_filters")},
    build=_build,
    signature=_signature,
    recognise=_recognise,
    read_config=_read_config,
    widths=(("decoder.fc_p.weight", 0, "hidden_size", 1), ("encoder.fc_pos.weight", 0, "encoder_hidden", 2),
            ("decoder.fc_c.0.weight", 1, "c_dim", 1)),
    check=_check,
    feature_values=_feature_values,
    local=True,
)
