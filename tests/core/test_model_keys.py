"""Every state_dict key, shape and dtype of the released models (ONet's four, ConvONet's four object
models) matches our modules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from blender_occnet.common.errors import InputError
from blender_occnet.occnet.config import ARCHITECTURES, ModelConfig, default_config
from blender_occnet.occnet.model import build_model

KEYS_FILE = Path(__file__).parent.parent / "data" / "onet_checkpoint_keys.txt"
CONVONET_KEYS_FILE = Path(__file__).parent.parent / "data" / "convonet_checkpoint_keys.txt"
CONVONET_SECTION_ARCH = {"configs/pointcloud/shapenet_3plane.yaml": "convonet-pointcloud-3plane",
                         "configs/pointcloud/shapenet_grid32.yaml": "convonet-pointcloud-grid",
                         "configs/voxel/shapenet_grid32.yaml": "convonet-voxels-grid",
                         "configs/voxel/shapenet_3plane.yaml": "convonet-voxels-3plane"}
SECTION_ARCH = {"img": "onet-img", "img legacy": "onet-img-legacy", "pointcloud": "onet-pointcloud",
                "voxels": "onet-voxels"}


def _add_tensor_line(section: dict[str, tuple[tuple[int, ...], str]], line: str) -> None:
    """'name (d0, d1) dtype' -> section[name] = ((d0, d1), dtype); blank lines and comments are skipped."""
    if not line.strip() or line.startswith("#"):
        return
    match = re.fullmatch(r"(\S+) \(([\d, ]*)\) (\w+)", line.strip())
    assert match, line
    key, shape, dtype = match.groups()
    section[key] = (tuple(int(x) for x in shape.replace(",", " ").split()), dtype)


def reference_keys() -> dict[str, dict[str, tuple[tuple[int, ...], str]]]:
    """Parse the listing read off the original im2mesh modules: arch -> key -> (shape, dtype)."""
    sections: dict[str, dict[str, tuple[tuple[int, ...], str]]] = {}
    current: dict[str, tuple[tuple[int, ...], str]] = {}
    for line in KEYS_FILE.read_text().splitlines():
        if line.startswith("#####"):
            title = line[5:].split("(")[0].split(" n_keys")[0].strip()
            current = sections.setdefault(SECTION_ARCH[title], {})
            continue
        _add_tensor_line(current, line)
    return sections


def convonet_reference_keys() -> tuple[dict[str, dict[str, tuple[tuple[int, ...], str]]], dict[str, int]]:
    """The ConvONet listing: arch -> key -> (shape, dtype), and arch -> the value count in its header.
    Sections of configurations we do not build (the scene model) are kept under their config name."""
    sections: dict[str, dict[str, tuple[tuple[int, ...], str]]] = {}
    counts: dict[str, int] = {}
    current: dict[str, tuple[tuple[int, ...], str]] = {}
    for line in CONVONET_KEYS_FILE.read_text().splitlines():
        if line.startswith("## "):
            config, count = re.fullmatch(r"## (\S+)\s+\((\d+) values\)", line).groups()  # type: ignore[union-attr]
            name = CONVONET_SECTION_ARCH.get(config, config)
            current, counts[name] = sections.setdefault(name, {}), int(count)
            continue
        _add_tensor_line(current, line)
    return sections, counts


REFERENCE = reference_keys()
CONVONET_REFERENCE, CONVONET_COUNTS = convonet_reference_keys()
REFERENCE.update({k: v for k, v in CONVONET_REFERENCE.items() if k in ARCHITECTURES})
# One-plane files have the three-plane keys (the planes share one U-Net); checked against that listing.
REFERENCE["convonet-pointcloud-1plane"] = REFERENCE["convonet-pointcloud-3plane"]
REFERENCE["convonet-voxels-1plane"] = REFERENCE["convonet-voxels-3plane"]
PARAMETER_COUNTS = {"onet-img": 13_414_465, "onet-img-legacy": 13_414_465, "onet-pointcloud": 10_373_889,
                    "onet-voxels": 7_857_473,
                    **{a: CONVONET_COUNTS[a] for a in CONVONET_SECTION_ARCH.values()},
                    "convonet-pointcloud-1plane": CONVONET_COUNTS["convonet-pointcloud-3plane"],
                    "convonet-voxels-1plane": CONVONET_COUNTS["convonet-voxels-3plane"]}


def test_listing_covers_every_architecture() -> None:
    assert set(REFERENCE) == set(ARCHITECTURES)
    assert [len(REFERENCE[a]) for a in ("onet-img", "onet-img-legacy", "onet-pointcloud", "onet-voxels")] \
        == [223, 223, 130, 113]
    assert [len(CONVONET_REFERENCE[a]) for a in CONVONET_SECTION_ARCH.values()] == [99, 95, 68, 72]
    assert CONVONET_COUNTS["convonet-pointcloud-3plane"] == 1_978_209


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_state_dict_matches_original(arch: str) -> None:
    state = build_model(default_config(arch)).state_dict()
    ours = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()}
    expected = REFERENCE[arch]
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert {k: v for k, v in ours.items() if v != expected[k]} == {}
    params = sum(p.numel() for p in build_model(default_config(arch)).parameters())
    assert params == PARAMETER_COUNTS[arch]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_forward_shapes(arch: str) -> None:
    from tests.helpers import example_input, randomized_model, small_config

    model = randomized_model(small_config(arch))
    inputs = example_input(model.config.modality)
    points = torch.rand(2, 50, 3) - 0.5
    with torch.no_grad():
        logits = model(points, inputs)
    assert logits.shape == (2, 50)
    assert torch.isfinite(logits).all()
    # Each shape's logits depend on its own observation only (eval mode: no batch statistics).
    with torch.no_grad():
        single = model(points[:1], inputs[:1])
    torch.testing.assert_close(single, logits[:1], rtol=1e-4, atol=1e-5)


def test_legacy_and_conv_cbn_compute_the_same_function() -> None:
    """The legacy decoder's Linear gamma/beta with the Conv1d weights reshaped give identical logits."""
    from tests.helpers import example_input, randomized_model, small_config

    conv = randomized_model(small_config("onet-img"))
    legacy = build_model(small_config("onet-img-legacy")).eval()
    state = {k.replace("conv_gamma", "fc_gamma").replace("conv_beta", "fc_beta"):
             (v.squeeze(-1) if ("conv_gamma" in k or "conv_beta" in k) and v.ndim == 3 else v)
             for k, v in conv.state_dict().items()}
    legacy.load_state_dict(state)
    points, images = torch.rand(1, 20, 3) - 0.5, example_input("image", 1)
    with torch.no_grad():
        torch.testing.assert_close(legacy(points, images), conv(points, images))


def test_config_rejects_unknown_key_and_names_nearest() -> None:
    with pytest.raises(InputError, match="unknown key 'hiden_size'.*'hidden_size'"):
        ModelConfig.from_dict({"arch": "onet-voxels", "hiden_size": 128})
    with pytest.raises(InputError, match="unknown architecture 'onet-pointclod'.*'onet-pointcloud'"):
        ModelConfig("onet-pointclod")
    with pytest.raises(InputError, match="c_dim must be a positive integer"):
        ModelConfig("onet-voxels", c_dim=0)
