"""What the add-on and the torch side share without torch (common/): the shipped architectures the families
declare, and the folders weights are looked for in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blender_occnet.common.architectures import SHIPPED
from blender_occnet.common.user_dirs import ENV_USER_WEIGHTS
from blender_occnet.common.weights_catalogue import (
    BUNDLED_DIR,
    ENV_DIRS,
    ORIGINAL_SUFFIXES,
    WEIGHTS_SUFFIX,
    released_catalogue,
    search_dirs,
    weights_files,
)
from blender_occnet.occnet.config import ARCH_MODALITY, FAMILIES
from blender_occnet.occnet.registry import list_weights


def test_the_shipped_families_declare_the_architectures_the_add_on_lists() -> None:
    """Every architecture of ONet and ConvONet is one common/architectures.py names, with its modality and
    label, in the same order; and every name there is built by a family."""
    declared = [a for name in ("onet", "convonet") for a in FAMILIES[name].architectures]
    assert [a.name for a in declared] == list(SHIPPED)
    for architecture in declared:
        entry = SHIPPED[architecture.name]
        assert (architecture.modality, architecture.label) == (entry.modality, entry.label)
        assert ARCH_MODALITY[architecture.name] == entry.modality


def test_weights_are_searched_in_one_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The named folder, then $OCCNET_WEIGHTS_PATH's, the user folder, the bundled one; each folder's files by
    name; the registry reads the first file of a name."""
    extra, env_a, env_b, user = (tmp_path / n for n in ("extra", "env_a", "env_b", "user"))
    for folder in (extra, env_a, env_b, user):
        folder.mkdir()
    monkeypatch.setenv(ENV_DIRS, os.pathsep.join([str(env_a), str(env_b)]))
    monkeypatch.setenv(ENV_USER_WEIGHTS, str(user))
    assert search_dirs([extra]) == [extra, env_a, env_b, user, BUNDLED_DIR]
    for path in (extra / "b.safetensors", extra / "a.pt", extra / "notes.txt", env_b / "a.safetensors",
                 user / "b.safetensors"):
        path.write_bytes(b"")
    found = weights_files([extra])
    assert found[:3] == [extra / "b.safetensors", env_b / "a.safetensors", user / "b.safetensors"]
    assert all(path.parent == BUNDLED_DIR for path in found[3:]) and len(found) > 3
    assert weights_files([extra], (WEIGHTS_SUFFIX, *ORIGINAL_SUFFIXES))[:2] == [extra / "a.pt", extra / "b.safetensors"]
    shadowed = {info.name: info.path for info in list_weights([extra])}
    assert shadowed["b"] == extra / "b.safetensors" and shadowed["a"] == env_b / "a.safetensors"


def test_the_released_catalogue_names_shipped_architectures() -> None:
    """Every released file this version can load is of a shipped architecture (the others say why not)."""
    entries = released_catalogue()
    loadable = [entry for entry in entries if entry.get("loadable", True)]
    assert len(loadable) >= 10 and all(entry["arch"] in SHIPPED for entry in loadable)
    assert all(entry.get("note") for entry in entries if entry not in loadable)
