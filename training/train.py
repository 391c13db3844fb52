"""`python -m training.train CONFIG.yaml [--resume | --overwrite]`: train an Occupancy Network.

The reference's loss (binary cross-entropy with logits, summed over a shape's points, averaged over
shapes) and optimiser (Adam); validation IoU every N steps with the best checkpoint kept; atomic
checkpoints that `--resume` continues exactly (model, optimiser, step, sampling position); stopping
by maximum steps, wall time or patience. Under `torchrun --nproc_per_node N` it trains with
DistributedDataParallel (NCCL on GPUs, Gloo on CPUs): each process takes its share of every batch and
rank 0 alone writes checkpoints and logs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import json
import logging
import math
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from blender_occnet.common.errors import InputError, OccNetError
from blender_occnet.common.files import atomic_output
from blender_occnet.occnet.checkpoints import check_state_dict
from blender_occnet.occnet.generation import resolve_device
from blender_occnet.occnet.model import Network, build_model

from .config import Config, load_config
from .data import ShapeDataset, collate

log = logging.getLogger("training")
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
# Model settings that shape no tensor: --init-weights may start a run whose values differ.
SHAPE_FREE = ("feature_resolution", "n_input_points")


# ------------------------------------------------------------------------------------------- helpers


class Distributed:
    """Rank and world size; a no-op outside torchrun."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1

    def setup(self, device: torch.device) -> torch.device:
        """Join the process group; the device of this process (its own GPU under torchrun)."""
        if device.type == "cuda" and self.enabled:
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        if self.enabled:
            backend = "nccl" if device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)
        return device

    def finish(self) -> None:
        if self.enabled:
            self.barrier()  # leave together: a peer tearing down first can abort the other inside gloo
            torch.distributed.destroy_process_group()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def broadcast_flag(self, flag: bool, device: torch.device) -> bool:
        """Rank 0's decision (stop or go on) for every rank."""
        if not self.enabled:
            return flag
        value = torch.tensor([1 if flag else 0], device=device)
        torch.distributed.broadcast(value, 0)
        return bool(value.item())


def learning_rate(config: Config, step: int, seconds: float = 0.0) -> float:
    """The schedule's rate at `step` after `seconds` of training: cosine decay over whichever budget
    (max_steps, or max_minutes when set) the run will exhaust first, so a time-budgeted run decays too."""
    t = config.training
    if t.lr_schedule == "constant":
        return t.lr
    progress = step / t.max_steps
    if t.max_minutes:
        progress = max(progress, seconds / (60 * t.max_minutes))
    progress = min(1.0, progress)
    return t.lr_min + 0.5 * (t.lr - t.lr_min) * (1 + math.cos(math.pi * progress))


