"""Many inputs in one command (`python -m blender_occnet reconstruct DIR_OR_PATTERN... -o OUTDIR`): the network is
loaded once (per modality, per worker), each result is named after its input (a folder's subfolders kept), a
failed input is reported in one line and skipped, and a summary (or `--json`) closes the run.

Results are written atomically (files.atomic_output, through the mesh writers), so `--skip-existing` after an
interruption never trusts a half-written file. Results that exist are never replaced unless `--overwrite` says so.
`--jobs N` runs N worker processes of this same command, each given its share of the inputs in a list file and
answering with one JSON line per input (no pickle between processes).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .common.messages import input_warnings
from .occnet.meshio import POINT_SUFFIXES
from .occnet.preprocess import IMAGE_SUFFIXES

INPUT_SUFFIXES = frozenset(POINT_SUFFIXES + IMAGE_SUFFIXES + (".binvox",))
PATTERN_CHARACTERS = "*?["
MAX_LIST_LINE = 8192  # a worker's list file: one "input<TAB>output" a line

# The reconstruct options a --jobs worker is not given as its parent was: which inputs and where (its list file),
# its threads (a share of the cores), and what only the parent does (the summary, resuming, the file format).
PARENT_ONLY = {"output", "quiet", "worker_list", "threads", "jobs", "skip_existing", "overwrite", "format", "json"}


def is_many(args: argparse.Namespace) -> bool:
    """Whether a reconstruct command names many inputs: several, a folder, or a pattern that is not a file."""
    inputs: list[str] = args.input
    return bool(args.worker_list) or len(inputs) > 1 or any(
        Path(i).is_dir() or (not Path(i).exists() and any(c in i for c in PATTERN_CHARACTERS)) for i in inputs)


def collect(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(input file, the name of its result relative to the output folder, without suffix), in a stable order."""
    from .cli import UsageError

    found: list[tuple[Path, Path]] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            found += [(p, p.relative_to(path).with_suffix("")) for p in files]
        elif path.is_file():
            found.append((path, Path(path.stem)))
        elif any(c in given for c in PATTERN_CHARACTERS):
            matches = sorted(Path(m) for m in glob.glob(given, recursive=True) if Path(m).is_file())
            found += [(m, Path(m.stem)) for m in matches]
        else:
            raise UsageError(f"{given}: no such file, folder or pattern match")
    names: dict[Path, Path] = {}
    for source, name in found:
        if name in names and names[name] != source:
            raise UsageError(f"{names[name]} and {source} would both be written as {name}: give them in separate "
                             "commands or reconstruct their folder, whose subfolders are kept")
        names[name] = source
    return list(dict.fromkeys(found))


def reconstruct_many(args: argparse.Namespace) -> int:
    from .cli import UsageError

    if args.worker_list:
        return _work_through_list(Path(args.input[0]), args)
    items = collect(args.input)
    if not items:
        raise UsageError(f"no inputs found in {' '.join(args.input)} (inputs end in "
                         f"{', '.join(sorted(INPUT_SUFFIXES))})")
    out = Path(args.output)
    if out.suffix and not out.is_dir():
        raise UsageError(f"{out}: with many inputs, -o names the folder for their results (they are named after "
                         "their inputs; --format chooses the file type)")
    if not 1 <= args.jobs <= 64:
        raise UsageError(f"--jobs must be from 1 to 64, got {args.jobs}")
    out.mkdir(parents=True, exist_ok=True)
    plan = [(source, out / name.with_name(f"{name.name}.{args.format}")) for source, name in items]
    existing = [result for _, result in plan if result.exists()]
    if existing and not (args.skip_existing or args.overwrite):
        raise UsageError(f"{len(existing)} result(s) exist already in {out} (e.g. {existing[0]}): --skip-existing "
                         "leaves them and reconstructs the rest (resuming a run), --overwrite replaces them")
    rows: list[dict[str, Any]] = [{"input": str(s), "output": str(r), "status": "skipped (exists)"}
                                  for s, r in plan if args.skip_existing and r.exists()]
    todo = [(s, r) for s, r in plan if not (args.skip_existing and r.exists())]
    started = time.perf_counter()
    bar = _Bar(len(todo), args.quiet)
    try:
        if args.jobs > 1 and len(todo) > 1:
            rows += _in_workers(todo, args, bar)
        else:
            rows += _in_process(todo, args, bar)
    except KeyboardInterrupt:
        bar.close()
        # Results are written whole (atomically) or not at all, so what is there can be kept.
        print(f"interrupted after {bar.ok} of {len(todo)} reconstructed (each result written is whole): run the same "
              "command again with --skip-existing to do the rest", file=sys.stderr)
        return 130
    bar.close()
    failed = [row for row in rows if row["status"] == "failed"]
    if args.json:
        print(json.dumps({"results": rows, "seconds": round(time.perf_counter() - started, 3),
                          "failed": len(failed)}, indent=2))
    elif not args.quiet:
        print(summary(rows, time.perf_counter() - started))
    return 1 if failed else 0


