"""Training configurations: YAML files that inherit from a default, loaded into typed, validated sections.

A file may name `inherit_from: other.yaml` (relative to itself, or a name in training/configs/);
sections merge recursively, the inheriting file winning. Every file ultimately inherits the
built-in defaults below. An unknown key fails at once and names the nearest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blender_occnet.common.errors import InputError
from blender_occnet.occnet.config import ModelConfig

from .scans import ScanSettings

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class DataConfig:
    path: str = "data/shapes"  # a folder in the original preprocessed layout
    categories: list[str] | None = None  # None: every category in metadata.yaml (or every folder)
    train_split: str = "train"
    val_split: str = "val"
    points_per_shape: int = 2048  # query points per shape and step
    near_surface_fraction: float = 0.5  # share drawn from points_near.npz where it exists
    pointcloud_noise: float = 0.005  # Gaussian noise on input point clouds, as the reference
    # Point clouds: [low, high] draws each step's input size log-uniformly between them (all shapes of a
    # step alike), so a local model learns sparse and dense clouds; None: always the model's n_input_points.
    input_points_range: list[int] | None = None
    voxel_shift: float = 0.0  # voxels: share of training grids moved by whole cells within their free room
    scan_like: float = 0.0  # share of training inputs degraded as scans are: clouds, voxel grids (scans.py)
    # Of those, the share seen only from one to three directions (None: scans.ScanSettings' default).
    scan_partial: float | None = None
    val_points: int = 20000  # points of points.npz used for validation IoU per shape
    val_shapes: int = 200  # at most this many validation shapes (0: all)
    cache: bool = True  # keep loaded files in memory

    def scan_settings(self) -> ScanSettings:
        """How this run's scan-like inputs are degraded."""
        if self.scan_partial is None:
            return ScanSettings()
        return dataclasses.replace(ScanSettings(), partial=self.scan_partial)


@dataclass
class TrainingConfig:
    out_dir: str = "runs/default"
    batch_size: int = 64
    lr: float = 1e-4
    # "cosine": from lr to lr_min over the run's budget, max_steps or max_minutes, whichever runs out first
    lr_schedule: str = "constant"
    lr_min: float = 1e-5
    max_steps: int = 100_000
    max_minutes: float = 0.0  # stop (and checkpoint) after this much wall time; 0: no limit
    validate_every: int = 1000
    checkpoint_every: int = 250
    log_every: int = 50
    patience: int = 0  # stop after this many validations without a better IoU; 0: never
    threshold: float = 0.2  # probability at which validation IoU is measured and weights are exported
    # Also measure validation IoU at these probabilities; the best becomes the exported threshold.
    threshold_candidates: list[float] | None = None
    seed: int = 0
    device: str = "auto"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"arch": "onet-pointcloud"})
    training: TrainingConfig = field(default_factory=TrainingConfig)

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        _check_keys(values, {"data", "model", "training", "inherit_from"}, "")
        data = _section(DataConfig, values.get("data") or {}, "data")
        training = _section(TrainingConfig, values.get("training") or {}, "training")
        model = dict(values.get("model") or {"arch": "onet-pointcloud"})
        try:
            ModelConfig.from_dict(model)
        except InputError as exc:
            raise InputError(f"config section model: {exc}") from None
        config = cls(data, model, training)
        config.validate()
        return config

    def validate(self) -> None:
        t, d = self.training, self.data
        checks = [
            (t.batch_size >= 1, "training.batch_size must be at least 1"),
            (t.lr > 0, "training.lr must be positive"),
            (t.lr_schedule in ("constant", "cosine"), "training.lr_schedule must be constant or cosine"),
            (t.max_steps >= 1, "training.max_steps must be at least 1"),
            (t.validate_every >= 1 and t.checkpoint_every >= 1 and t.log_every >= 1,
             "training.validate_every, checkpoint_every and log_every must be at least 1"),
            (0 < t.threshold < 1, "training.threshold must be in (0, 1)"),
            (d.points_per_shape >= 1, "data.points_per_shape must be at least 1"),
            (0 <= d.near_surface_fraction <= 1, "data.near_surface_fraction must be in [0, 1]"),
            (d.input_points_range is None or (len(d.input_points_range) == 2 and all(
                isinstance(n, int) and n >= 8 for n in d.input_points_range)
                and d.input_points_range[0] <= d.input_points_range[1]),
             "data.input_points_range must be [low, high] with 8 <= low <= high"),
            (0 <= d.voxel_shift <= 1, "data.voxel_shift must be in [0, 1]"),
            (0 <= d.scan_like <= 1, "data.scan_like must be in [0, 1]"),
            (d.scan_partial is None or (isinstance(d.scan_partial, (int, float))
                                        and not isinstance(d.scan_partial, bool) and 0 <= d.scan_partial <= 1),
             "data.scan_partial must be a number in [0, 1]"),
            (t.threshold_candidates is None or all(
                isinstance(x, (int, float)) and 0 < x < 1 for x in t.threshold_candidates),
             "training.threshold_candidates must be probabilities in (0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"config: {message}")


def load_config(path: str | Path) -> Config:
    """Read a YAML config and everything it inherits from."""
    return Config.from_dict(_load_merged(Path(path), seen=()))


def _load_merged(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file() and (CONFIG_DIR / path.name).is_file():
        path = CONFIG_DIR / path.name
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    if path.resolve() in seen:
        raise InputError(f"{path}: inherit_from loops back on itself")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: the config must be a mapping of sections")
    parent = values.pop("inherit_from", None)
    if parent is None:
        return values
    base = _load_merged((path.parent / parent) if not Path(parent).is_absolute() else Path(parent),
                        seen + (path.resolve(),))
    return _merge(base, values)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "model":
            merged[key] = _merge(merged[key], value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}  # model: a flat mapping
        else:
            merged[key] = value
    return merged


def _section(cls: type, values: dict[str, Any], name: str) -> Any:
    if not isinstance(values, dict):
        raise InputError(f"config section {name} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(values, set(fields), f"{name}.")
    converted = {}
    for key, value in values.items():
        default = fields[key].default
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(default, float) and isinstance(value, str):
            # PyYAML reads "1e-4" (no dot) as a string: accept what is plainly a number.
            try:
                value = float(value)
            except ValueError:
                pass
        if default is not None and default is not dataclasses.MISSING and not isinstance(value, type(default)):
            raise InputError(f"config: {name}.{key} must be {type(default).__name__}, got {value!r}")
        converted[key] = value
    return cls(**converted)


def _check_keys(values: dict[str, Any], known: set[str], prefix: str) -> None:
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (valid: {', '.join(sorted(known))})"
            raise InputError(f"config: unknown key {prefix}{key}{hint}")
