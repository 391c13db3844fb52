"""Convolutional Occupancy Networks: scatter and sampling as the paper defines them, the fast decoding path,
generation end to end (normals and refinement through the feature sampling), and inputs of any density."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from blender_occnet.cli import main as cli_main
from blender_occnet.occnet.checkpoints import Weights, save_weights
from blender_occnet.occnet.config import MAX_LOCAL_INPUT_POINTS, ModelConfig
from blender_occnet.occnet.generation import EncodedShape, ExtractionSettings, Reconstructor
from blender_occnet.occnet.local import (
    FixedLocalDecoder,
    cell_index,
    normalised_coordinates,
    occupied_cells,
    pool_max,
    sample_features,
    scatter_mean,
)
from blender_occnet.occnet.preprocess import PreparedInput, prepare_for_network, prepare_voxels
from tests.helpers import centre_logits, example_input, randomized_model, reference_refinement, small_config

LOCAL_ARCHS = ["convonet-pointcloud-3plane", "convonet-pointcloud-1plane", "convonet-pointcloud-grid",
               "convonet-voxels-3plane", "convonet-voxels-grid"]


def test_cells_numbered_as_the_reference() -> None:
    points = torch.tensor([[[-0.55, -0.55, -0.55], [0.0, 0.0, 0.0], [0.549, 0.2, -0.3], [0.7, -0.9, 0.1]]])
    xz = normalised_coordinates(points, "xz")
    # p / (1.1 + 1e-5) + 0.5, clamped into [0, 1 - 1e-5]
    expected = torch.tensor([[0.0, 0.0], [0.5, 0.5], [0.549 / 1.10001 + 0.5, -0.3 / 1.10001 + 0.5],
                             [1 - 1e-5, 0.1 / 1.10001 + 0.5]])
    torch.testing.assert_close(xz[0], expected)
    index = cell_index(xz, 16)[0]
    cells = (expected * 16).long()
    assert index.tolist() == (cells[:, 0] + 16 * cells[:, 1]).tolist()
    grid = cell_index(normalised_coordinates(points, "grid"), 8)[0]
    g = (torch.where(points[0] / 1.101 + 0.5 >= 1, torch.tensor(1 - 1e-3), points[0] / 1.101 + 0.5).clamp_min(0)
         * 8).long()
    assert grid.tolist() == (g[:, 0] + 8 * (g[:, 1] + 8 * g[:, 2])).tolist()


def test_scatter_mean_and_local_max_against_loops() -> None:
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(2, 50, 4, generator=generator)
    index = torch.randint(0, 9, (2, 50), generator=generator)
    mean = scatter_mean(values, index, 9)
    pooled = pool_max(values, occupied_cells(index))
    for b in range(2):
        for cell in range(9):
            members = values[b][index[b] == cell]
            expected = members.mean(0) if len(members) else torch.zeros(4)
            torch.testing.assert_close(mean[b, cell], expected)
        for n in range(50):
            torch.testing.assert_close(pooled[b, n], values[b][index[b] == index[b, n]].max(0).values)
    # Gradients flow to every point (mean) and to each cell's maximum (max).
    values.requires_grad_(True)
    (scatter_mean(values, index, 9).sum() + pool_max(values, occupied_cells(index)).sum()).backward()
    assert values.grad is not None and (values.grad != 0).all()


def test_sampling_is_bilinear_with_border_padding() -> None:
    plane = torch.arange(16.0).view(1, 1, 4, 4)  # value = ix + 4 iy at cell (ix, iy)
    # A point whose plane coordinates land exactly on cell centres reads that cell's value.
    u = torch.tensor([0.0, 1 / 3, 2 / 3, 1 - 1e-5])  # align_corners: cell k at k / (R - 1)
    points = torch.zeros(1, 4, 3)
    points[0, :, 0] = (u - 0.5) * 1.10001
    points[0, :, 2] = (u[[1, 1, 1, 1]] - 0.5) * 1.10001
    sampled = sample_features({"xz": plane}, points)[0, 0]
    torch.testing.assert_close(sampled, torch.tensor([4.0, 5.0, 6.0, 7.0 - 3e-5]), atol=1e-3, rtol=0)


@pytest.mark.parametrize("arch", LOCAL_ARCHS)
def test_fixed_decoder_matches_the_network_with_gradients(arch: str) -> None:
    model = randomized_model(small_config(arch))
    inputs = example_input(model.config.modality, 1)
    with torch.no_grad():
        features = model.encode(inputs)
        points = torch.rand(3000, 3) * 1.2 - 0.6  # some outside the box: border padding
        reference = model.decode(points[None], features)[0]
        fixed = FixedLocalDecoder(model.decoder, features, slice_rows=700)
        torch.testing.assert_close(fixed(points), reference, rtol=1e-4, atol=1e-4)
        assert fixed(points[:0]).shape == (0,)
    points.requires_grad_(True)
    grad_fixed = torch.autograd.grad(fixed(points).sum(), points)[0]
    grad_reference = torch.autograd.grad(model.decode(points[None], features)[0].sum(), points)[0]
    torch.testing.assert_close(grad_fixed, grad_reference, rtol=1e-3, atol=1e-4)
    assert grad_fixed.abs().sum() > 0


def test_a_point_sees_only_its_neighbourhood() -> None:
    """Moving input points far away leaves a local network's logits near the other points unchanged
    (beyond the U-Net's reach), which a global code cannot do. Planes: the 2D U-Net has no normalisation
    (the 3D one's group norm makes the grid variant depend on the whole grid a little)."""
    config = ModelConfig("convonet-pointcloud-3plane", c_dim=8, hidden_size=8, encoder_hidden=8,
                         feature_resolution=16, unet_depth=1, unet_filters=8)  # one level: two 3x3 convs
    model = randomized_model(config)
    generator = torch.Generator().manual_seed(1)
    near = torch.rand(1, 200, 3, generator=generator) * 0.2 - 0.45  # a corner of the box
    far = torch.rand(1, 200, 3, generator=generator) * 0.2 + 0.25  # the opposite corner
    queries = torch.rand(1, 100, 3, generator=generator) * 0.1 - 0.4
    with torch.no_grad():
        before = model(queries, torch.cat([near, far], 1))
        after = model(queries, torch.cat([near, far + torch.tensor([0.0, 0.0, -0.1])], 1))
        moved_near = model(queries, torch.cat([near + 0.03, far], 1))
    torch.testing.assert_close(after, before)
    assert not torch.allclose(moved_near, before)


def _random_local_network(arch: str) -> tuple[Weights, PreparedInput]:
    """A random local network whose surface crosses the box, and an input prepared for it."""
    model = randomized_model(small_config(arch))
    modality = model.config.modality
    if modality == "pointcloud":
        cloud = np.random.default_rng(0).normal(size=(5000, 3)) * [1.0, 2.0, 0.5] + 7.0
        prepared = prepare_for_network(model.config, modality, cloud, seed=3)
    else:
        grid = np.zeros((32,) * 3, bool)
        grid[6:26, 10:22, 4:28] = True
        prepared = prepare_voxels(grid)
    centre_logits(model, torch.from_numpy(prepared.array)[None])
    return Weights(model.config, model.state_dict(), 0.5, {"summary": "random local network"}), prepared


@pytest.mark.parametrize("arch", ["convonet-pointcloud-3plane", "convonet-voxels-grid"])
def test_generation_with_normals_and_refinement(arch: str) -> None:
    weights, prepared = _random_local_network(arch)
    shape = Reconstructor(weights, "cpu").encode(prepared)
    mesh = shape.extract(ExtractionSettings(threshold=0.5, resolution=32, normals=True))
    assert len(mesh.faces) > 100 and mesh.normals is not None
    assert np.isfinite(mesh.normals).all() and np.allclose(np.linalg.norm(mesh.normals, axis=1), 1, atol=1e-3)
    refined = shape.extract(ExtractionSettings(threshold=0.5, resolution=32, refine_steps=3))
    assert refined.faces.shape == mesh.faces.shape
    moved = np.abs(refined.vertices - mesh.vertices).max()
    assert 0 < moved < 0.05 * prepared.scale  # refinement moved vertices a little, through the sampled features
    # Another threshold reuses the values evaluated so far.
    again = shape.extract(ExtractionSettings(threshold=0.55, resolution=32))
    assert again.stats["points_reused"] > 0


def test_local_point_clouds_take_what_the_user_has() -> None:
    local = small_config("convonet-pointcloud-3plane")
    cloud = np.random.default_rng(0).random((MAX_LOCAL_INPUT_POINTS + 5000, 3))
    dense = prepare_for_network(local, "pointcloud", cloud)
    assert dense.array.shape == (MAX_LOCAL_INPUT_POINTS, 3)
    assert dense.info == {"input_points_given": MAX_LOCAL_INPUT_POINTS + 5000,
                          "input_points_used": MAX_LOCAL_INPUT_POINTS, "input_points_dropped": 0}
    sparse = prepare_for_network(local, "pointcloud", cloud[:300])
    assert sparse.array.shape == (300, 3)  # every point, none repeated
    assert len(np.unique(sparse.array, axis=0)) == 300
    assert prepare_for_network(local, "pointcloud", cloud, input_points=1000).array.shape == (1000, 3)
    # A global network keeps its own count, repeating points where there are fewer.
    glob = small_config("onet-pointcloud")
    assert prepare_for_network(glob, "pointcloud", cloud[:100]).array.shape == (glob.n_input_points, 3)
    # Non-finite points are dropped from what is sampled, and the box is that of the finite ones.
    holes = cloud[:400].copy()
    holes[::2] = np.nan
    prepared = prepare_for_network(local, "pointcloud", holes)
    assert prepared.array.shape == (200, 3) and np.isfinite(prepared.array).all()


def test_cli_input_points_and_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    config = small_config("convonet-pointcloud-3plane")
    model = randomized_model(config)
    cloud = np.random.default_rng(2).random((2500, 3)).astype(np.float32)
    prepared = prepare_for_network(config, "pointcloud", cloud)
    centre_logits(model, torch.from_numpy(prepared.array)[None])
    save_weights(tmp_path / "local.safetensors", Weights(config, model.state_dict(), 0.5, {}))
    np.save(tmp_path / "cloud.npy", cloud)
    for requested, used in ((0, 2500), (400, 400)):
        assert cli_main(["reconstruct", str(tmp_path / "cloud.npy"), "-o", str(tmp_path / "out.obj"), "--weights",
                         str(tmp_path / "local.safetensors"), "--resolution", "32", "--input-points", str(requested),
                         "--json", "--quiet"]) == 0
        stats = json.loads(capsys.readouterr().out)
        assert stats["input_points_given"] == 2500 and stats["input_points_used"] == used


def test_a_huge_cloud_file_is_subsampled_without_loading_it_whole(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A .npy cloud is memory-mapped and only the kept points are copied; the user is told how many."""
    from blender_occnet.occnet.meshio import read_points

    cloud = np.random.default_rng(4).normal(size=(3_000_000, 3)).astype(np.float32)
    cloud /= np.linalg.norm(cloud, axis=1, keepdims=True)  # a surface, as scans are: no stray points
    np.save(tmp_path / "scan.npy", cloud)
    mapped = read_points(tmp_path / "scan.npy")
    assert isinstance(mapped, np.memmap) or isinstance(getattr(mapped, "base", None), np.memmap)
    config = small_config("convonet-pointcloud-3plane")
    prepared = prepare_for_network(config, "pointcloud", tmp_path / "scan.npy", seed=1)
    assert prepared.info == {"input_points_given": 3_000_000, "input_points_used": MAX_LOCAL_INPUT_POINTS,
                             "input_points_dropped": 0}
    # The box is that of all points, found in chunks.
    assert np.allclose(prepared.loc, (cloud.min(0) + cloud.max(0)) / 2, atol=1e-5)
    assert len(np.unique(prepared.array, axis=0)) == MAX_LOCAL_INPUT_POINTS  # drawn without repeats
    model = randomized_model(config)
    centre_logits(model, torch.from_numpy(prepared.array)[None])
    save_weights(tmp_path / "local.safetensors", Weights(config, model.state_dict(), 0.5, {}))
    assert cli_main(["reconstruct", str(tmp_path / "scan.npy"), "-o", str(tmp_path / "scan.obj"), "--weights",
                     str(tmp_path / "local.safetensors"), "--resolution", "32"]) == 0
    assert "given 20,000 of the 3,000,000 input points" in capsys.readouterr().out


def test_cli_drops_and_counts_non_finite_points_and_pools_fine_voxel_grids(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The rules the add-on applies too: non-finite points left out and counted; a voxel cube whose side
    is a multiple of 32 pooled to 32^3 (any other size refused with the same message as in Blender)."""
    from blender_occnet.common.binvox import write_binvox

    config = small_config("convonet-pointcloud-3plane")
    model = randomized_model(config)
    cloud = np.random.default_rng(3).random((500, 3)).astype(np.float32)
    centre_logits(model, torch.from_numpy(prepare_for_network(config, "pointcloud", cloud).array)[None])
    save_weights(tmp_path / "pc.safetensors", Weights(config, model.state_dict(), 0.5, {}))
    cloud[:4] = np.nan
    np.save(tmp_path / "scan.npy", cloud)
    assert cli_main(["reconstruct", str(tmp_path / "scan.npy"), "-o", str(tmp_path / "scan.obj"), "--weights",
                     str(tmp_path / "pc.safetensors"), "--resolution", "32"]) == 0
    assert "4 input point(s) with NaN or infinite coordinates left out" in capsys.readouterr().out

    voxel_config = small_config("convonet-voxels-3plane")
    voxel_model = randomized_model(voxel_config)
    fine = np.zeros((64,) * 3, bool)
    fine[10:50, 20:44, 8:56] = True
    centre_logits(voxel_model, torch.from_numpy(prepare_voxels(fine).array)[None])
    save_weights(tmp_path / "vox.safetensors", Weights(voxel_config, voxel_model.state_dict(), 0.5, {}))
    assert prepare_voxels(fine).array.shape == (32, 32, 32)
    assert prepare_voxels(fine).array.sum() == 20 * 12 * 24
    write_binvox(tmp_path / "fine.binvox", fine)
    assert cli_main(["reconstruct", str(tmp_path / "fine.binvox"), "-o", str(tmp_path / "fine.obj"), "--weights",
                     str(tmp_path / "vox.safetensors"), "--resolution", "32", "--quiet"]) == 0
    write_binvox(tmp_path / "odd.binvox", np.ones((48,) * 3, bool))
    assert cli_main(["reconstruct", str(tmp_path / "odd.binvox"), "-o", str(tmp_path / "odd.obj"), "--weights",
                     str(tmp_path / "vox.safetensors"), "--quiet"]) == 1
    assert "48x48x48; the network takes 32x32x32 (or a cube whose side is a multiple of 32" in \
        capsys.readouterr().err


@pytest.mark.parametrize("arch", ["convonet-pointcloud-3plane", "convonet-voxels-grid"])
def test_refinement_moves_vertices_as_the_reference_does(arch: str) -> None:
    """Our refinement holds the normal target constant (one backward pass fewer); the vertices must still go
    where the reference's second-order loss sends them."""
    weights, prepared = _random_local_network(arch)
    shape = EncodedShape(Reconstructor(weights, "cpu").encode(prepared).decode)  # box frame in and out
    mesh = shape.extract(ExtractionSettings(threshold=0.5, resolution=32))
    settings = ExtractionSettings(threshold=0.5, resolution=32, refine_steps=5)
    ours = shape._refine(mesh.vertices, mesh.faces, settings, lambda stage, fraction: None, None)
    reference = reference_refinement(shape.decode, mesh.vertices, mesh.faces, 5, 0.5, settings.seed)
    moved = np.linalg.norm(reference - mesh.vertices, axis=1)
    ours_moved = np.linalg.norm(ours - mesh.vertices, axis=1)
    assert moved.mean() > 1e-3
    # RMSprop scales each coordinate's step by its own gradient history, so vertices whose gradient is
    # near zero wander either way; the bulk must go the same distance in the same direction.
    assert np.median(np.linalg.norm(ours - reference, axis=1)) < 0.25 * moved.mean()
    cosine = ((ours - mesh.vertices) * (reference - mesh.vertices)).sum(1) / (moved * ours_moved + 1e-12)
    assert np.median(cosine) > 0.95
