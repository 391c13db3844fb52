"""What the add-on's background jobs share (the backend install, a weights download): a worker thread
that runs child processes, a state the main thread polls, and a cancel that stops the running child.
No bpy here."""

from __future__ import annotations

import subprocess
import threading
from typing import Any

DONE = ("finished", "failed", "cancelled")


class ProcessJob:
    """state: running -> finished | failed | cancelled; `fraction` and `message` may be read from any
    thread. Subclasses implement `_run` (on the worker thread) and start children with `_popen`."""

    def __init__(self, thread_name: str):
        self.state, self.fraction, self.message = "running", 0.0, ""
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def start(self) -> ProcessJob:
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> str:
        self._thread.join(timeout)
        return self.state

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._process is not None and self._process.poll() is None:
                self._process.terminate()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def _popen(self, command: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start a child unless cancelled already (then raise Cancelled): a cancel never misses it."""
        with self._lock:
            if self._cancelled:
                raise Cancelled
            self._process = subprocess.Popen(command, text=True, stdin=subprocess.DEVNULL, errors="replace",
                                             creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0), **kwargs)
            return self._process

    def _run(self) -> None:
        raise NotImplementedError


class Cancelled(Exception):
    """Raised on the worker thread when the user cancelled."""
