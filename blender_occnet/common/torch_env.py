"""The process environment torch reads when it loads: CPU threads, how they wait, Apple GPU fallback.

The decoders open a short OpenMP region for every GEMM and element-wise op of each slice. libgomp's
idle threads spin 300,000 times between regions by default: fastest on an idle machine, but when other
processes share the cores (Blender itself runs beside the backend) the spinning threads take the time
the working ones need. Measured side by side (bench/bench_threads.py, 2 cores, a busy process beside):
a 128-cell reconstruction took 1.75 s with the default spin, 0.36 s sleeping at once (PASSIVE; but 0.76x
on an idle machine) and 0.48 s with a 3,000-iteration spin, which is as fast as the default when idle.
So a short spin it is, unless the user's environment already says how to wait (LLVM's and Intel's
OpenMP, on macOS and Windows builds, read KMP_BLOCKTIME instead: 1 ms, not measured here). The backend
also leaves a core to Blender. Stdlib only, so that the backend and the command line set it before torch loads
(apply_to_torch, which they call once it has, imports torch).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
SHORT_SPIN = {"GOMP_SPINCOUNT": "3000", "KMP_BLOCKTIME": "1"}
MAX_THREADS = 256


def available_cores() -> int:
    """Cores this process may run on (its affinity where the platform tells it, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def backend_threads(requested: int = 0) -> int:
    """The backend's thread count: `requested` when positive, else every core but one (Blender's)."""
    if requested > 0:
        return min(requested, MAX_THREADS)
    return max(1, available_cores() - 1)


def configure_before_torch(threads: int, environ: MutableMapping[str, str] | None = None) -> None:
    """Set a short OpenMP spin (unless the environment already sets how to wait), the thread count and
    the MPS fallback, for a process that has not imported torch yet; `threads` <= 0 leaves the count to
    torch (every core)."""
    env = os.environ if environ is None else environ
    if not any(name in env for name in WAIT_VARIABLES):
        env.update(SHORT_SPIN)
    # On Apple's GPU an op MPS lacks runs on the CPU (torch warns once) instead of failing the job.
    env.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
    if threads > 0:
        for name in THREAD_VARIABLES:
            env[name] = str(threads)


def apply_to_torch(threads: int) -> None:
    """The same count for torch's own pool (it reads OMP_NUM_THREADS, but not once imported)."""
    if threads > 0:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
