"""Many inputs in one command (blender_occnet/batch.py): a folder, a pattern or several files reconstructed with the
network loaded once, results named after their inputs, a failed input reported and skipped, nothing the user had
replaced unless asked, and a run resumed with --skip-existing; --jobs N workers give the same results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blender_occnet.cli import main as cli_main

FAST = ["--resolution", "32", "--weights", str(Path(__file__).resolve().parents[2] / "blender_occnet" / "weights"
                                                 / "pointcloud.safetensors")]


def ellipsoid(path: Path, radii: tuple[float, float, float], seed: int) -> None:
    d = np.random.default_rng(seed).normal(size=(600, 3))
    np.savetxt(path, d / np.linalg.norm(d, axis=1, keepdims=True) * radii, fmt="%.5f")


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    folder = tmp_path / "scans"
    (folder / "north").mkdir(parents=True)
    ellipsoid(folder / "rock.xyz", (0.5, 0.3, 0.4), 0)
    ellipsoid(folder / "north" / "rock.xyz", (0.3, 0.3, 0.5), 1)  # the same name in a subfolder: kept apart
    ellipsoid(folder / "pebble.xyz", (0.2, 0.2, 0.2), 2)
    (folder / "broken.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n"
                                       "1\n2\n3\n")
    (folder / "notes.md").write_text("not an input")
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = cli_main(["reconstruct", *argv, *FAST, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip().startswith("{") else {}


def test_a_folder_is_reconstructed_file_by_file_and_a_bad_one_skipped(scans: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "meshes"
    code, report = run(capsys, str(scans), "-o", str(out), "--format", "ply")
    assert code == 1 and report["failed"] == 1  # the broken file fails the run's status, not the run
    status = {Path(row["input"]).relative_to(scans).as_posix(): row["status"] for row in report["results"]}
    assert status == {"broken.ply": "failed", "north/rock.xyz": "ok", "pebble.xyz": "ok", "rock.xyz": "ok"}
    failed = next(row for row in report["results"] if row["status"] == "failed")
    assert "no y or z property" in failed["error"] and "\n" not in failed["error"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "north/rock.ply", "pebble.ply", "rock.ply"]
    assert all(row["faces"] > 100 for row in report["results"] if row["status"] == "ok")


def test_results_that_exist_are_kept_unless_asked_and_skip_existing_resumes(
        scans: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (scans / "broken.ply").unlink()
    out = tmp_path / "meshes"
    out.mkdir()
    (out / "rock.obj").write_text("the user's own file")
    with pytest.raises(SystemExit):  # a usage error: nothing run, nothing written
        cli_main(["reconstruct", str(scans), "-o", str(out), *FAST])
    assert "--skip-existing" in capsys.readouterr().err and sorted(p.name for p in out.iterdir()) == ["rock.obj"]
    code, report = run(capsys, str(scans), "-o", str(out), "--skip-existing")
    assert code == 0 and (out / "rock.obj").read_text() == "the user's own file"
    assert [row["status"] for row in report["results"]].count("skipped (exists)") == 1
    assert (out / "pebble.obj").exists() and (out / "north" / "rock.obj").exists()
    code, report = run(capsys, str(scans), "-o", str(out), "--overwrite")
    assert code == 0 and (out / "rock.obj").read_text().startswith(("#", "v ", "o "))


def test_workers_give_the_results_one_process_gives(scans: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (scans / "broken.ply").unlink()
    pattern = str(scans / "*.xyz")  # a pattern: the two files at the top
    code, one = run(capsys, pattern, "-o", str(tmp_path / "one"))
    code_two, two = run(capsys, pattern, "-o", str(tmp_path / "two"), "--jobs", "2")
    assert code == code_two == 0
    assert [Path(r["output"]).name for r in one["results"]] == [Path(r["output"]).name for r in two["results"]] \
        == ["pebble.obj", "rock.obj"]
    for a, b in zip(one["results"], two["results"]):
        assert abs(a["faces"] - b["faces"]) <= 0.02 * a["faces"], (a, b)


def test_a_pattern_that_matches_nothing_and_an_output_file_say_what_to_do(
        scans: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["reconstruct", str(scans / "*.e57"), "-o", str(tmp_path / "out"), *FAST])
    assert "no inputs found in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["reconstruct", str(scans), "-o", str(tmp_path / "out.obj"), *FAST])
    assert "-o names the folder" in capsys.readouterr().err and not (tmp_path / "out.obj").exists()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_mid_folder_leaves_whole_results_one_line_and_resumes(tmp_path: Path, jobs: str) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    for seed in range(6):
        ellipsoid(scans / f"{seed}.xyz", (0.5, 0.3, 0.4), seed)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "blender_occnet", "reconstruct", str(scans), "-o", str(out), "--jobs", jobs,
               "--quiet", *FAST]  # fitted, as by default: a second or more a file, so the interrupt comes midway
    # As from a terminal: a suite started in the background (`cmd &` without job control) ignores SIGINT, and
    # its children would inherit that.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not (out.is_dir() and any(p.suffix == ".obj" for p in out.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("interrupted after ")
    assert "run the same command again with --skip-existing" in stderr
    kept = sorted(out.iterdir())
    assert 1 <= len(kept) < 6 and all(p.suffix == ".obj" for p in kept), kept  # no partial file left
    before = {p.name: p.read_bytes() for p in kept}
    time.sleep(1.0)  # workers, interrupted too, have ended: nothing more appears
    assert sorted(out.iterdir()) == kept
    resumed = subprocess.run([*command, "--skip-existing", "--fit", "off"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert len(list(out.iterdir())) == 6 and {name: (out / name).read_bytes() for name in before} == before