def summary(rows: list[dict[str, Any]], seconds: float) -> str:
    lines = [f"{'input':40s} {'status':18s} {'faces':>10s} {'seconds':>8s}"]
    for row in rows:
        faces = f"{row['faces']:,}" if "faces" in row else ""
        took = f"{row['seconds']:.1f}" if "seconds" in row else ""
        lines.append(f"{_short(row['input'], 40):40s} {row['status']:18s} {faces:>10s} {took:>8s}")
    done = sum(row["status"] == "ok" for row in rows)
    failed = [row for row in rows if row["status"] == "failed"]
    lines.append(f"{done} reconstructed, {len(failed)} failed, {len(rows) - done - len(failed)} skipped in "
                 f"{seconds:.1f} s")
    lines += [failure(row) for row in failed]
    lines += [f"warning: {row['input']}: {row['warning']}" for row in rows if row.get("warning")]
    return "\n".join(lines)


def failure(row: dict[str, Any]) -> str:
    """One line for a failed input (its error names the file already when it came from reading it)."""
    error = str(row["error"])
    return f"failed: {error}" if error.startswith(row["input"]) else f"failed: {row['input']}: {error}"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


class _Bar:
    """tqdm over the inputs on stderr, or nothing with --quiet."""

    def __init__(self, total: int, quiet: bool):
        self.tqdm = None
        self.ok = 0  # inputs reconstructed so far
        if not quiet:
            from tqdm import tqdm

            self.tqdm = tqdm(total=total, unit="input", file=sys.stderr)

    def advance(self, row: dict[str, Any]) -> None:
        self.ok += row["status"] == "ok"
        if self.tqdm is not None:
            if row["status"] == "failed":
                self.tqdm.write(failure(row), file=sys.stderr)
            if row.get("warning"):
                self.tqdm.write(f"warning: {row['input']}: {row['warning']}", file=sys.stderr)
            self.tqdm.update(1)

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()


