"""Training the local-feature networks: input sizes per step, voxel shifts with exact labels, a schedule
over the time budget, the threshold chosen on validation, exact resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from blender_occnet.occnet.checkpoints import load_weights
from training.config import Config, load_config
from training.data import ShapeDataset, shift_within_grid
from training.export import export_run
from training.train import CHECKPOINT, input_points_of_step, learning_rate, load_checkpoint, train

LOCAL_POINTCLOUD = {"arch": "convonet-pointcloud-3plane", "c_dim": 8, "hidden_size": 8, "encoder_hidden": 8,
                    "n_input_points": 200, "feature_resolution": 8, "unet_depth": 2, "unet_filters": 8}


def local_config(tmp_path: Path, dataset: Path, model: dict | None = None, data: dict | None = None,
                 **training: object) -> Config:
    return Config.from_dict({
        "data": {"path": str(dataset), "val_points": 2048, "points_per_shape": 256, **(data or {})},
        "model": model or LOCAL_POINTCLOUD,
        "training": {"out_dir": str(tmp_path / "run"), "batch_size": 4, "lr": 1e-3, "max_steps": 8,
                     "validate_every": 4, "checkpoint_every": 2, "log_every": 2, **training}})


def test_the_bundled_local_configs_load() -> None:
    for name in ("pointcloud_local.yaml", "voxels_local.yaml"):
        config = load_config(Path(__file__).resolve().parents[2] / "training" / "configs" / name)
        assert config.model_config.local and config.training.threshold_candidates


def test_cosine_runs_over_the_time_budget_too(tmp_path: Path) -> None:
    config = local_config(tmp_path, tmp_path, lr_schedule="cosine", lr=1e-3, lr_min=1e-5, max_steps=100_000,
                          max_minutes=10.0)
    assert learning_rate(config, 0, 0.0) == pytest.approx(1e-3)
    assert learning_rate(config, 10, 300.0) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))  # half the minutes
    assert learning_rate(config, 20, 600.0) == pytest.approx(1e-5)  # the budget spent: the floor
    steps_only = local_config(tmp_path, tmp_path, lr_schedule="cosine", lr=1e-3, lr_min=1e-5, max_steps=100)
    assert learning_rate(steps_only, 50, 1e6) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))


def test_input_size_per_step_is_seeded_and_in_range(tmp_path: Path) -> None:
    config = local_config(tmp_path, tmp_path, data={"input_points_range": [300, 5000]})
    sizes = [input_points_of_step(config, step) for step in range(400)]
    assert sizes == [input_points_of_step(config, step) for step in range(400)]  # resume draws the same
    assert min(sizes) >= 300 and max(sizes) <= 5000
    assert np.median(sizes) == pytest.approx(np.sqrt(300 * 5000), rel=0.25)  # log-uniform
    assert input_points_of_step(local_config(tmp_path, tmp_path), 3) is None


def test_voxel_shift_keeps_labels_exact(tiny_dataset: Path) -> None:
    grid = np.zeros((32,) * 3, np.float32)
    grid[4:10, 0:32, 20:31] = 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        shifted, offset = shift_within_grid(grid, rng)
        assert shifted.sum() == grid.sum() and offset[1] == 0  # filled along y: no room there
        assert np.array_equal(np.roll(grid, tuple(int(o) for o in offset), axis=(0, 1, 2)), shifted)
    dataset = ShapeDataset(tiny_dataset, "train", "voxels", points_per_shape=4000, voxel_shift=1.0)
    item = dataset.item(0, np.random.default_rng(5))
    # Every labelled point inside the (shifted) grid's occupied cells away from the surface agrees.
    cells = np.floor((item["points"] + 0.5) * 32).astype(int)
    inside = ((cells >= 1) & (cells < 31)).all(axis=1)
    occupied = item["inputs"][cells[inside, 0], cells[inside, 1], cells[inside, 2]] > 0.5
    agree = (occupied == (item["occ"][inside] > 0.5)).mean()
    assert agree > 0.9


def test_local_run_learns_picks_a_threshold_and_resumes_exactly(tmp_path: Path, tiny_dataset: Path) -> None:
    options = dict(data={"input_points_range": [50, 400]}, threshold_candidates=[0.3, 0.4, 0.5, 0.6])
    config = local_config(tmp_path / "a", tiny_dataset, max_steps=40, validate_every=20, lr=3e-3, **options)
    summary = train(config, progress=False)
    assert summary["best_iou"] > 0.4  # all inside would score about 0.15
    saved = load_checkpoint(Path(config.training.out_dir) / "best.pt")
    threshold = saved["state"]["best_threshold"]
    assert threshold in (0.2, 0.3, 0.4, 0.5, 0.6)
    exported = export_run(config.training.out_dir, tmp_path / "local.safetensors")
    assert exported.threshold == threshold and load_weights(tmp_path / "local.safetensors").config.local

    straight = local_config(tmp_path / "b", tiny_dataset, max_steps=6, **options)
    train(straight, progress=False)
    train(local_config(tmp_path / "c", tiny_dataset, max_steps=3, **options), progress=False)
    train(local_config(tmp_path / "c", tiny_dataset, max_steps=6, **options), resume=True, progress=False)
    a = load_checkpoint(tmp_path / "b" / "run" / CHECKPOINT)
    b = load_checkpoint(tmp_path / "c" / "run" / CHECKPOINT)
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key


def test_local_voxel_run(tmp_path: Path, tiny_dataset: Path) -> None:
    model = {"arch": "convonet-voxels-3plane", "c_dim": 8, "hidden_size": 8, "feature_resolution": 16,
             "unet_depth": 2, "unet_filters": 8}
    config = local_config(tmp_path, tiny_dataset, model=model, data={"voxel_shift": 0.5}, max_steps=40,
                          validate_every=20, lr=3e-3)
    assert train(config, progress=False)["best_iou"] > 0.4


def test_resume_clears_debris_and_repeats_no_log_rows(tmp_path: Path, tiny_dataset: Path) -> None:
    """After a kill mid-checkpoint: the stale .part file is removed and the rows logged after the last
    checkpoint (whose steps are done again) are dropped, so every step appears once."""
    config = local_config(tmp_path, tiny_dataset, max_steps=6, checkpoint_every=4, log_every=1, validate_every=100)
    train(config, progress=False)
    run = Path(config.training.out_dir)
    checkpoint = load_checkpoint(run / CHECKPOINT)
    # What a kill at step 6 before its checkpoint leaves: the checkpoint of step 4, rows up to 6, a .part file.
    checkpoint["step"] = 4
    torch.save(checkpoint, run / CHECKPOINT)
    (run / ".checkpoint.pt.abc123.part").write_bytes(b"half a checkpoint")
    train(local_config(tmp_path, tiny_dataset, max_steps=8, checkpoint_every=4, log_every=1, validate_every=100),
          resume=True, progress=False)
    assert not list(run.glob(".*.part"))
    steps = [int(line.split(",")[0]) for line in (run / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 9))


def test_a_config_sets_the_share_of_partial_scans() -> None:
    """data.scan_partial: the share of scan-like inputs seen from only one to three directions (the one-sided-view
    run, pointcloud_wide_partial.yaml); unset, the scans' own default; outside [0, 1], a one-line error."""
    from blender_occnet.common.errors import InputError
    from training.scans import ScanSettings

    root = Path(__file__).resolve().parents[2] / "training" / "configs"
    assert load_config(root / "pointcloud_wide.yaml").data.scan_settings() == ScanSettings()
    partial = load_config(root / "pointcloud_wide_partial.yaml").data
    assert partial.scan_settings().partial == 0.7 and partial.scan_like == 0.6
    for wrong in (1.5, "half", True):
        with pytest.raises(InputError, match="scan_partial"):
            Config.from_dict({"data": {"scan_partial": wrong}})


