"""The weights that ship in the extension: one per modality, within the size budget, with model cards."""

from __future__ import annotations

from blender_occnet.occnet.checkpoints import load_weights
from blender_occnet.occnet.registry import BUNDLED_DIR, list_weights

BUDGET_BYTES = 40 * 1024 * 1024  # issue 7: all three together


def test_every_modality_has_usable_weights_within_the_budget() -> None:
    bundled = [info for info in list_weights() if info.path.parent == BUNDLED_DIR]
    assert all(info.usable for info in bundled), [info.error for info in bundled]
    assert sorted(info.modality for info in bundled) == ["image", "pointcloud", "voxels"]
    assert sum(info.path.stat().st_size for info in bundled) <= BUDGET_BYTES


def test_model_cards_say_what_the_weights_are_and_how_good() -> None:
    for info in list_weights():
        if info.path.parent != BUNDLED_DIR:
            continue
        weights = load_weights(info.path)
        card = weights.card
        assert card["steps"] > 0 and card["training_minutes"] > 0 and card["learning_curve"], info.name
        assert "smaller" in card["note"] or "from scratch" in card["note"]
        assert card["reproduce"] == "python -m training.defaults"
        test = card["test_metrics"]
        assert test["split"] == "test" and test["shapes"] >= 50
        assert 0.0 < test["iou"] < 1.0 and test["chamfer_l1"] > 0 and 0.0 < test["f_score"] <= 1.0
        assert all(t.dtype.is_floating_point is False or str(t.dtype) == "torch.float32"
                   for t in weights.state_dict.values())
