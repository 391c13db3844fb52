"""The weights the original authors released: the catalogue, and getting one into the user weights folder.

`common/released_weights.json` lists every file with the address the authors' configs name.
`get(name)` downloads it to `<user weights>/.downloads/<file>.part` (resuming a cut transfer with an HTTP
Range request), checks it (the SHA-256 prefix torch.hub-style names carry; safe unpickling of tensors and
numpy scalars only; every key and shape against the architecture), converts it to this project's
`.safetensors` with a model card recording its address, date, SHA-256, licence and frame, and only then
renames it into the folder the registry reads. Nothing half-written is ever where the registry looks.
`OCCNET_WEIGHTS_MIRROR=http://host:port` fetches every address from that host with its path unchanged
(a local mirror, or the tests' server).
"""

from __future__ import annotations

import datetime
import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.errors import CheckpointError, InputError, OccNetError
from ..common.user_dirs import user_weights_dir
from ..common.weights_catalogue import released_catalogue
from .config import MAX_WEIGHTS_FILE_BYTES

ENV_MIRROR = "OCCNET_WEIGHTS_MIRROR"
DOWNLOADS = ".downloads"  # inside the user weights folder; the registry reads *.safetensors only
CHUNK = 1 << 16
TIMEOUT_S = 30.0  # for each read: a server silent this long has gone
# A server that trickles (a byte every 5 s never trips TIMEOUT_S: one such hung past 100 s) is given up on once a
# transfer, past its first MIN_RATE_AFTER_S, averages under MIN_RATE bytes a second; what came is kept to resume.
MIN_RATE = 16 << 10
MIN_RATE_AFTER_S = 60.0
MAX_DOWNLOAD_BYTES = MAX_WEIGHTS_FILE_BYTES  # a file larger than the loader accepts is not fetched
HASH_PREFIX = re.compile(r"-([a-f0-9]{8,})\.pt$")  # torch.hub: name-<first hex digits of the SHA-256>.pt

ProgressFn = Callable[[int, int], None]  # (bytes so far, total bytes or 0 when unknown)
CancelFn = Callable[[], bool]


class DownloadError(OccNetError):
    """A download that failed; the message says why and what to do."""


class DownloadCancelled(OccNetError):
    """The user cancelled; the partial file is kept so that the next `get` resumes it."""


@dataclass(frozen=True)
class ReleasedWeights:
    name: str
    url: str
    arch: str
    modality: str
    training_data: str
    licence: str
    licence_at: str
    note: str = ""
    values: int = 0  # parameters, where known (the file also holds the optimiser's state)
    loadable: bool = True

    @property
    def file_name(self) -> str:
        return urllib.parse.urlparse(self.url).path.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        match = HASH_PREFIX.search(self.file_name)
        return match.group(1) if match else ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "arch": self.arch, "modality": self.modality,
                "training_data": self.training_data, "licence": self.licence, "licence_at": self.licence_at,
                "note": self.note, "values": self.values, "loadable": self.loadable}


def catalogue() -> list[ReleasedWeights]:
    fields = set(ReleasedWeights.__dataclass_fields__)
    return [ReleasedWeights(**{k: v for k, v in entry.items() if k in fields}) for entry in released_catalogue()]


def find(name: str) -> ReleasedWeights:
    entries = catalogue()
    for entry in entries:
        if entry.name == name:
            return entry
    close = [e.name for e in entries if name.lower() in e.name]
    hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
    raise DownloadError(f"no released weights named {name!r}{hint}; `python -m blender_occnet weights list` "
                        "shows them")


def download_url(entry: ReleasedWeights) -> str:
    """The address, or the same path on $OCCNET_WEIGHTS_MIRROR."""
    mirror = os.environ.get(ENV_MIRROR, "").strip()
    if not mirror:
        return entry.url
    base, path = urllib.parse.urlparse(mirror), urllib.parse.urlparse(entry.url).path
    return urllib.parse.urlunparse((base.scheme, base.netloc, path, "", "", ""))


