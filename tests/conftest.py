"""Shared fixtures: deterministic torch, small random networks, files written by the tests."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch

# Never read or write the real user's downloaded weights: the whole run (and the backends it starts) gets
# an empty folder of its own.
os.environ["OCCNET_WEIGHTS_DIR"] = tempfile.mkdtemp(prefix="occnet-test-user-weights-")
os.environ.pop("OCCNET_WEIGHTS_MIRROR", None)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
