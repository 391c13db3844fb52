"""The managed backend: a virtual environment in the extension's user folder, filled with the backend's
pinned requirements (backend/requirements.txt, shipped in the extension) by pip, then checked by starting
the backend in it and shaking hands.

No bpy here: an Installer runs on a worker thread and the main thread reads its stage, fraction and
log lines. The environment is built beside the old one and swapped in only when it works, so a failed or
cancelled install leaves a working backend working.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..common.backend_client import BackendClient, BackendError
from ..common.messages import HandshakeReply
from .torch_builds import TorchBuild
from .worker import Cancelled, ProcessJob

REQUIREMENTS = Path(__file__).resolve().parent.parent / "backend" / "requirements.txt"
LOG_LINES = 400
DEFAULT_BUILD = TorchBuild("default build")  # the package index's torch
# Progress shares of the stages; pip's own share grows with each requirement it collects.
_VENV_DONE, _COLLECTED, _INSTALLED = 0.05, 0.75, 0.9


def env_python(env_dir: str | os.PathLike[str]) -> Path:
    """The interpreter inside a virtual environment folder."""
    env = Path(env_dir)
    return env / "Scripts" / "python.exe" if sys.platform == "win32" else env / "bin" / "python"


def is_installed(env_dir: str | os.PathLike[str]) -> bool:
    return env_python(env_dir).is_file()


def torch_requirement(requirements: Path) -> str:
    """The pinned torch line of the requirements (torch==X.Y.Z)."""
    for line in requirements.read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        if re.match(r"torch\s*==", spec):
            return spec.replace(" ", "")
    raise _Failed(f"{requirements} pins no torch version; reinstall the extension")


def requirement_names(requirements: Path) -> list[str]:
    """The distribution names a requirements file pins (options and -r lines skipped), lower case."""
    names = []
    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


class Installer(ProcessJob):
    """Create `env_dir` with `base_python -m venv`, pip-install `requirements`, verify. Start with `start()`.

    Besides the job's state, `stage` and `lines` (the log's tail) may be read from any thread. The whole log
    is also written to `log_path`.
    """

    def __init__(self, env_dir: str | os.PathLike[str], requirements: Path = REQUIREMENTS,
                 base_python: str = sys.executable, log_path: str | os.PathLike[str] | None = None,
                 build: TorchBuild = DEFAULT_BUILD):
        self.env_dir = Path(env_dir)
        self.requirements = Path(requirements)
        self.build = build
        self.base_python = base_python
        self.log_path = Path(log_path) if log_path else self.env_dir.with_name(self.env_dir.name + "-install.log")
        super().__init__("occnet-install")
        self.stage = "starting"
        self.info: HandshakeReply | None = None  # the new backend's handshake, once verified
        self.lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self._log_file: Any = None  # open while the worker runs

    @property
    def staging_dir(self) -> Path:
        return self.env_dir.with_name(self.env_dir.name + ".partial")

    # -- the worker thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "w", encoding="utf-8") as log:
                self._log_file = log
                self._install()
                self._verify()
                self._swap_in()
            took = time.monotonic() - started
            assert self.info is not None
            self._end("finished", f"backend installed in {took:.0f} s: torch {self.info.torch_version}, "
                                  f"devices {', '.join(self.info.devices) or '?'}")
        except Cancelled:
            self._end("cancelled", "install cancelled; the previous backend (if any) is unchanged")
        except _Failed as exc:
            self._end("failed", f"{exc} (full log: {self.log_path})")
        except OSError as exc:
            self._end("failed", f"could not install the backend: {exc}")
        finally:
            if self.state != "finished":
                shutil.rmtree(self.staging_dir, ignore_errors=True)

    def _install(self) -> None:
        if not self.requirements.is_file():
            raise _Failed(f"the requirements file {self.requirements} is missing; reinstall the extension")
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        self._set("creating the environment", 0.0)
        self._call([self.base_python, "-m", "venv", str(self.staging_dir)],
                   f"could not create a virtual environment with {self.base_python}")
        wanted = set(requirement_names(self.requirements))
        collected: set[str] = set()
        self._set("downloading packages", _VENV_DONE)

        def on_line(line: str) -> None:
            found = re.match(r"\s*(?:Collecting|Requirement already satisfied:|Processing)\s+([A-Za-z0-9_.\-]+)",
                             line)
            if found:
                name = found.group(1).lower().replace("_", "-")
                if name in wanted and name not in collected:
                    collected.add(name)
                    share = len(collected) / max(1, len(wanted))
                    self._set(f"downloading {name}", _VENV_DONE + (_COLLECTED - _VENV_DONE) * share)
            elif line.startswith("Installing collected packages"):
                self._set("installing packages", _COLLECTED)

        for command in self.pip_commands(str(env_python(self.staging_dir))):
            self._call(command, "pip could not install the backend's requirements", on_line)

    def pip_commands(self, python: str) -> list[list[str]]:
        """The pip calls of the install: torch first from PyTorch's own index when the build needs one (the
        pinned version, nothing else from there), then every requirement from the package index."""
        if not self.build.supported:
            raise _Failed(self.build.reason)
        pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
        commands = []
        if self.build.index_url:
            commands.append(pip + ["--index-url", self.build.index_url, torch_requirement(self.requirements)])
        return commands + [pip + ["-r", str(self.requirements)]]

    def _verify(self) -> None:
        """Start the backend in the new environment and shake hands, as every reconstruction will."""
        self._set("checking the backend", _INSTALLED)
        self._check_cancel()
        try:
            client = BackendClient.start_local(str(env_python(self.staging_dir)))
        except BackendError as exc:
            self._log(f"backend check failed: {exc}")
            raise _Failed(f"the packages installed, but the backend does not start: {exc}") from None
        self.info = client.info
        client.close(timeout=5.0)
        self._log(f"backend check: torch {self.info.torch_version}, devices {self.info.devices}")

    def _swap_in(self) -> None:
        self._check_cancel()
        old = self.env_dir.with_name(self.env_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.env_dir.exists():
            self.env_dir.rename(old)
        try:
            self.staging_dir.rename(self.env_dir)
        except OSError:
            if old.exists():  # put the working environment back rather than leave none
                old.rename(self.env_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)

    def _call(self, command: Sequence[str], failure: str, on_line: Any = None) -> None:
        self._check_cancel()
        self._log("$ " + " ".join(command))
        env = dict(os.environ, PYTHONNOUSERSITE="1", PIP_NO_INPUT="1")
        env.pop("PYTHONPATH", None)  # Blender's own paths must not leak into the new environment
        process = self._popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            self._log(line)
            if on_line is not None:
                on_line(line)
        code = process.wait()
        self._check_cancel()
        if code != 0:
            tail = [line for line in self.lines if line.strip()][-3:]
            raise _Failed(f"{failure} (exit status {code}): " + " | ".join(tail))

    def _check_cancel(self) -> None:
        if self.cancelled:
            raise Cancelled()

    def _set(self, stage: str, fraction: float) -> None:
        self.stage, self.fraction = stage, fraction

    def _log(self, line: str) -> None:
        self.lines.append(line)
        self._log_file.write(line + "\n")
        self._log_file.flush()

    def _end(self, state: str, message: str) -> None:
        self.message, self.stage = message, ""
        self.fraction = 1.0 if state == "finished" else self.fraction
        self.state = state  # last: readers poll `state`


class _Failed(Exception):
    pass
