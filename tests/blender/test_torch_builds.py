"""The PyTorch build the managed install takes, from platform facts given to it (no such machine here),
and the pip command lines the installer runs for each."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from blender_occnet.addon import installer
from blender_occnet.addon.torch_builds import Facts, choose

PIP = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
REQUIREMENTS = str(installer.REQUIREMENTS)


@pytest.mark.parametrize("facts, override, index, label", [
    (Facts("Linux", "x86_64", False), "AUTO", "", "default build (runs on the CPU"),
    (Facts("Linux", "x86_64", True), "AUTO", "", "default build (CUDA"),
    (Facts("Linux", "x86_64", True), "CPU", "https://download.pytorch.org/whl/cpu", "CPU build"),
    (Facts("Windows", "AMD64", True), "AUTO", "https://download.pytorch.org/whl/cu128", "CUDA 12.8 build (NVIDIA"),
    (Facts("Windows", "AMD64", True), "CU126", "https://download.pytorch.org/whl/cu126", "CUDA 12.6 build"),
    (Facts("Windows", "AMD64", False), "AUTO", "", "CPU build (no NVIDIA GPU"),
    (Facts("Darwin", "arm64", False), "AUTO", "", "standard build (Apple GPU"),
])
def test_each_platform_gets_its_build_and_the_installer_its_commands(facts: Facts, override: str, index: str,
                                                                     label: str, tmp_path: Path) -> None:
    build = choose(facts, override)
    assert build.supported and build.index_url == index and build.label.startswith(label)
    commands = installer.Installer(tmp_path / "env", build=build).pip_commands("PY")
    pip = ["PY", *PIP[1:]]
    expected = [pip + ["-r", REQUIREMENTS]]
    if index:
        expected.insert(0, pip + ["--index-url", index, "torch==2.13.0"])
    assert commands == expected


@pytest.mark.parametrize("facts, override, reason", [
    (Facts("Darwin", "x86_64", False), "AUTO", "no builds for Intel Macs"),
    (Facts("Darwin", "arm64", False), "CU128", "CUDA builds do not exist for macOS"),
])
def test_unsupported_combinations_say_what_to_do(facts: Facts, override: str, reason: str, tmp_path: Path) -> None:
    build = choose(facts, override)
    assert not build.supported and reason in build.reason
    with pytest.raises(Exception, match=reason):
        installer.Installer(tmp_path / "env", build=build).pip_commands("PY")
