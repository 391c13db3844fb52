"""The weights that ship in the extension: one per modality (point clouds two: the fine planes for dense clouds),
within the size budget, with model cards."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from blender_occnet.common.weights_catalogue import BUNDLED_DIR
from blender_occnet.occnet.checkpoints import load_weights
from blender_occnet.occnet.generation import ExtractionSettings, Reconstructor
from blender_occnet.occnet.preprocess import prepare_for_network, prepare_voxels
from blender_occnet.occnet.registry import FINE_SPACING, cloud_spacing, finer_weights, list_weights

BUDGET_BYTES = 40 * 1024 * 1024  # issue 7: all of them together


def test_every_modality_has_usable_weights_within_the_budget() -> None:
    bundled = [info for info in list_weights() if info.path.parent == BUNDLED_DIR]
    assert all(info.usable for info in bundled), [info.error for info in bundled]
    assert sorted(info.name for info in bundled) == ["image", "pointcloud", "pointcloud_fine", "voxels"]
    assert sorted(info.modality for info in bundled) == ["image", "pointcloud", "pointcloud", "voxels"]
    assert sum(info.path.stat().st_size for info in bundled) <= BUDGET_BYTES


def test_model_cards_say_what_the_weights_are_and_how_good() -> None:
    for info in list_weights():
        if info.path.parent != BUNDLED_DIR:
            continue
        weights = load_weights(info.path)
        card = weights.card
        assert card["steps"] > 0 and card["training_minutes"] > 0 and card["learning_curve"], info.name
        assert "smaller" in card["note"] or "from scratch" in card["note"] or "Convolutional" in card["note"]
        assert card["reproduce"] == "python -m training.defaults"
        test = card["test_metrics"]
        assert test["split"] == "test" and test["shapes"] >= 50
        assert 0.0 < test["iou"] < 1.0 and test["chamfer_l1"] > 0 and 0.0 < test["f_score"] <= 1.0
        assert all(t.dtype.is_floating_point is False or str(t.dtype) == "torch.float32"
                   for t in weights.state_dict.values())
        assert card.get("frame") == {"up": "+y", "front": "-z"}, info.name
        if info.modality == "pointcloud":  # scored from sparse clouds too
            assert card["test_metrics_sparse"]["input_points"] == 300
        # The wider world: organic shapes scored apart, the procedural-only run continued in the history.
        assert set(card["test_metrics"]["groups"]) == {"man_made", "organic"}, info.name
        assert card["continued_from"]["steps"] > 0, info.name
        if info.modality in ("pointcloud", "voxels"):  # scans: scored from one side
            assert card["test_metrics_partial"]["scan"] == "partial"


def test_point_cloud_and_voxel_weights_are_local_feature_networks() -> None:
    archs = {info.modality: info.arch for info in list_weights() if info.path.parent == BUNDLED_DIR}
    assert archs["pointcloud"].startswith("convonet-") and archs["voxels"].startswith("convonet-")


def test_the_fine_point_cloud_weights_differ_from_the_default_only_in_their_planes() -> None:
    """A request naming no weights is prepared for the default ones, then may go to the fine ones
    (registry.finer_weights): the same input sizing and frame are what make that sound."""
    coarse, fine = (load_weights(BUNDLED_DIR / f"{name}.safetensors") for name in ("pointcloud", "pointcloud_fine"))
    assert (coarse.config.feature_resolution, fine.config.feature_resolution) == (32, 64)
    assert dataclasses.replace(fine.config, feature_resolution=32) == coarse.config
    assert fine.card["frame"] == coarse.card["frame"]
    # What it continued: the default weights' history and then its own run.
    assert fine.card["continued_from"]["steps"] >= coarse.card["continued_from"]["steps"] + coarse.card["steps"]


def _sphere(count: int) -> np.ndarray:
    points = np.random.default_rng(count).normal(size=(count, 3))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_a_dense_cloud_gets_the_fine_weights_and_a_sparse_one_or_a_users_own_default_does_not(
        tmp_path: Path) -> None:
    default = BUNDLED_DIR / "pointcloud.safetensors"
    config = load_weights(default).config
    dense, sparse = (prepare_for_network(config, "pointcloud", _sphere(n)) for n in (8000, 1000))
    assert cloud_spacing(dense.observed) <= FINE_SPACING < cloud_spacing(sparse.observed)
    assert finer_weights(default, dense) == BUNDLED_DIR / "pointcloud_fine.safetensors"
    assert finer_weights(default, sparse) is None
    own = tmp_path / "pointcloud.safetensors"  # a user's own default of the same name is theirs to keep
    shutil.copyfile(default, own)
    assert finer_weights(own, dense) is None
    grid = np.zeros((32,) * 3, bool)
    grid[8:24, 8:24, 8:24] = True
    assert finer_weights(BUNDLED_DIR / "voxels.safetensors", prepare_voxels(grid)) is None


def _grid(*slices: slice) -> np.ndarray:
    grid = np.zeros((32,) * 3, bool)
    grid[slices] = True
    return grid


@pytest.mark.parametrize("name, grid", [
    ("slab on the floor", _grid(slice(None), slice(0, 8), slice(None))),
    ("box in a corner", _grid(slice(20, 30), slice(2, 12), slice(4, 14))),
    ("centred cube", _grid(slice(8, 24), slice(8, 24), slice(8, 24))),
])
def test_bundled_voxel_weights_put_the_shape_where_its_voxels_are(name: str, grid: np.ndarray) -> None:
    """The global-code voxel weights made a slab on the grid's floor fill its whole height and moved a
    cube 0.11 up; the result must lie within a cell of the input's box on every side."""
    weights = load_weights(BUNDLED_DIR / "voxels.safetensors")
    mesh = Reconstructor(weights, "cpu").encode(prepare_voxels(grid)).extract(
        ExtractionSettings(threshold=weights.threshold, resolution=64))
    cells = np.argwhere(grid)
    lo, hi = cells.min(axis=0) / 32 - 0.5, (cells.max(axis=0) + 1) / 32 - 0.5
    assert np.abs(mesh.vertices.min(axis=0) - lo).max() < 1 / 32, name
    assert np.abs(mesh.vertices.max(axis=0) - hi).max() < 1 / 32, name
