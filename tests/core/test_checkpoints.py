"""Original checkpoints load safely, convert to our safetensors format, and give identical outputs."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from blender_occnet.cli import main as cli_main
from blender_occnet.common.errors import CheckpointError
from blender_occnet.occnet.checkpoints import Weights, convert_checkpoint, load_weights, save_weights
from blender_occnet.occnet.config import ModelConfig, default_config
from tests.helpers import example_input, randomized_model, save_original_checkpoint, small_config


def logits_of(weights: Weights, seed: int = 1) -> torch.Tensor:
    model = weights.build("cpu")
    points = torch.rand(2, 64, 3, generator=torch.Generator().manual_seed(seed)) - 0.55
    with torch.no_grad():
        return model(points, example_input(weights.modality, 2, seed))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy-pickle"])
@pytest.mark.parametrize("arch", ["onet-pointcloud", "onet-voxels", "onet-img-legacy", "convonet-pointcloud-3plane",
                                  "convonet-pointcloud-grid", "convonet-voxels-3plane", "convonet-voxels-grid"])
def test_original_round_trip_is_bit_identical(tmp_path: Path, arch: str, zip_format: bool) -> None:
    # ConvONet files do not record their plane/grid resolution: the released configuration is what loads.
    released = arch == "onet-img-legacy" or arch.startswith("convonet-")
    model = randomized_model(default_config(arch) if released else small_config(arch))
    original = tmp_path / "model.pt"
    save_original_checkpoint(original, model, zip_format=zip_format)

    loaded = load_weights(original)  # architecture told from the keys
    assert loaded.config == model.config
    converted = tmp_path / "model.safetensors"
    convert_checkpoint(original, converted, arch)
    reloaded = load_weights(converted)

    assert reloaded.config == model.config and reloaded.threshold == 0.2
    assert reloaded.card["converted_from"] == "model.pt" and len(reloaded.card["source_sha256"]) == 64
    reference = model.state_dict()
    assert set(reloaded.state_dict) == set(reference)
    for key, tensor in reference.items():
        assert reloaded.state_dict[key].dtype == tensor.dtype
        assert torch.equal(reloaded.state_dict[key], tensor), key
    with torch.no_grad():
        points = torch.rand(2, 64, 3, generator=torch.Generator().manual_seed(1)) - 0.55
        expected = model(points, example_input(model.config.modality, 2, 1))
    assert torch.equal(logits_of(loaded), expected)
    assert torch.equal(logits_of(reloaded), expected)


def test_safetensors_metadata_and_no_pickle(tmp_path: Path) -> None:
    config = ModelConfig("onet-pointcloud", c_dim=64, hidden_size=64, encoder_hidden=48)
    card = {"data": "unit test", "steps": 3, "metrics": {"iou": 0.5}}
    path = tmp_path / "w.safetensors"
    save_weights(path, Weights(config, randomized_model(config).state_dict(), 0.35, card))
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    meta = header["__metadata__"]
    assert json.loads(meta["config"]) == config.to_dict()
    assert meta["modality"] == "pointcloud" and float(meta["threshold"]) == 0.35
    assert json.loads(meta["model_card"]) == card
    # Loading must not go through pickle at all.
    original_loads = pickle.loads
    pickle.loads = None  # type: ignore[assignment]
    try:
        weights = load_weights(path)
    finally:
        pickle.loads = original_loads
    assert weights.config == config and weights.threshold == 0.35 and weights.card == card


def test_code_executing_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):  # noqa: D105 - executed on unpickling
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {"encoder.fc_pos.weight": torch.zeros(2)}, "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: it asks to import posix\.system"):
        load_weights(path)
    assert not marker.exists()
    out = tmp_path / "out.safetensors"
    assert cli_main(["convert", str(path), str(out)]) == 1
    assert not out.exists() and not marker.exists()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left either


def test_wrong_architecture_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "pc.pt"
    save_original_checkpoint(path, randomized_model(small_config("onet-pointcloud")))
    with pytest.raises(CheckpointError, match="holds an onet-pointcloud model, not onet-voxels"):
        load_weights(path, arch="onet-voxels")

    # Keys of the right architecture with one missing and one extra: both named.
    state = randomized_model(small_config("onet-voxels")).state_dict()
    state.pop("decoder.block3.fc_0.bias")
    state["decoder.extra.weight"] = torch.zeros(1)
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): decoder\.block3\.fc_0\.bias; "
                                              r"1 unexpected key\(s\): decoder\.extra\.weight"):
        load_weights(path)

    # A shape that does not fit: the first mismatched key and both shapes are named.
    state = randomized_model(small_config("onet-voxels")).state_dict()
    state["encoder.conv_2.weight"] = torch.zeros(256, 128, 3, 3, 1)
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"encoder\.conv_2\.weight has shape \(256, 128, 3, 3, 1\)"):
        load_weights(path)


def test_convonet_files_told_apart_and_wrong_ones_named(tmp_path: Path) -> None:
    path = tmp_path / "shapenet_3plane.pt"
    state = randomized_model(default_config("convonet-pointcloud-3plane")).state_dict()
    save_original_checkpoint(path, randomized_model(default_config("convonet-pointcloud-3plane")))
    with pytest.raises(CheckpointError, match="holds an convonet-pointcloud-3plane model, not convonet-voxels-grid"):
        load_weights(path, arch="convonet-voxels-grid")
    # The one-plane variant shares the keys: asking for it is allowed.
    assert load_weights(path, arch="convonet-pointcloud-1plane").config.planes == ("xz",)

    # A file whose U-Net is missing cannot be told apart: --arch it is, and the missing keys are named.
    torch.save({"model": {k: v for k, v in state.items() if ".unet." not in k}}, path)
    with pytest.raises(CheckpointError, match="cannot tell the architecture"):
        load_weights(path)
    with pytest.raises(CheckpointError, match=r"36 missing key\(s\): encoder\.unet\.down_convs\.0\.conv1\.weight"):
        load_weights(path, arch="convonet-pointcloud-3plane")

    # The scene model (a four-level 3D U-Net on a 64^3 grid) is recognised and refused with the reason.
    scene = ModelConfig("convonet-pointcloud-grid", c_dim=32, hidden_size=32, encoder_hidden=32,
                        feature_resolution=64, unet_depth=4, unet_filters=32)
    save_original_checkpoint(tmp_path / "room_grid64.pt", randomized_model(scene))
    with pytest.raises(CheckpointError, match=r"room_grid64\.pt: a ConvONet scene model .* not supported yet"):
        load_weights(tmp_path / "room_grid64.pt")


@pytest.mark.parametrize("content,message", [
    (b"", "the file is empty"),
    (b"not a checkpoint at all", "not a PyTorch checkpoint: it is text"),
    (b"\x80\x02not a checkpoint at all", "not loaded: the safe reader stopped at Unsupported operand 110"),
    (b"PK\x03\x04truncated zip", "not a readable PyTorch checkpoint"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": broken json", "not a readable .safetensors file"),
])
def test_damaged_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_weights(path)


@pytest.mark.parametrize("name,content,message", [
    ("random.safetensors", bytes(range(256)) * 4, "not a readable .safetensors file"),
    ("huge.safetensors", (2 ** 63).to_bytes(8, "little") + b"{}", "not a readable .safetensors file"),
    ("big.safetensors", (2 ** 32).to_bytes(8, "little") + b"{}", "not a readable .safetensors file"),
    ("over.safetensors", (10 ** 8 + 1).to_bytes(8, "little") + b"{" + b" " * 64, "not a readable .safetensors file"),
    ("cut.safetensors", (100).to_bytes(8, "little"), "not a readable .safetensors file"),
    ("notweights.pt", b"hello world, not weights", r"not a PyTorch checkpoint: it is text \('hello world, not"),
    ("noise.pt", bytes(range(7, 256)), r"not a PyTorch checkpoint: its bytes are neither .* zip archive nor"),
])
def test_malformed_weights_get_a_message_naming_the_file(tmp_path: Path, name: str, content: bytes,
                                                         message: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as caught:
        load_weights(path)
    assert str(caught.value).startswith(str(path))
    # The command line says the same in one line, for reconstruct and convert alike.
    assert cli_main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and "Traceback" not in err and err.count("\n") == 1
    assert "Error:" not in err  # what is wrong with the file, not which Python exception the reader met


def test_foreign_safetensors_without_our_metadata(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="without blender-occnet metadata"):
        load_weights(path)


def test_cli_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original = tmp_path / "vox.pt"
    save_original_checkpoint(original, randomized_model(small_config("onet-voxels")))
    out = tmp_path / "vox.safetensors"
    assert cli_main(["convert", str(original), str(out), "--arch", "onet-voxels"]) == 0
    assert "onet-voxels (voxels)" in capsys.readouterr().out
    assert load_weights(out).config == small_config("onet-voxels")
    # Wrong --arch: non-zero exit, a one-line message, no output.
    out2 = tmp_path / "other.safetensors"
    assert cli_main(["convert", str(original), str(out2), "--arch", "onet-pointcloud"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not onet-pointcloud" in err and "Traceback" not in err
    assert not out2.exists()


def test_image_size_is_kept_for_image_networks_only(tmp_path: Path) -> None:
    """A smaller image input (the bundled image weights use 112 px) travels in the weights file and sizes
    the command line's preprocessing; other encoders ignore it."""
    from PIL import Image

    from blender_occnet.occnet.preprocess import prepare_image
    from tests.helpers import centre_logits

    assert ModelConfig("onet-voxels", image_size=112) == ModelConfig("onet-voxels")
    picture = torch.ones(96, 128, 3)
    picture[20:80, 30:90] = 0.1
    Image.fromarray((picture.numpy() * 255).astype("uint8")).save(tmp_path / "thing.png")
    config = ModelConfig("onet-img", c_dim=16, hidden_size=16, image_size=112)
    prepared = prepare_image(tmp_path / "thing.png", size=config.image_size)
    assert prepared.array.shape == (3, 112, 112)
    model = centre_logits(randomized_model(config), torch.from_numpy(prepared.array)[None])
    save_weights(tmp_path / "img.safetensors", Weights(config, model.state_dict(), 0.5, {"summary": "test"}))
    assert load_weights(tmp_path / "img.safetensors").config.image_size == 112
    assert cli_main(["reconstruct", str(tmp_path / "thing.png"), "-o", str(tmp_path / "thing.obj"), "--weights",
                     str(tmp_path / "img.safetensors"), "--resolution", "32", "--threshold", "0.5", "--quiet"]) == 0
    assert (tmp_path / "thing.obj").stat().st_size > 0


