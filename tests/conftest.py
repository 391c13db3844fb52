"""Shared fixtures: deterministic torch, small random networks, files written by the tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
