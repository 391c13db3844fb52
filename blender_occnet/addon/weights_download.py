"""Getting the authors' released weights from the preferences: `python -m <package> weights get NAME` run
with the backend's interpreter (which has torch to check and convert the file), its progress lines read
on the worker thread. No bpy here; the operator polls `state`, `fraction` and `message`.

Cancel stops the process: the partial file stays in the user weights folder's hidden .downloads/ and the
next Get resumes it; the registry never sees it.
"""

from __future__ import annotations

import collections
import os
import subprocess
import threading
from typing import Any

from ..common.backend_client import PACKAGE_DIR
from ..common.user_dirs import user_weights_dir
from ..common.weights_catalogue import WEIGHTS_SUFFIX, released_catalogue
from .worker import DONE, Cancelled, ProcessJob

__all__ = ["DONE", "Download", "installed", "released_entries", "user_weights_dir"]


def released_entries() -> list[dict[str, Any]]:
    """The catalogue's entries as the preferences list them (name, modality, note, loadable)."""
    return [dict(entry, loadable=entry.get("loadable", True)) for entry in released_catalogue()]


def installed(name: str) -> bool:
    return (user_weights_dir() / f"{name}{WEIGHTS_SUFFIX}").is_file()


class Download(ProcessJob):
    """One `weights get NAME` in a child process."""

    def __init__(self, python: str, name: str):
        super().__init__("occnet-weights-get")
        self.python, self.name = python, name
        self.message = f"starting the download of {name}"
        self.total = 0
        self._lines: collections.deque[str] = collections.deque(maxlen=20)

    def _run(self) -> None:
        command = [self.python, "-m", PACKAGE_DIR.name, "weights", "get", self.name, "--progress-lines"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = str(PACKAGE_DIR.parent)  # this very copy of the package, whatever the interpreter
        env.pop("PYTHONHOME", None)
        try:
            process = self._popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            assert process.stdout is not None and process.stderr is not None
            stderr = process.stderr
            errors: list[str] = []
            reader = threading.Thread(target=lambda: errors.extend(stderr), daemon=True)
            reader.start()
            for line in process.stdout:
                self._lines.append(line.rstrip())
                parts = line.split()
                if len(parts) == 3 and parts[0] == "progress":
                    done, self.total = int(parts[1]), int(parts[2])
                    self.fraction = done / self.total if self.total else 0.0
                    size = f" of {self.total / 1e6:.1f} MB" if self.total else ""
                    self.message = f"downloading {self.name}: {done / 1e6:.1f} MB{size}"
            code = process.wait()
            reader.join(5.0)
            if self.cancelled and code != 0:  # a cancel after the weights were written changes nothing
                raise Cancelled
            if code == 0:
                self.fraction, self.message = 1.0, self._lines[-1] if self._lines else f"got {self.name}"
                self.state = "finished"  # last: readers poll `state`
            else:
                said = [e.strip() for e in errors if e.strip()]
                self.message = said[-1].removeprefix("error: ") if said else f"weights get exited with {code}"
                self.state = "failed"
        except Cancelled:
            self.message, self.state = f"download of {self.name} cancelled; Get resumes it", "cancelled"
        except OSError as exc:
            self.message, self.state = f"could not run {self.python}: {exc}", "failed"
        except Exception as exc:  # never leave the job 'running' for ever: the preferences would wait on it
            self.message, self.state = f"the download stopped: {type(exc).__name__}: {exc}", "failed"