def test_half_precision_file_is_half_the_size_and_loads_as_float32(tmp_path: Path) -> None:
    from safetensors import safe_open

    from blender_occnet.occnet.generation import Reconstructor
    from tests.helpers import example_input

    config = small_config("onet-pointcloud")
    model = randomized_model(config)
    state = model.state_dict()
    state["decoder.fc_out.bias"] = torch.tensor([1e6])  # beyond float16: must stay float32
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_weights(full, Weights(config, state, 0.2, {}))
    save_weights(half, Weights(config, state, 0.2, {}), half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    with safe_open(str(half), framework="pt") as handle:
        assert handle.get_tensor("decoder.fc_p.weight").dtype == torch.float16
        assert handle.get_tensor("decoder.fc_out.bias").dtype == torch.float32
    loaded = load_weights(half)
    assert all(t.dtype != torch.float16 for t in loaded.state_dict.values())
    assert loaded.state_dict["decoder.fc_out.bias"].item() == 1e6
    inputs = example_input("pointcloud")
    points = torch.rand(1, 500, 3) - 0.5
    logits = [Reconstructor(load_weights(path), "cpu").model(points, inputs) for path in (full, half)]
    assert torch.allclose(logits[0], logits[1], rtol=1e-2, atol=1e-2 * logits[0].abs().max().item())


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": 60000}, "hidden_size 60,000 is over the 4,096"),
    ({"n_input_points": 400_000_000}, "n_input_points 400,000,000 is over"),
    ({"image_size": 40000}, "image_size 40,000 is over"),
    ({"hidden_size": 64}, r"says hidden_size 64 but decoder\.fc_p\.weight has shape \(32, 3, 1\)"),
])
def test_a_config_that_would_build_gigabytes_is_refused_before_building(tmp_path: Path, change: dict,
                                                                        message: str) -> None:
    """A weights file is a resource bomb when its config asks for a huge network over small tensors: every
    field is bounded and the widths are checked against the tensors before anything is built."""
    from safetensors.torch import save_file

    config = small_config("onet-pointcloud")
    path = tmp_path / "w.safetensors"
    save_weights(path, Weights(config, randomized_model(config).state_dict(), 0.2, {}))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    meta["config"] = json.dumps({**json.loads(meta["config"]), **change})
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=message):
        load_weights(path)