def batch_indices(n_models: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """The shapes of step `step`: a new seeded permutation each epoch, so resuming lands on the same batch."""
    per_epoch = max(1, n_models // batch_size)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_models)
    if n_models < batch_size:
        return np.random.default_rng([seed, step]).choice(n_models, batch_size, replace=True)
    return order[position * batch_size:(position + 1) * batch_size]


def input_points_of_step(config: Config, step: int) -> int | None:
    """The input cloud size of a step (log-uniform in data.input_points_range), or None for the default."""
    bounds = config.data.input_points_range
    if bounds is None:
        return None
    u = np.random.default_rng([config.training.seed, step, 7]).random()
    return int(round(math.exp(math.log(bounds[0]) + u * (math.log(bounds[1]) - math.log(bounds[0])))))


def load_batch(dataset: ShapeDataset, indices: np.ndarray, seed: int, step: int,
               device: torch.device, n_input_points: int | None = None) -> dict[str, torch.Tensor]:
    items = [dataset.item(int(i), np.random.default_rng([seed, step, k]), n_input_points=n_input_points)
             for k, i in enumerate(indices)]
    return {k: torch.from_numpy(v).to(device) for k, v in collate(items).items()}


def loss_of(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model(batch["points"], batch["inputs"])
    return F.binary_cross_entropy_with_logits(logits, batch["occ"], reduction="none").sum(-1).mean()


def validation_thresholds(config: Config) -> list[float]:
    """training.threshold first, then the other candidates."""
    t = config.training
    return [t.threshold] + [x for x in (t.threshold_candidates or []) if x != t.threshold]


@torch.no_grad()
def validation_metrics(model: Network, dataset: ShapeDataset, config: Config, device: torch.device) -> dict[str, float]:
    """Mean IoU over validation shapes on their uniform points (prediction >= threshold, truth >= 0.5), at
    each candidate threshold: 'iou' and 'threshold' are the best of them, 'iou_at_default' the configured one."""
    model.eval()
    thresholds = validation_thresholds(config)
    logit_cuts = torch.tensor([math.log(p) - math.log1p(-p) for p in thresholds], device=device)
    ious, losses = [], []
    for index in range(min(config.data.val_shapes or len(dataset), len(dataset))):
        item = dataset.validation_item(index, np.random.default_rng([config.training.seed, index]),
                                       config.data.val_points)
        batch = {k: torch.from_numpy(item[k][None]).to(device) for k in ("inputs", "points", "occ")}
        logits = model(batch["points"], batch["inputs"])[0]
        predicted = (logits[None, :] >= logit_cuts[:, None]).cpu().numpy()  # (thresholds, points)
        actual = item["occ"] >= 0.5
        union = (predicted | actual).sum(axis=1)
        ious.append(np.where(union > 0, (predicted & actual).sum(axis=1) / np.maximum(union, 1), 1.0))
        losses.append(float(F.binary_cross_entropy_with_logits(logits, batch["occ"][0])))
    model.train()
    per_threshold = np.mean(ious, axis=0)
    best = int(np.argmax(per_threshold))
    return {"iou": float(per_threshold[best]), "threshold": thresholds[best], "iou_at_default": float(per_threshold[0]),
            "loss": float(np.mean(losses))}  # loss: mean BCE per point


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A run's checkpoint. Our own files hold tensors, numbers and strings only: weights_only needs no
    allow-list, and anything else (a damaged file, one asking to run code) is refused with what to do."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in reason or "Unsupported global" in reason:
            reason = "it asks to load Python objects beyond tensors and numbers, which a checkpoint of ours never does"
        raise InputError(f"{path}: not a usable training checkpoint ({reason[:200]}); copy {BEST} of the same "
                         "folder over it to resume from the best step so far, or start again with --overwrite"
                         ) from None
    if not isinstance(saved, dict) or not {"model", "optimizer", "step", "state"} <= set(saved):
        raise InputError(f"{path}: not a training checkpoint of this project (missing model, optimizer, step or "
                         "state); start again with --overwrite")
    return saved


class CsvLog:
    def __init__(self, path: Path, fields: list[str]):
        self.path, self.fields = path, fields
        if not path.exists():
            with open(path, "w", newline="") as handle:
                csv.writer(handle).writerow(fields)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow([row.get(f, "") for f in self.fields])


# ------------------------------------------------------------------------------------------- trainer


class Trainer:
    """One run's network, optimiser and data, advanced one step at a time (train() drives it and logs).

    A step's batch, its sampling, its input size and its learning rate follow from the configuration and
    the step number alone, so a trainer resumed from a checkpoint takes the steps an uninterrupted one does.
    """

    def __init__(self, config: Config, device: torch.device, dist: Distributed | None = None) -> None:
        self.config, self.device, self.dist = config, device, dist or Distributed()
        t, d, model_config = config.training, config.data, config.model_config
        self.train_set = ShapeDataset(d.path, d.train_split, model_config.modality, d.categories, d.points_per_shape,
                                      d.near_surface_fraction, model_config.n_input_points, d.pointcloud_noise,
                                      d.cache, image_size=model_config.image_size, voxel_shift=d.voxel_shift,
                                      scan_like=d.scan_like, scan_settings=d.scan_settings())
        self.val_set = ShapeDataset(d.path, d.val_split, model_config.modality, d.categories, d.points_per_shape,
                                    d.near_surface_fraction, model_config.n_input_points, 0.0, d.cache,
                                    image_size=model_config.image_size) if self.dist.main else None
        torch.manual_seed(t.seed)
        self.network: Network = build_model(model_config).to(device)  # the bare network (DDP wraps it)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=t.lr)
        self.model: torch.nn.Module = self.network  # what a step runs
        if self.dist.enabled:  # loading weights into the bare network later is seen through the wrapper
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.network, device_ids=[device.index] if device.type == "cuda" else None)
        self.model.train()
        self.steps = 0
        self.state: dict[str, Any] = {"best_iou": -1.0, "best_step": 0, "best_threshold": t.threshold,
                                      "validations_without_gain": 0, "seconds": 0.0}
        self.data_seconds = self.step_seconds = 0.0  # of this session, for the summary's data share
        self._clock: float | None = None  # when training started, less the seconds of earlier sessions

    def start_from(self, weights: str | Path) -> None:
        """Start from exported weights (a .safetensors of the same architecture), not a fresh initialisation."""
        from blender_occnet.occnet.checkpoints import load_state_dict_checked, load_weights

        start = load_weights(weights)
        wanted = self.config.model_config
        # Settings that shape no tensor may differ: the convolutional networks run on planes of any size.
        if dataclasses.replace(start.config, **{name: getattr(wanted, name) for name in SHAPE_FREE}) != wanted:
            raise InputError(f"{weights}: holds {start.config}, the config asks for {wanted}")
        load_state_dict_checked(self.network, start.state_dict, str(weights))

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint: weights, optimiser, step and state (the best so far, seconds trained)."""
        saved = load_checkpoint(path)
        # Checked first: a checkpoint of another config (wider, another architecture) was an 18-line RuntimeError.
        check_state_dict(self.config.model_config, saved["model"], str(path),
                         hint="It was written by a run of another model config: resume with that config, or start "
                              "again with --overwrite")
        self.network.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.steps, self.state = int(saved["step"]), dict(saved["state"])
        self._clock = None

    def checkpoint(self, path: Path) -> None:
        """Everything resume needs, written atomically (a killed run never leaves half a file)."""
        payload = {"model": self.network.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.steps,
                   "state": self.state, "config": json.dumps(self.config.to_dict())}
        with atomic_output(path) as tmp:
            torch.save(payload, tmp)

    def step(self, indices: np.ndarray | None = None) -> float:
        """One optimiser step on the shapes `indices` (by default this process's share of the step's batch);
        returns its loss."""
        t = self.config.training
        if self._clock is None:
            self._clock = time.monotonic() - self.state["seconds"]
        tick = time.monotonic()
        if indices is None:
            indices = batch_indices(len(self.train_set), t.batch_size, self.steps, t.seed)[
                self.dist.rank::self.dist.world]
        batch = load_batch(self.train_set, indices, t.seed, self.steps, self.device,
                           input_points_of_step(self.config, self.steps))
        loaded = time.monotonic()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, self.steps, self.state["seconds"])
        self.optimizer.zero_grad(set_to_none=True)
        loss = loss_of(self.model, batch)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        self.data_seconds += loaded - tick
        self.step_seconds += time.monotonic() - tick
        self.state["seconds"] = time.monotonic() - self._clock
        return loss.item()

    def validate(self) -> dict[str, float]:
        """The validation metrics now (validation_metrics); the main process alone holds the validation set."""
        if self.val_set is None:
            raise RuntimeError("only the main process validates")
        return validation_metrics(self.network, self.val_set, self.config, self.device)

    def record_validation(self, metrics: dict[str, float]) -> bool:
        """Count a validation in the state; True when it is the best so far (its weights are worth keeping)."""
        if metrics["iou"] > self.state["best_iou"]:
            self.state.update(best_iou=metrics["iou"], best_step=self.steps, best_threshold=metrics["threshold"],
                              validations_without_gain=0)
            return True
        self.state["validations_without_gain"] += 1
        return False

    def summary(self, stop_reason: str) -> dict[str, Any]:
        state = self.state
        return {"step": self.steps, "stop_reason": stop_reason, "best_iou": state["best_iou"],
                "best_step": state["best_step"], "seconds": round(state["seconds"], 1),
                "data_share": round(self.data_seconds / self.step_seconds, 4) if self.step_seconds else 0.0}


class RunLogs:
    """The main process's reports: log.csv, validation.csv, TensorBoard when installed, a progress bar."""

    def __init__(self, run_dir: Path, config: Config, start: int, progress: bool) -> None:
        self.every = config.training.log_every
        self.train = CsvLog(run_dir / "log.csv", ["step", "loss", "lr", "seconds", "data_seconds"])
        self.val = CsvLog(run_dir / "validation.csv",
                          ["step", "iou", "threshold", "iou_at_default", "loss", "seconds"])
        self.writer = _tensorboard(run_dir)
        self.bar = _progress_bar(progress, start, config.training.max_steps)

    def step(self, trainer: Trainer, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.1f}", best_iou=f"{max(trainer.state['best_iou'], 0):.3f}")
        if trainer.steps % self.every == 0:
            lr = trainer.optimizer.param_groups[0]["lr"]
            self.train.write({"step": trainer.steps, "loss": round(loss, 4), "lr": lr,
                              "seconds": round(trainer.state["seconds"], 1),
                              "data_seconds": round(trainer.data_seconds, 2)})
            if self.writer is not None:
                self.writer.add_scalar("train/loss", loss, trainer.steps)

    def validation(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.val.write({"step": trainer.steps, **{k: round(v, 4) for k, v in metrics.items()},
                        "seconds": round(trainer.state["seconds"], 1)})
        if self.writer is not None:
            self.writer.add_scalar("val/iou", metrics["iou"], trainer.steps)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------------- main


def prepare_run_dir(config: Config, resume: bool, overwrite: bool, main: bool) -> Path:
    run_dir = Path(config.training.out_dir)
    has_run = (run_dir / CHECKPOINT).exists()
    if has_run and not (resume or overwrite):
        raise InputError(f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to start "
                         "again (its checkpoints are replaced)")
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        # A run killed while writing a checkpoint leaves its temporary file (atomic_output's .part) behind.
        for stale in run_dir.glob(".*.part"):
            stale.unlink(missing_ok=True)
        if overwrite and not resume:
            for name in (CHECKPOINT, BEST, "log.csv", "validation.csv"):
                (run_dir / name).unlink(missing_ok=True)
        (run_dir / "config.yaml").write_text(json.dumps(config.to_dict(), indent=2))
    return run_dir


def train(config: Config, resume: bool = False, overwrite: bool = False, progress: bool = True,
          init_weights: str | Path | None = None) -> dict[str, Any]:
    """Train per `config`; `init_weights` (a .safetensors of the same architecture) starts a new run from
    those weights instead of a fresh initialisation."""
    dist = Distributed()
    device = dist.setup(resolve_device(config.training.device))
    run_dir = prepare_run_dir(config, resume, overwrite, dist.main)
    dist.barrier()
    trainer = Trainer(config, device, dist)
    if resume and (run_dir / CHECKPOINT).exists():
        trainer.resume(run_dir / CHECKPOINT)
        if dist.main:
            log.info("resumed %s at step %d (best IoU %.4f)", run_dir, trainer.steps, trainer.state["best_iou"])
            for name in ("log.csv", "validation.csv"):  # the steps after the checkpoint are done again
                _truncate_log(run_dir / name, trainer.steps)
    elif init_weights is not None:
        trainer.start_from(init_weights)
    logs = RunLogs(run_dir, config, trainer.steps, progress) if dist.main else None
    stop_reason = _run(trainer, run_dir, logs)
    if logs is not None:
        logs.close()
    dist.barrier()
    summary = trainer.summary(stop_reason)
    if dist.enabled:
        summary["ranks_in_sync"] = _ranks_in_sync(trainer.network, device)
    if dist.main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    # DDP's reducer holds the process group and tensors Gloo's threads may still touch: left to the interpreter's
    # shutdown, their destruction aborted a finished run now and then ('terminate called without an active
    # exception', seen under load). Release them while Python is whole, then leave the group.
    del trainer
    gc.collect()
    dist.finish()
    return summary


def _run(trainer: Trainer, run_dir: Path, logs: RunLogs | None) -> str:
    """Step until a budget runs out; the main process (the one with logs) validates, keeps the best weights and
    writes checkpoints. Returns why it stopped: max_steps, max_minutes or patience."""
    t, dist = trainer.config.training, trainer.dist
    stop_reason = "max_steps"
    while trainer.steps < t.max_steps:
        loss = trainer.step()
        reason = None
        if logs is not None:
            logs.step(trainer, loss)
            if trainer.steps % t.validate_every == 0 or trainer.steps == t.max_steps:
                reason = _validate(trainer, run_dir, logs)
        if t.max_minutes and trainer.state["seconds"] >= 60 * t.max_minutes:
            reason = "max_minutes"
        stop_reason = reason or stop_reason
        stop = dist.broadcast_flag(reason is not None, trainer.device)
        if dist.main and (trainer.steps % t.checkpoint_every == 0 or stop or trainer.steps == t.max_steps):
            trainer.checkpoint(run_dir / CHECKPOINT)
        if stop:
            break
    return stop_reason


def _validate(trainer: Trainer, run_dir: Path, logs: RunLogs) -> str | None:
    """Validate, log it and keep the best weights; "patience" once validations stop gaining."""
    metrics = trainer.validate()
    logs.validation(trainer, metrics)
    if trainer.record_validation(metrics):
        trainer.checkpoint(run_dir / BEST)
    state, patience = trainer.state, trainer.config.training.patience
    log.info("step %d: validation IoU %.4f at threshold %.2f (best %.4f at %d)", trainer.steps, metrics["iou"],
             metrics["threshold"], state["best_iou"], state["best_step"])
    return "patience" if patience and state["validations_without_gain"] >= patience else None


def _truncate_log(path: Path, step: int) -> None:
    """Drop the rows of a CSV log after `step` (written by a run killed before its next checkpoint)."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    kept = [rows[0]] + [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) <= step]
    if len(kept) != len(rows):
        with atomic_output(path) as tmp:
            with open(tmp, "w", newline="") as handle:
                csv.writer(handle).writerows(kept)


def _ranks_in_sync(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether every process ends with exactly the same weights (DDP keeps them so; this checks it)."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).to(device)
    gathered = [torch.empty_like(flat) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], other) for other in gathered[1:])


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: CSV logs are always written
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _progress_bar(enabled: bool, start: int, total: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="YAML configuration (inherits from training/configs/default.yaml)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run in training.out_dir")
    group.add_argument("--overwrite", action="store_true", help="start again in a folder that holds a run")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (YAML syntax), e.g. --set training.max_steps=500")
    parser.add_argument("--init-weights", metavar="PATH",
                        help="start a new run from these weights (.safetensors of the same architecture), e.g. "
                             "blender_occnet/weights/pointcloud.safetensors; a resumed run ignores it")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        config = load_config(args.config)
        if args.set:
            config = _with_overrides(config, args.set)
        summary = train(config, args.resume, args.overwrite, progress=not args.quiet, init_weights=args.init_weights)
    except OccNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if Distributed().main:
        print(json.dumps(summary))
    return 0


def _with_overrides(config: Config, overrides: list[str]) -> Config:
    import yaml

    values = config.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.split(".")
        if not sep or len(parts) != 2:
            raise InputError(f"--set {item!r}: use SECTION.KEY=VALUE")
        values.setdefault(parts[0], {})[parts[1]] = yaml.safe_load(raw)
    return Config.from_dict(values)


if __name__ == "__main__":
    sys.exit(main())
