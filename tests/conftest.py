"""Shared fixtures: deterministic torch, small random networks, files written by the tests."""

from __future__ import annotations

import os
import tempfile

from blender_occnet.common.torch_env import available_cores, configure_before_torch

# pytest-xdist runs the files in parallel processes (pyproject.toml's `-n`): each takes its share of the cores and
# the short OpenMP spin the engine uses, set before torch loads so the command lines the tests start inherit them.
# Without this every worker and its children spin on all cores and a CPU-bound test ran 6x slower (36 s, not 6).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    configure_before_torch(max(1, available_cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# Never read or write the real user's downloaded weights: the whole run (and the backends it starts) gets
# an empty folder of its own.
os.environ["OCCNET_WEIGHTS_DIR"] = tempfile.mkdtemp(prefix="occnet-test-user-weights-")
os.environ.pop("OCCNET_WEIGHTS_MIRROR", None)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
