"""A new architecture family is one module plus one registration call: a toy family declared in this file alone
is built, written to .safetensors, loaded back through the normal path and meshed by the Reconstructor."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from blender_occnet.common.errors import InputError
from blender_occnet.occnet.checkpoints import Weights, infer_arch, load_weights, save_weights
from blender_occnet.occnet.config import ARCH_MODALITY, ModelConfig, register_family, unregister_family
from blender_occnet.occnet.families import Architecture, DecodeFn, Family
from blender_occnet.occnet.generation import ExtractionSettings, Reconstructor
from blender_occnet.occnet.model import Network, build_model
from blender_occnet.occnet.preprocess import prepare_for_network

# ---- the toy family: everything a family needs, in one place ------------------------------------------------


class ToyDecoder(nn.Module):
    """A sphere of the code's first value as radius, plus a learnable correction (zero at first)."""

    def __init__(self, c_dim: int, hidden_size: int):
        super().__init__()
        self.fc_p, self.fc_c = nn.Linear(3, hidden_size), nn.Linear(c_dim, hidden_size)
        self.toy_out = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.toy_out.weight)
        nn.init.zeros_(self.toy_out.bias)

    def forward(self, points: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        correction = self.toy_out(torch.relu(self.fc_p(points) + self.fc_c(c).unsqueeze(1))).squeeze(-1)
        return 50 * (c[:, :1] - points.norm(dim=-1)) + correction


class ToyNetwork(Network):
    """One global code per cloud: its points' mean distance from the centre, lifted to c_dim values."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = nn.Linear(1, config.c_dim)
        self.decoder = ToyDecoder(config.c_dim, config.hidden_size)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(inputs.norm(dim=-1).mean(dim=1, keepdim=True))

    def decode(self, points: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.decoder(points, c)


def toy_fixed_decoder(model: Network, c: torch.Tensor) -> DecodeFn:
    code = c.clone()  # out of inference mode
    return lambda points: model.decode(points.unsqueeze(0), code).squeeze(0)


def toy_signature(keys: Collection[str]) -> bool:
    return "decoder.toy_out.weight" in keys


def toy_recognise(state_dict: Mapping[str, Any]) -> str | None:
    return "toy-pointcloud"


TOY = Family(name="toy", label="A sphere of the cloud's mean radius",
             architectures=(Architecture("toy-pointcloud", "pointcloud", "The toy point-cloud model",
                                         {"c_dim": 8, "hidden_size": 16, "n_input_points": 500}),),
             fields={"pointcloud": ("n_input_points",)}, build=ToyNetwork, signature=toy_signature,
             recognise=toy_recognise, read_config=lambda state: {"c_dim": int(state["encoder.weight"].shape[0])},
             widths=(("encoder.weight", 0, "c_dim", 1),), fixed_decoder=toy_fixed_decoder)

# -------------------------------------------------------------------------------------------------------------


@pytest.fixture
def toy_family() -> Iterator[Family]:
    register_family(TOY)
    try:
        yield TOY
    finally:
        unregister_family(TOY.name)


def test_a_family_registered_from_one_file_builds_saves_loads_and_meshes(toy_family: Family, tmp_path: Path) -> None:
    config = ModelConfig("toy-pointcloud", c_dim=8, hidden_size=16, encoder_hidden=99)
    assert config.encoder_hidden == ModelConfig("onet-voxels").encoder_hidden  # a field the family does not read
    assert config.family is TOY and config.modality == "pointcloud" and not config.local
    model = build_model(config)
    with torch.no_grad():  # the code's first value is the radius itself
        model.encoder.weight.zero_()
        model.encoder.weight[0, 0] = 1.0
        model.encoder.bias.zero_()
    assert infer_arch(model.state_dict()) == "toy-pointcloud"

    path = tmp_path / "toy.safetensors"
    save_weights(path, Weights(config, model.state_dict(), threshold=0.5, card={"summary": "a toy"}))
    weights = load_weights(path)
    assert weights.config == config and weights.modality == "pointcloud"

    radius = 2.0
    directions = np.random.default_rng(0).normal(size=(4000, 3))
    cloud = radius * directions / np.linalg.norm(directions, axis=1, keepdims=True) + [1.0, -2.0, 3.0]
    reconstructor = Reconstructor(weights, device="cpu")
    shape = reconstructor.encode(prepare_for_network(weights.config, "pointcloud", cloud))
    mesh = shape.extract(ExtractionSettings(threshold=0.5, resolution=32))
    assert len(mesh.faces) > 100
    distances = np.linalg.norm(mesh.vertices - [1.0, -2.0, 3.0], axis=1)
    assert abs(distances.mean() - radius) < 0.05 * radius and distances.std() < 0.05 * radius


def test_a_family_is_known_only_while_registered_and_only_once(toy_family: Family) -> None:
    assert "toy-pointcloud" in ARCH_MODALITY
    with pytest.raises(ValueError, match="registered already"):
        register_family(TOY)
    unregister_family(TOY.name)
    try:
        with pytest.raises(InputError, match="unknown architecture 'toy-pointcloud'"):
            ModelConfig("toy-pointcloud")
    finally:
        register_family(TOY)  # for the fixture to take back
