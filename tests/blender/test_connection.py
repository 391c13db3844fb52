"""The add-on's backend connection: a shutdown (disabling the add-on, Install backend) never makes Blender's
main thread wait for a backend that is still starting, and never leaves one running."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from blender_occnet.addon.connection import Backend, BackendSettings
from blender_occnet.common.backend_client import BackendError


def _backend_children() -> list[int]:
    """Our child processes that are backends (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"occnet.backend" in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(int(entry))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_shutdown_while_the_backend_starts_neither_waits_nor_leaves_it_running(weights_dir: Path) -> None:
    before = set(_backend_children())
    backend = Backend()
    settings = BackendSettings(mode="LOCAL", python=sys.executable, weights_dirs=(str(weights_dir),), threads=1)
    outcome: list[object] = []
    starting = threading.Thread(target=lambda: outcome.append(_try(backend.acquire, settings)))
    starting.start()
    time.sleep(0.3)  # the backend is importing torch: a second or more
    assert starting.is_alive()
    backend.shutdown()
    assert starting.is_alive()  # the shutdown returned without waiting for the start to finish
    starting.join(timeout=120)
    assert isinstance(outcome[0], BackendError) and "shut down while it started" in str(outcome[0])
    assert backend.current() is None
    deadline = time.monotonic() + 10
    while set(_backend_children()) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(_backend_children()) - before  # the backend it started was closed once up
    # The same Backend starts one again on the next acquire.
    client = backend.acquire(settings)
    try:
        assert client.alive
    finally:
        backend.shutdown()


def _try(call, *args):  # type: ignore[no-untyped-def]
    try:
        return call(*args)
    except BackendError as exc:
        return exc
