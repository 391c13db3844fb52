"""Training: configs, a short real run, exact resume, refusal to clobber a run, two-process DDP, export."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from blender_occnet.common.errors import InputError
from blender_occnet.occnet.checkpoints import load_weights
from training.config import Config, load_config
from training.export import export_run
from training.train import CHECKPOINT, Trainer, load_checkpoint, train

REPO = Path(__file__).resolve().parents[2]


def small_config(tmp_path: Path, dataset: Path, **training: object) -> Config:
    values = {
        "data": {"path": str(dataset), "val_points": 2048, "points_per_shape": 256},
        "model": {"arch": "onet-pointcloud", "c_dim": 16, "hidden_size": 16, "encoder_hidden": 16},
        "training": {"out_dir": str(tmp_path / "run"), "batch_size": 4, "lr": 1e-3, "max_steps": 8,
                     "validate_every": 4, "checkpoint_every": 2, "log_every": 2, **training},
    }
    return Config.from_dict(values)


def test_config_inherits_and_rejects_unknown_keys(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("training:\n  lr: 0.001\n  batch_size: 8\nmodel:\n  arch: onet-voxels\n")
    (tmp_path / "child.yaml").write_text("inherit_from: base.yaml\ntraining:\n  batch_size: 16\n")
    config = load_config(tmp_path / "child.yaml")
    assert config.training.lr == 0.001 and config.training.batch_size == 16 and config.model["arch"] == "onet-voxels"
    assert config.training.max_steps == 100_000  # the built-in default underneath
    (tmp_path / "typo.yaml").write_text("training:\n  learning_rate: 0.1\n")
    with pytest.raises(InputError, match=r"unknown key training\.learning_rate"):
        load_config(tmp_path / "typo.yaml")
    (tmp_path / "typo2.yaml").write_text("trainig:\n  lr: 0.1\n")
    with pytest.raises(InputError, match=r"unknown key trainig \(did you mean training\?\)"):
        load_config(tmp_path / "typo2.yaml")
    (tmp_path / "loop.yaml").write_text("inherit_from: loop.yaml\n")
    with pytest.raises(InputError, match="loops back"):
        load_config(tmp_path / "loop.yaml")
    with pytest.raises(InputError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_short_run_learns_and_exports(tmp_path: Path, tiny_dataset: Path) -> None:
    config = small_config(tmp_path, tiny_dataset, max_steps=40, validate_every=20)
    summary = train(config, progress=False)
    assert summary["step"] == 40 and summary["best_iou"] > 0.2
    run = Path(config.training.out_dir)
    assert (run / "best.pt").exists() and (run / "log.csv").read_text().count("\n") == 1 + 40 // 2
    weights = export_run(run, tmp_path / "w.safetensors")
    reloaded = load_weights(tmp_path / "w.safetensors")
    assert reloaded.config == config.model_config and reloaded.threshold == 0.2
    assert reloaded.card["metrics"]["val_iou"] == round(summary["best_iou"], 4)
    assert [row[0] for row in reloaded.card["learning_curve"]] == [20, 40]
    assert set(weights.state_dict) == set(reloaded.state_dict)


def test_resume_continues_exactly(tmp_path: Path, tiny_dataset: Path) -> None:
    straight = small_config(tmp_path / "a", tiny_dataset, max_steps=8)
    train(straight, progress=False)
    split = small_config(tmp_path / "b", tiny_dataset, max_steps=4)
    train(split, progress=False)
    with pytest.raises(InputError, match="already holds a run; pass --resume"):
        train(split, progress=False)
    train(small_config(tmp_path / "b", tiny_dataset, max_steps=8), resume=True, progress=False)
    a = load_checkpoint(Path(straight.training.out_dir) / CHECKPOINT)
    b = load_checkpoint(Path(split.training.out_dir) / CHECKPOINT)
    assert a["step"] == b["step"] == 8
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key


def test_trainer_resumed_from_its_checkpoint_takes_the_uninterrupted_steps(tmp_path: Path,
                                                                          tiny_dataset: Path) -> None:
    config = small_config(tmp_path, tiny_dataset)
    cpu = torch.device("cpu")
    straight = Trainer(config, cpu)
    losses = [straight.step() for _ in range(6)]
    first = Trainer(config, cpu)
    assert [first.step() for _ in range(3)] == losses[:3]
    first.checkpoint(tmp_path / "three.pt")
    second = Trainer(config, cpu)
    second.resume(tmp_path / "three.pt")
    assert second.steps == 3 and [second.step() for _ in range(3)] == losses[3:]
    assert second.validate() == straight.validate()


def test_bad_dataset_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dataset folder does not exist"):
        train(small_config(tmp_path, tmp_path / "nowhere"), progress=False)
    empty = tmp_path / "empty"
    (empty / "chair").mkdir(parents=True)
    (empty / "chair" / "train.lst").write_text("missing_model\n")
    with pytest.raises(InputError, match=r"no usable pointcloud models.*missing points\.npz"):
        train(small_config(tmp_path, empty), progress=False)


def test_two_process_ddp_ends_with_identical_weights(tmp_path: Path, tiny_dataset: Path) -> None:
    config = small_config(tmp_path, tiny_dataset, max_steps=4, validate_every=4)
    path = tmp_path / "ddp.yaml"
    path.write_text(json.dumps(config.to_dict()))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                             "2", "-m", "training.train", str(path), "--quiet"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((Path(config.training.out_dir) / "summary.json").read_text())
    assert summary["ranks_in_sync"] is True and summary["step"] == 4


def test_evaluate_reports_every_metric_per_category(tmp_path: Path, tiny_dataset: Path) -> None:
    from training.evaluate import evaluate, format_table

    config = small_config(tmp_path, tiny_dataset, max_steps=30, validate_every=30)
    train(config, progress=False)
    export_run(config.training.out_dir, tmp_path / "w.safetensors")
    report = evaluate(tmp_path / "w.safetensors", tiny_dataset, resolution=32, surface_samples=5000, progress=False)
    assert set(report["categories"]) == {"sphere", "box"}
    assert all(v["shapes"] == 1 for v in report["categories"].values())
    for key in ("iou", "chamfer_l1", "chamfer_l1_x10", "normal_consistency", "f_score"):
        assert key in report["mean"]
    assert 0.0 <= report["mean"]["iou"] <= 1.0
    table = format_table(report)
    assert "sphere" in table and "mean" in table
    refined = evaluate(tmp_path / "w.safetensors", tiny_dataset, resolution=32, surface_samples=5000, progress=False,
                       refine_steps=3)
    assert refined["refine_steps"] == 3 and report["refine_steps"] == 0
    assert refined["mean"]["chamfer_l1"] != report["mean"]["chamfer_l1"]  # the vertices moved


def test_a_new_run_can_start_from_exported_weights(tmp_path: Path, tiny_dataset: Path) -> None:
    first = small_config(tmp_path / "a", tiny_dataset, max_steps=4)
    train(first, progress=False)
    export_run(first.training.out_dir, tmp_path / "w.safetensors")
    second = small_config(tmp_path / "b", tiny_dataset, max_steps=1, validate_every=1)
    train(second, progress=False, init_weights=tmp_path / "w.safetensors")
    fresh = small_config(tmp_path / "c", tiny_dataset, max_steps=1, validate_every=1)
    train(fresh, progress=False)
    start = load_weights(tmp_path / "w.safetensors").state_dict

    def distance(config: Config) -> float:
        state = load_checkpoint(Path(config.training.out_dir) / CHECKPOINT)["model"]
        return sum(float((state[k].float() - start[k].float()).norm()) for k in start)

    assert distance(second) < 0.5 * distance(fresh)  # one step away from the start, not from scratch
    other = small_config(tmp_path / "d", tiny_dataset, max_steps=1)
    other.model["hidden_size"] = 8
    with pytest.raises(InputError, match="the config asks for"):
        train(other, progress=False, init_weights=tmp_path / "w.safetensors")


def test_a_convolutional_network_starts_on_larger_planes_from_smaller_planes_weights(tmp_path: Path,
                                                                                    tiny_dataset: Path) -> None:
    """feature_resolution shapes no tensor: 8x8-plane weights start a 16x16-plane run (issue 23's 64x64 trial)."""
    def planes(folder: str, resolution: int, steps: int = 1) -> Config:
        config = small_config(tmp_path / folder, tiny_dataset, max_steps=steps, validate_every=steps)
        config.model.update(arch="convonet-pointcloud-3plane", feature_resolution=resolution, unet_depth=2,
                            unet_filters=8, n_input_points=256)
        return config

    small = planes("small", 8, steps=10)  # far enough from the (seeded) initialisation to tell apart
    train(small, progress=False)
    export_run(small.training.out_dir, tmp_path / "w8.safetensors")
    larger = planes("larger", 16)
    train(larger, progress=False, init_weights=tmp_path / "w8.safetensors")
    fresh = planes("fresh", 16)
    train(fresh, progress=False)
    start = load_weights(tmp_path / "w8.safetensors").state_dict

    def distance(config: Config) -> float:
        state = load_checkpoint(Path(config.training.out_dir) / CHECKPOINT)["model"]
        return sum(float((state[k].float() - start[k].float()).norm()) for k in start)

    assert distance(larger) < 0.5 * distance(fresh)  # one step from the 8x8 weights, not from scratch
    wider = planes("wider", 16)
    wider.model["unet_filters"] = 16  # shapes tensors: refused
    with pytest.raises(InputError, match="the config asks for"):
        train(wider, progress=False, init_weights=tmp_path / "w8.safetensors")


def test_default_weights_card_keeps_the_history_and_test_metrics(tmp_path: Path, tiny_dataset: Path) -> None:
    """training.defaults' export: a run that started from earlier weights carries their steps, minutes and
    learning curve forward, plus the evaluation command's test metrics; a second round adds up."""
    from training.defaults import _earlier_training, export_default

    config = small_config(tmp_path, tiny_dataset, max_steps=8)
    train(config, progress=False)
    target = tmp_path / "pointcloud.safetensors"
    earlier = {"steps": 100, "training_minutes": 5.0, "learning_curve": [[100, 0.3, 5.0]]}
    export_default("pointcloud", Path(config.training.out_dir), target, earlier, str(tiny_dataset), 1)
    card = load_weights(target).card
    assert card["continued_from"] == earlier and card["steps"] in (4, 8)  # the best validation's step
    assert "Convolutional Occupancy Network" in card["note"] and card["frame"] == {"up": "+y", "front": "-z"}
    metrics = card["test_metrics"]
    assert card["test_metrics_sparse"]["input_points"] == 300  # point clouds are scored from sparse inputs too
    assert card["test_metrics_partial"]["scan"] == "partial"  # and from one side
    assert "groups" not in metrics  # no organic category in this dataset
    assert metrics["shapes"] == 2 and {"iou", "chamfer_l1", "normal_consistency", "f_score"} <= set(metrics)
    assert 0.0 <= metrics["iou"] <= 1.0
    history = _earlier_training(target)
    assert history["steps"] == 100 + card["steps"] and history["learning_curve"][0] == [100, 0.3, 5.0]
    assert len(history["learning_curve"]) == 1 + len(card["learning_curve"])


def test_a_card_of_a_collection_with_organic_shapes_keeps_each_group_s_means() -> None:
    from training.defaults import _card_metrics

    def scores(iou: float) -> dict:
        return {"shapes": 2, "iou": iou, "f_score": iou / 2}

    report = {"resolution": 128, "threshold": 0.3, "input_points": 3000, "ensemble": 4,
              "categories": {"chair": scores(0.8), "car": scores(0.6), "blob": scores(0.9)},
              "mean": {"iou": 0.7667, "f_score": 0.3833}}
    card = _card_metrics(report)
    assert card["groups"] == {"man_made": {"iou": 0.7, "f_score": 0.35}, "organic": {"iou": 0.9, "f_score": 0.45}}
    assert card["input_points"] == 3000 and card["shapes"] == 6 and card["iou_per_category"]["blob"] == 0.9
    assert card["ensemble"] == 4  # the card says how many shifted encodings its figures averaged


def test_resume_refuses_a_damaged_or_hostile_checkpoint_with_what_to_do(tmp_path: Path, tiny_dataset: Path) -> None:
    import os
    import pickle

    config = small_config(tmp_path / "run", tiny_dataset, max_steps=2)
    train(config, progress=False)
    checkpoint = Path(config.training.out_dir) / CHECKPOINT
    whole = checkpoint.read_bytes()
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    for damage, says in ((whole[: len(whole) // 3], "not a usable training checkpoint"),
                         (pickle.dumps(Exploit()), "asks to load Python objects"),
                         (b"", "not a usable training checkpoint")):
        checkpoint.write_bytes(damage)
        with pytest.raises(InputError, match=says) as caught:
            train(small_config(tmp_path / "run", tiny_dataset, max_steps=4), resume=True, progress=False)
        assert "weights_only=False" not in str(caught.value) and "--overwrite" in str(caught.value)
        assert not marker.exists()


def run_cli(config: Config, path: Path, *args: str) -> subprocess.CompletedProcess:
    path.write_text(json.dumps(config.to_dict()))
    return subprocess.run([sys.executable, "-m", "training.train", str(path), "--quiet", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_resume_on_a_checkpoint_of_other_shapes_is_one_line(tmp_path: Path, tiny_dataset: Path) -> None:
    """Issue 24 item 8: --resume with a config wider than the run's checkpoint was an 18-line traceback."""
    train(small_config(tmp_path, tiny_dataset, max_steps=2), progress=False)
    wider = small_config(tmp_path, tiny_dataset, max_steps=4)
    wider.model["hidden_size"] = 32
    done = run_cli(wider, tmp_path / "wider.yaml", "--resume")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {Path(wider.training.out_dir) / CHECKPOINT}: ") and "has shape" in last
    assert "resume with that config, or start again with --overwrite" in last
    assert load_checkpoint(Path(wider.training.out_dir) / CHECKPOINT)["step"] == 2  # left as it was


def test_a_full_disk_while_saving_a_checkpoint_is_one_line(tmp_path: Path, tiny_dataset: Path) -> None:
    """Issue 24 item 8: torch.save on a full disk said only `inline_container.cc:672 ... unexpected pos`, in a
    traceback. A real small file system fills up under the run folder."""
    from tests.helpers import small_disk

    with small_disk(tmp_path / "disk") as disk:
        config = small_config(disk, tiny_dataset, max_steps=2)
        done = run_cli(config, tmp_path / "run.yaml")
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
        last = done.stderr.strip().splitlines()[-1]
        run = Path(config.training.out_dir)
        assert re.match(rf"error: {re.escape(str(run))}/(best|checkpoint)\.pt: not written: No space left on device",
                        last), last
        assert not list(run.glob(".*.part")) and not list(run.glob("*.pt"))  # nothing partial left
