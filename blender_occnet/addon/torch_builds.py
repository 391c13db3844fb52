"""Which PyTorch build the managed install takes on this machine: a pure function of platform facts.

The package index's torch wheels: on Linux x86_64 the default build bundles CUDA (and runs on the CPU
where there is no GPU); on Windows it is CPU only, so a machine with an NVIDIA GPU needs a CUDA build from
PyTorch's own wheel index; on macOS arm64 the standard build has MPS (Apple's GPU). PyTorch publishes no
macOS x86_64 wheels after 2.2, so an Intel Mac needs an interpreter of the user's own. No bpy here.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass

PYTORCH_INDEX = "https://download.pytorch.org/whl/"
# What the preferences offer instead of the automatic choice (AUTO): "cpu", or a CUDA build.
CUDA_BUILDS = ("cu126", "cu128")
DEFAULT_CUDA = "cu128"


@dataclass(frozen=True)
class Facts:
    system: str  # platform.system(): Linux, Windows, Darwin
    machine: str  # platform.machine(): x86_64, AMD64, arm64, aarch64
    nvidia_gpu: bool  # an NVIDIA driver is installed (nvidia-smi found)


@dataclass(frozen=True)
class TorchBuild:
    label: str  # what the preferences show
    index_url: str = ""  # PyTorch's own index for torch; "" means the package index's default build
    supported: bool = True
    reason: str = ""  # why, when not supported


def detect() -> Facts:
    """This machine's facts (the only impure part)."""
    smi = shutil.which("nvidia-smi")
    if smi is None and platform.system() == "Windows":
        fallback = os.path.join(os.environ.get("SystemRoot", r"C:\Windows"), "System32", "nvidia-smi.exe")
        smi = fallback if os.path.isfile(fallback) else None
    return Facts(platform.system(), platform.machine(), smi is not None)


def choose(facts: Facts, override: str = "AUTO") -> TorchBuild:
    """The build for `facts`; `override` is AUTO, CPU or one of CUDA_BUILDS (upper or lower case)."""
    choice = override.lower()
    machine = facts.machine.lower()
    if facts.system == "Darwin":
        if machine not in ("arm64", "aarch64"):
            return TorchBuild("none", supported=False,
                              reason="PyTorch publishes no builds for Intel Macs after 2.2: choose Custom "
                                     "interpreter with a Python that has torch, or use a remote backend")
        if choice in CUDA_BUILDS:
            return TorchBuild("none", supported=False, reason="CUDA builds do not exist for macOS")
        return TorchBuild("standard build (Apple GPU through MPS)")
    if choice == "cpu":
        return TorchBuild("CPU build", PYTORCH_INDEX + "cpu")
    if choice in CUDA_BUILDS:
        return TorchBuild(f"CUDA {choice[2:4]}.{choice[4:]} build", PYTORCH_INDEX + choice)
    if facts.system == "Windows":
        if facts.nvidia_gpu:
            return TorchBuild(f"CUDA {DEFAULT_CUDA[2:4]}.{DEFAULT_CUDA[4:]} build (NVIDIA GPU found)",
                              PYTORCH_INDEX + DEFAULT_CUDA)
        return TorchBuild("CPU build (no NVIDIA GPU found)")
    if facts.system == "Linux":
        return TorchBuild("default build (CUDA when an NVIDIA GPU is there)" if facts.nvidia_gpu else
                          "default build (runs on the CPU: no NVIDIA GPU found)")
    return TorchBuild("default build")
