"""The first click: Reconstruct on the chair sample in headless Blender with a cold backend (started by
the click: Python and torch start, the weights load) against one the panel warmed up when it was first
shown (the click only loads the weights and reconstructs), and a second click (weights cached).

Builds and installs the extension from this checkout into a temporary user folder, with this
interpreter as the backend's (LOCAL) and the bundled weights; 128 cells. Rounds are interleaved.

    .venv/bin/python bench/bench_first_click.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="occnet-bench-")
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402

from build_extension import build  # noqa: E402

MODULE = "bl_ext.user_default.occnet"


def install() -> object:
    zip_path = build(Path(tempfile.mkdtemp(prefix="occnet-dist-")))
    bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default", enable_on_install=True)
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.backend_mode, prefs.python_path = "LOCAL", sys.executable
    import importlib

    return importlib.import_module(f"{MODULE}.addon")


def click(resolution: str, refine_steps: int = 0) -> float:
    """Seconds of one Reconstruct of the chair sample in a fresh scene."""
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.occnet.load_sample(modality="pointcloud")
    bpy.context.scene.occnet.resolution = resolution
    bpy.context.scene.occnet.refine_steps = refine_steps
    started = time.perf_counter()
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    addon = install()
    session = addon.backend_session
    rounds, resolution = (1, "64") if args.quick else (args.rounds, "128")
    times: dict[str, list[float]] = {"cold": [], "warmed up": [], "second click": []}
    for _ in range(rounds):
        session.shutdown()
        times["cold"].append(click(resolution))
        times["second click"].append(click(resolution))
        session.shutdown()
        session.warm_up(addon.preferences.backend_settings(bpy.context))  # what showing the panel does
        deadline = time.monotonic() + 120
        while (session.current() is None or not session.current().alive) and time.monotonic() < deadline:
            time.sleep(0.05)
        times["warmed up"].append(click(resolution))
    session.shutdown()
    cold = statistics.median(times["cold"])
    print(f"chair sample, {resolution} cells, {rounds} round(s), medians")
    print("| first Reconstruct | seconds | against cold |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {cold / median:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
