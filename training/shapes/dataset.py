"""The procedural collection on disk: every model of the chosen categories, split lists and metadata.yaml."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from blender_occnet.common.files import atomic_output

from .categories import CATEGORIES, GENERATORS, generate
from .organic import ORGANIC_CATEGORIES, generate_organic
from .writer import MODEL_FILES, Settings, SolidShape, write_model

# Every category the builder knows: the man-made ones first, so their seeds (their index here) and so their
# datasets stay what they were before the organic ones came.
ALL_CATEGORIES = CATEGORIES + ORGANIC_CATEGORIES

_SPLIT_STREAM = 2**32 - 1  # rng stream of the split shuffle, distinct from every model index
SPLIT_FRACTIONS = (0.8, 0.1)  # train, val; the rest is test


def model_rng(seed: int, category: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, ALL_CATEGORIES.index(category), index])


def model_id(category: str, index: int) -> str:
    return f"{category}_{index:05d}"


def _build_one(task: tuple[str, str, int, int, Settings]) -> str:
    """Worker: generate and write one model unless all its files exist already (resume)."""
    out, category, index, seed, settings = task
    folder = Path(out) / category / model_id(category, index)
    needed = MODEL_FILES + (("mesh.obj",) if settings.mesh else ())
    if all((folder / name).is_file() for name in needed):
        return "skipped"
    rng = model_rng(seed, category, index)
    shape: SolidShape = generate(category, rng) if category in GENERATORS else generate_organic(category, rng)
    write_model(shape, folder, rng, settings)
    return "written"


def write_split_lists(folder: Path, ids: Sequence[str], order: np.ndarray,
                      fractions: tuple[float, float] = SPLIT_FRACTIONS) -> None:
    """train/val/test.lst in `folder`, written atomically; the one writer of split lists (the procedural
    collection and prepared meshes each pass their own seeded permutation `order` of the indices of `ids`).
    The first `fractions[0]` of `order` train (at least one model when there are any), the next `fractions[1]`
    validate, the rest test. Each list keeps the order of `ids` (give them sorted) and has no trailing
    newline: the original loader splits on '\\n' and would read an empty model id."""
    count = len(ids)
    n_train = max(1, round(fractions[0] * count)) if count else 0
    n_val = round(fractions[1] * count)
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    folder.mkdir(parents=True, exist_ok=True)
    for split, picked in parts.items():
        with atomic_output(folder / f"{split}.lst") as tmp:
            Path(tmp).write_text("\n".join(ids[i] for i in sorted(picked)))


def write_splits(out: Path, category: str, count: int, seed: int,
                 fractions: tuple[float, float] = SPLIT_FRACTIONS) -> None:
    """The split lists of a category's `count` procedural models, by a shuffle seeded per category."""
    order = np.random.default_rng([seed, ALL_CATEGORIES.index(category), _SPLIT_STREAM]).permutation(count)
    write_split_lists(out / category, [model_id(category, i) for i in range(count)], order, fractions)


def write_metadata(out: Path, categories: Sequence[str]) -> None:
    """metadata.yaml, merged with the categories an earlier run listed."""
    path = out / "metadata.yaml"
    meta = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
    meta.update({c: {"id": c, "name": c} for c in categories})
    with atomic_output(path) as tmp:
        Path(tmp).write_text(yaml.safe_dump(dict(sorted(meta.items())), sort_keys=False))


def build_dataset(out: str | os.PathLike[str], categories: Sequence[str] = CATEGORIES, per_category: int = 200,
                  seed: int = 0, settings: Settings | None = None, workers: int = 1, progress: bool = True) -> dict:
    """Write every model, the split lists and metadata.yaml; returns counts of written and skipped models."""
    from tqdm import tqdm

    out = Path(out)
    settings = settings or Settings()
    unknown = [c for c in categories if c not in ALL_CATEGORIES]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; choose from {', '.join(ALL_CATEGORIES)}")
    for category in categories:
        (out / category).mkdir(parents=True, exist_ok=True)
    tasks = [(str(out), c, i, seed, settings) for c in categories for i in range(per_category)]
    counts = {"written": 0, "skipped": 0}
    with tqdm(total=len(tasks), desc="shapes", unit="shape", disable=not progress) as bar:
        if workers <= 1:
            results = map(_build_one, tasks)
            for result in results:
                counts[result] += 1
                bar.update()
        else:
            # spawn: no state inherited from the parent; every task carries its own seed.
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for result in pool.imap_unordered(_build_one, tasks, chunksize=1):
                    counts[result] += 1
                    bar.update()
    for category in categories:
        write_splits(out, category, per_category, seed)
    write_metadata(out, categories)
    return counts