def get(name: str, folder: Path | None = None, progress: ProgressFn | None = None,
        should_cancel: CancelFn | None = None) -> Path:
    """Download, check and convert the released weights `name` into `folder` (the user weights folder by
    default); returns the new .safetensors file. Raises DownloadError, DownloadCancelled or CheckpointError
    with the folder as it was (a partial download stays in .downloads/ to be resumed)."""
    from .checkpoints import file_sha256, load_original_checkpoint, save_weights
    from .config import default_config

    entry = find(name)
    if not entry.loadable:
        raise DownloadError(f"{entry.name} cannot be used by this version: {entry.note}")
    folder = Path(folder) if folder is not None else user_weights_dir()
    partial_dir = folder / DOWNLOADS
    try:
        partial_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {partial_dir}: {exc.strerror or exc}; set OCCNET_WEIGHTS_DIR to a "
                            "writable folder") from None
    partial = partial_dir / f"{entry.name}.part"
    complete = partial_dir / f"{entry.name}.pt"  # the loader tells formats by content, not by name
    if complete.exists() and not partial.exists():  # an earlier get stopped after the download: reuse it
        os.replace(complete, partial)
    try:
        _fetch(download_url(entry), partial, progress, should_cancel)
    except OSError as exc:  # writing the partial file: a full disk, a folder gone
        raise DownloadError(f"cannot write {partial}: {exc.strerror or exc}; free some space (or set "
                            "OCCNET_WEIGHTS_DIR to another folder) and run the same command again") from None
    digest = file_sha256(partial)
    if entry.hash_prefix and not digest.startswith(entry.hash_prefix):
        partial.unlink()
        raise DownloadError(f"{entry.file_name}: the download's SHA-256 starts {digest[:len(entry.hash_prefix)]}, "
                            f"not {entry.hash_prefix} as its name says: it is damaged or not the authors' file "
                            "(deleted; try again, or check OCCNET_WEIGHTS_MIRROR)")
    os.replace(partial, complete)
    try:
        # Every key and shape must be the release's own before anything is converted: files without a hash in
        # their name are otherwise trusted on what a mirror serves.
        weights = load_original_checkpoint(complete, entry.arch, released=default_config(entry.arch))
    except (CheckpointError, InputError) as exc:
        complete.unlink()
        raise CheckpointError(f"{entry.name}: the downloaded file is not a usable {entry.arch} checkpoint "
                              f"(deleted): {exc}") from None
    weights.card = {**weights.card, "source": f"released by the authors: {entry.name}", "url": entry.url,
                    "downloaded": datetime.date.today().isoformat(), "source_sha256": digest,
                    "training_data": entry.training_data, "licence": entry.licence,
                    "licence_at": entry.licence_at,
                    "summary": f"{entry.note} (the authors' release)".strip()}
    target = folder / f"{entry.name}.safetensors"
    save_weights(target, weights)  # written beside, renamed into place whole
    complete.unlink()
    return target


def _fetch(url: str, partial: Path, progress: ProgressFn | None, should_cancel: CancelFn | None) -> None:
    """Append the rest of `url` to `partial`, resuming from its current size."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the partial file is already whole
            return
        raise DownloadError(f"{url}: the server answered {exc.code} {exc.reason}; the address may have moved "
                            "(see the authors' repository) or the mirror lacks the file") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(_network_message(url, exc)) from None
    with response:
        resumed = response.status == 206
        if have and not resumed:
            have = 0  # the server sent the whole file: start over
        length = int(response.headers.get("Content-Length") or 0)
        total = have + length if length else 0
        if total > MAX_DOWNLOAD_BYTES:
            partial.unlink(missing_ok=True)
            raise DownloadError(_too_large(url, total))
        started = time.monotonic()
        with open(partial, "ab" if resumed else "wb") as out:
            done = have
            while True:
                if should_cancel is not None and should_cancel():
                    raise DownloadCancelled(f"download cancelled; {done:,} bytes kept in {partial} for the next "
                                            "try to resume")
                try:
                    chunk = response.read1(CHUNK)  # what has come, not a whole CHUNK: the checks run as bytes trickle
                except (OSError, ValueError, http.client.HTTPException) as exc:
                    raise DownloadError(f"{url}: the transfer broke off after {done:,} bytes ({exc}); run the "
                                        "same command again to resume") from None
                if not chunk:
                    break
                out.write(chunk)
                out.flush()  # on disk at once: a cancel that ends the process keeps every byte reported
                done += len(chunk)
                if done > MAX_DOWNLOAD_BYTES:
                    out.close()
                    partial.unlink()
                    raise DownloadError(_too_large(url, done))
                seconds = time.monotonic() - started
                if seconds > MIN_RATE_AFTER_S and done - have < MIN_RATE * seconds:
                    raise DownloadError(f"{url}: the transfer is too slow ({done - have:,} bytes in {seconds:.0f} s); "
                                        f"{done:,} bytes kept: run the same command again to resume (or check "
                                        "OCCNET_WEIGHTS_MIRROR)")
                if progress is not None:
                    progress(done, total)
    if total and done < total:
        raise DownloadError(f"{url}: the transfer broke off after {done:,} of {total:,} bytes; run the same "
                            "command again to resume")


def _too_large(url: str, size: int) -> str:
    return (f"{url}: the file is at least {size:,} bytes, more than the {MAX_DOWNLOAD_BYTES:,} any weights file needs: "
            "not the authors' file (nothing kept; check OCCNET_WEIGHTS_MIRROR)")


def _network_message(url: str, exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    return f"{url}: cannot connect ({reason}); check the network connection (or OCCNET_WEIGHTS_MIRROR)"