# Issue 24 item 4: small files that asked for gigabytes. The command line runs in a child process whose address
# space is capped at 3 GiB, so a file that still made it build or inflate gigabytes fails (with a traceback)
# rather than taking the machine's memory.
REPO = Path(__file__).resolve().parents[2]
ADDRESS_SPACE = 3 << 30


def run_capped(*args: str) -> subprocess.CompletedProcess:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    return subprocess.run([sys.executable, "-m", "blender_occnet", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, preexec_fn=cap)


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


@pytest.mark.parametrize("config", [
    {"arch": "convonet-pointcloud-3plane", "c_dim": 256, "hidden_size": 256, "feature_resolution": 256,
     "unet_depth": 6, "unet_filters": 256},  # a 6-level U-Net of 256 filters: 2 billion values
    {"arch": "onet-pointcloud", "c_dim": 4096, "hidden_size": 4096, "encoder_hidden": 4096},  # ONet widths of 4,096
], ids=["unet-6-levels-256-filters", "onet-widths-4096"])
def test_a_tiny_weights_file_asking_for_a_huge_network_is_refused_before_it_is_built(tmp_path: Path,
                                                                                    config: dict) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "tiny.safetensors"
    save_file({}, str(path), metadata={"format": "blender-occnet-weights", "format_version": "1",
                                       "config": json.dumps(config), "modality": "pointcloud", "threshold": "0.2",
                                       "model_card": "{}"})
    assert path.stat().st_size < 400
    done = run_capped("reconstruct", str(REPO / "blender_occnet/samples/chair_pointcloud.ply"), "-o",
                      str(tmp_path / "out.obj"), "--weights", str(path), "--quiet")
    assert_one_line_error(done, str(path), "is over the 64,000,000 this project accepts")
    assert not (tmp_path / "out.obj").exists()
    with pytest.raises(CheckpointError, match=r"network of [\d,]+ values .* is over the 64,000,000"):
        load_weights(path)
    from blender_occnet.occnet.registry import describe

    assert "is over the 64,000,000 this project accepts" in describe(path).error  # `models` says so too


def test_a_checkpoint_of_zero_size_tensors_is_refused(tmp_path: Path) -> None:
    """Zero-size tensors whose other dimensions say ONet widths of 4,096: a 9 KB file whose config, read off
    the shapes, is a network of a billion values."""
    wide = ModelConfig("onet-pointcloud", c_dim=4096, hidden_size=4096, encoder_hidden=4096)
    from blender_occnet.occnet.model import OccupancyNetwork

    with torch.device("meta"):  # its shapes, nothing allocated
        shapes = {key: tuple(t.shape) for key, t in OccupancyNetwork(wide).state_dict().items()}
    # The last dimension zero: the widths the loader reads off the first ones stay 4,096.
    empty = {key: torch.zeros((*shape[:-1], 0) if len(shape) > 1 else (0,)) for key, shape in shapes.items()}
    source = tmp_path / "empty.pt"
    torch.save({"model": empty}, source)
    assert source.stat().st_size < 100_000
    done = run_capped("convert", str(source), str(tmp_path / "out.safetensors"))
    assert_one_line_error(done, str(source), "hold no values")
    assert list(tmp_path.iterdir()) == [source]
    with pytest.raises(CheckpointError, match="tensor.s. hold no values"):
        load_weights(source)


def test_a_pt_archive_that_would_inflate_past_the_bound_is_refused_from_its_directory(tmp_path: Path) -> None:
    """A real checkpoint whose largest tensor's data is followed by 1 GB of deflated zeros (a 5 MB file)."""
    import zipfile

    good = tmp_path / "good.pt"
    save_original_checkpoint(good, randomized_model(small_config("onet-pointcloud")))
    bomb = tmp_path / "bomb.pt"
    with (zipfile.ZipFile(good) as source,
          zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as out):
        biggest = max(source.infolist(), key=lambda member: member.file_size)
        for member in source.infolist():
            if member is not biggest:
                out.writestr(member, source.read(member))  # as torch wrote it (stored)
                continue
            with out.open(member.filename, "w", force_zip64=True) as data:
                data.write(source.read(member))
                chunk = bytes(1 << 24)
                for _ in range(66):  # 1.1 GB, over the 1.02 GB bound (checkpoints.MAX_ARCHIVE_BYTES)
                    data.write(chunk)
    assert bomb.stat().st_size < 20_000_000
    done = run_capped("convert", str(bomb), str(tmp_path / "out.safetensors"))
    assert_one_line_error(done, str(bomb), "would inflate to")
    assert not (tmp_path / "out.safetensors").exists()
    with pytest.raises(CheckpointError, match="its members would inflate to [\\d,]+ bytes, over the"):
        load_weights(bomb)


def test_a_feature_grid_too_large_to_hold_is_refused_though_its_network_is_small() -> None:
    """4M values of network, but a 128^3 grid of 128 channels is 1.1 GB per feature map."""
    from blender_occnet.common.errors import InputError
    from blender_occnet.occnet.model import build_model, network_size

    config = ModelConfig("convonet-voxels-grid", feature_resolution=128, unet_filters=128, unet_depth=2, c_dim=128)
    assert network_size(config) < 5_000_000
    with pytest.raises(InputError, match=r"a feature map of 268,435,456 values \(1.1 GB\) is over"):
        build_model(config)
    build_model(dataclasses.replace(config, feature_resolution=64))  # 8 times fewer: built