def _in_process(todo: list[tuple[Path, Path]], args: argparse.Namespace, bar: _Bar) -> list[dict[str, Any]]:
    from .cli import UsageError, _Networks, _reconstruct_file
    from .common.errors import OccNetError

    networks = _Networks(args)
    rows = []
    for source, result in todo:
        started = time.perf_counter()
        row: dict[str, Any] = {"input": str(source), "output": str(result)}
        try:
            result.parent.mkdir(parents=True, exist_ok=True)
            stats, _ = _reconstruct_file(source, result, args, networks, None)
            row.update(status="ok", faces=int(stats["faces"]), vertices=int(stats["vertices"]))
            warnings = input_warnings(stats)
            if warnings:
                row["warning"] = "; ".join(warnings)
        except (OccNetError, UsageError, OSError) as exc:
            row.update(status="failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        row["seconds"] = round(time.perf_counter() - started, 3)
        rows.append(row)
        bar.advance(row)
    return rows


def _work_through_list(listing: Path, args: argparse.Namespace) -> int:
    """A worker of --jobs: the inputs of its list file, one JSON line a result on stdout."""
    # The parent stops its workers with SIGINT (_stop), even where the run was started with SIGINT ignored (a
    # background job), which a worker would otherwise inherit.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    todo = []
    with open(listing, encoding="utf-8") as handle:
        for line in iter(lambda: handle.readline(MAX_LIST_LINE), ""):
            source, _, result = line.rstrip("\n").partition("\t")
            todo.append((Path(source), Path(result)))

    class Lines(_Bar):
        def __init__(self) -> None:
            super().__init__(0, quiet=True)

        def advance(self, row: dict[str, Any]) -> None:
            print(json.dumps(row), flush=True)

    _in_process(todo, args, Lines())
    return 0


def _in_workers(todo: list[tuple[Path, Path]], args: argparse.Namespace, bar: _Bar) -> list[dict[str, Any]]:
    jobs = min(args.jobs, len(todo))
    threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)  # the cores shared out, not oversubscribed
    from .cli import given_options

    settings = [*given_options(args, PARENT_ONLY), "--threads", str(threads)]  # every setting the person gave
    lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="occnet-batch-") as folder:
        workers = []
        for index in range(jobs):
            share = todo[index::jobs]
            listing = Path(folder) / f"inputs-{index}.txt"
            listing.write_text("".join(f"{s}\t{r}\n" for s, r in share), encoding="utf-8")
            command = [sys.executable, "-m", "blender_occnet", "reconstruct", str(listing), "--worker-list", "-o",
                       str(args.output), "--quiet", *settings]
            # stderr to a file: a pipe nobody reads until the end would stall a worker that warns a lot.
            errors = open(Path(folder) / f"errors-{index}.txt", "w+", encoding="utf-8", errors="replace")
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
            workers.append((process, share, errors))
            threading.Thread(target=_read_lines, args=(index, process, lines), daemon=True).start()
        try:
            rows += _answers(workers, lines, bar)
        finally:  # interrupted (Ctrl+C): the workers end with it, not carry on unseen
            _stop(process for process, _, _ in workers)
    order = {str(s): i for i, (s, _) in enumerate(todo)}
    return sorted(rows, key=lambda row: order.get(row["input"], len(order)))


def _stop(processes: Iterable[subprocess.Popen[str]]) -> None:
    """End workers still running as Ctrl+C ends the parent (on POSIX an interrupt, so that a result being
    written is removed by its writer, not left as a partial file), and wait for them."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        if os.name == "posix":
            process.send_signal(signal.SIGINT)
        else:
            process.terminate()
    for process in running:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _answers(workers: list[tuple[subprocess.Popen[str], list[tuple[Path, Path]], Any]],
             lines: queue.Queue[tuple[int, str | None]], bar: _Bar) -> list[dict[str, Any]]:
    """The workers' rows as they come, and a failed row for each input a worker ended without answering."""
    rows: list[dict[str, Any]] = []
    finished = 0
    answered: list[set[str]] = [set() for _ in workers]
    while finished < len(workers):
        index, line = lines.get()
        if line is None:
            finished += 1
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        answered[index].add(row["input"])
        rows.append(row)
        bar.advance(row)
    for (process, share, errors), got in zip(workers, answered):
        process.wait()
        errors.seek(max(0, errors.seek(0, os.SEEK_END) - 4096))  # its last words: why it ended
        error = errors.read().strip().splitlines()
        errors.close()
        for source, result in share:  # a worker that ended early: what it never answered failed
            if str(source) not in got:
                row = {"input": str(source), "output": str(result), "status": "failed",
                       "error": f"the worker process ended ({error[-1] if error else process.returncode})"}
                rows.append(row)
                bar.advance(row)
    return rows


def _read_lines(index: int, process: subprocess.Popen[str], lines: queue.Queue[tuple[int, str | None]]) -> None:
    assert process.stdout is not None
    for line in iter(lambda: process.stdout.readline(65_536), ""):  # type: ignore[union-attr]
        lines.put((index, line))
    lines.put((index, None))