def test_the_wide_config_and_a_run_on_scan_like_inputs(tmp_path: Path, tiny_dataset: Path) -> None:
    """pointcloud_wide.yaml (issue 23) continues the bundled network's architecture on scan-like inputs; a run
    with every input degraded trains, and the command line starts one from exported weights."""
    import yaml

    from training.train import main as train_main

    root = Path(__file__).resolve().parents[2]
    wide = load_config(root / "training" / "configs" / "pointcloud_wide.yaml")
    bundled = load_weights(root / "blender_occnet" / "weights" / "pointcloud.safetensors")
    assert wide.model_config == bundled.config and wide.data.scan_like == 0.5
    assert wide.data.input_points_range == [300, 20000]
    from training.defaults import CONFIGS, WEIGHTS_DIR

    for name, config_file in CONFIGS.items():  # each bundled file is its configuration's network
        config = load_config(root / "training" / "configs" / config_file)
        assert config.model_config == load_weights(WEIGHTS_DIR / f"{name}.safetensors").config, name
    run = local_config(tmp_path, tiny_dataset, data={"scan_like": 1.0, "input_points_range": [100, 400]},
                       max_steps=2, validate_every=2)
    assert train(run, progress=False)["step"] == 2
    export_run(run.training.out_dir, tmp_path / "w.safetensors")
    from blender_occnet.common.policy import ENSEMBLE_NETWORK
    from training.evaluate import evaluate

    # The evaluator scores the network as a reconstruction runs it (shifted encodings) unless told otherwise.
    scored = {size: evaluate(tmp_path / "w.safetensors", tiny_dataset, resolution=32, surface_samples=2000,
                             progress=False, ensemble=size) for size in (0, 1)}
    assert scored[0]["ensemble"] == ENSEMBLE_NETWORK and scored[1]["ensemble"] == 1
    values = run.to_dict()
    values["training"]["out_dir"] = str(tmp_path / "cli_run")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(values))
    assert train_main([str(tmp_path / "run.yaml"), "--init-weights", str(tmp_path / "w.safetensors"), "--quiet",
                       "--set", "training.max_steps=1"]) == 0
