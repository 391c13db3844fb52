"""Settings made before torch loads: the wait policy, the thread count, the MPS fallback, the CLI option."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from blender_occnet.common.torch_env import SHORT_SPIN, THREAD_VARIABLES, backend_threads, configure_before_torch

REPO = Path(__file__).resolve().parents[2]


def test_spins_are_short_unless_the_user_chose_and_counts_are_set_everywhere() -> None:
    env: dict[str, str] = {}
    configure_before_torch(3, env)
    assert SHORT_SPIN.items() <= env.items() and all(env[name] == "3" for name in THREAD_VARIABLES)
    assert env["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "0"}, {"KMP_BLOCKTIME": "200"}):
        before = dict(chosen)
        configure_before_torch(0, chosen)
        assert {k: v for k, v in chosen.items() if k != "PYTORCH_ENABLE_MPS_FALLBACK"} == before
    assert backend_threads(5) == 5 and backend_threads(0) >= 1


def test_the_command_line_uses_the_threads_it_is_given(tmp_path: Path) -> None:
    cloud = tmp_path / "cloud.npy"
    np.save(cloud, (np.random.default_rng(0).random((400, 3)) - 0.5).astype(np.float32))
    command = [sys.executable, "-m", "blender_occnet", "reconstruct", str(cloud), "-o", str(tmp_path / "m.ply"),
               "--resolution", "32", "--json"]
    done = subprocess.run(command + ["--threads", "1"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["threads"] == 1
    refused = subprocess.run(command + ["--threads", "-2"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert refused.returncode == 2 and "--threads must be between 0" in refused.stderr
