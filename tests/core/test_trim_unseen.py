"""Trim unseen (occnet/support.py, the `trim_unseen` setting): the surface no point shows is cut away where the
scan ends, gaps narrower than twice the distance stay closed, and it is a live extraction setting (no refit)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from blender_occnet.cli import main as cli_main
from blender_occnet.occnet.checkpoints import load_weights
from blender_occnet.occnet.generation import ExtractionSettings, Reconstructor
from blender_occnet.occnet.preprocess import prepare_pointcloud
from blender_occnet.occnet.support import trim_unseen

BUNDLED = Path(__file__).resolve().parents[2] / "blender_occnet" / "weights"


def sphere_mesh() -> tuple[np.ndarray, np.ndarray]:
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.4)
    return np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces, np.int64)


def front_half(n: int, seed: int) -> np.ndarray:
    """A scan of a 0.4 sphere from above: its upper half only."""
    d = np.random.default_rng(seed).normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return (0.4 * d[d[:, 2] > 0]).astype(np.float32)


def rows(gap: float) -> np.ndarray:
    """A line scan of the whole 0.4 sphere: circles of latitude `gap` apart along it (a point at each pole), points
    0.002 apart along each."""
    points = []
    for theta in np.linspace(0, np.pi, int(round(np.pi * 0.4 / gap)) + 1):
        radius, z = 0.4 * np.sin(theta), 0.4 * np.cos(theta)
        angles = np.linspace(0, 2 * np.pi, max(1, int(2 * np.pi * radius / 0.002)), endpoint=False)
        points.append(np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full_like(angles, z)], 1))
    return np.concatenate(points).astype(np.float32)


def open_edges(faces: np.ndarray) -> int:
    return int(len(trimesh.Trimesh(faces=faces, vertices=np.zeros((faces.max() + 1, 3)), process=False)
                   .edges_unique) * 2 - 3 * len(faces))  # edges used once: 2E - 3F on a manifold mesh


def test_the_back_of_a_one_sided_scan_goes_and_the_seen_side_stays_whole() -> None:
    vertices, faces = sphere_mesh()
    kept_vertices, kept_faces, removed = trim_unseen(vertices, faces, front_half(40_000, 0), 0.05)
    centres = vertices[faces].mean(axis=1)
    kept_centres = kept_vertices[kept_faces].mean(axis=1)
    assert removed == len(faces) - len(kept_faces) > 0.4 * len(faces)
    assert np.sum(centres[:, 2] > 0.005) == np.sum(kept_centres[:, 2] > 0.005)  # every seen face kept
    # The cut follows the scan's edge (z = 0) within its near band, not `reach` (0.05) below it.
    assert kept_centres[:, 2].min() > -0.02
    assert open_edges(kept_faces) > 0 and open_edges(faces) == 0


def test_gaps_narrower_than_twice_the_distance_stay_closed() -> None:
    vertices, faces = sphere_mesh()
    scan = rows(0.04)  # faces midway between rows lie 0.02 from the points
    kept_vertices, kept_faces, removed = trim_unseen(vertices, faces, scan, 0.05)
    assert removed == 0 and len(kept_faces) == len(faces)
    _, narrow_faces, removed = trim_unseen(vertices, faces, scan, 0.015)  # a distance under the gap: strips go
    assert removed > 0.1 * len(faces) and open_edges(narrow_faces) > 0


def test_a_sparse_cloud_keeps_its_gaps_closed_and_a_mesh_far_from_the_points_is_left_whole() -> None:
    vertices, faces = sphere_mesh()
    d = np.random.default_rng(1).normal(size=(300, 3))
    sparse = (0.4 * d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
    assert trim_unseen(vertices, faces, sparse, 0.2)[2] == 0
    # Below three spacings (about 0.12 here) the near band decides; the few faces of the widest gaps of a random cloud
    # that lie past it form patches narrower than two bands, which stay.
    assert trim_unseen(vertices, faces, sparse, 0.01)[2] == 0
    assert trim_unseen(vertices, faces, np.zeros((0, 3), np.float32), 0.05)[2] == 0
    far_away = trim_unseen(vertices, faces, sparse + np.float32(5), 0.05)  # weights that miss the cloud entirely
    assert far_away[2] is None and len(far_away[1]) == len(faces)


@pytest.fixture(scope="module")
def reconstructor() -> Reconstructor:
    return Reconstructor(load_weights(BUNDLED / "pointcloud.safetensors"), "cpu")


def test_trimming_is_a_live_extraction_setting_and_undone_by_zero(reconstructor: Reconstructor) -> None:
    shape = reconstructor.encode(prepare_pointcloud(front_half(6000, 2), keep_observed=True), fit="on")
    closed = shape.extract(ExtractionSettings(resolution=64))
    trimmed = shape.extract(ExtractionSettings(resolution=64, trim_unseen=0.05))
    again = shape.extract(ExtractionSettings(resolution=64))
    assert closed.vertices[:, 2].min() < -0.03  # the network closes the half sphere below its rim
    assert trimmed.stats["faces_unseen_trimmed"] > 0 and len(trimmed.faces) < 0.8 * len(closed.faces)
    # The cut follows the rim's near band (three spacings of these 3,000 points, about 0.05), whatever the distance.
    farther = shape.extract(ExtractionSettings(resolution=64, trim_unseen=0.3))
    assert trimmed.vertices[:, 2].min() > -0.06
    assert abs(farther.vertices[:, 2].min() - trimmed.vertices[:, 2].min()) < 0.01
    assert trimmed.stats["points_evaluated"] == 0  # the same field, nothing evaluated again
    assert len(again.faces) == len(closed.faces) and "faces_unseen_trimmed" not in again.stats


def boundary_loops(faces: np.ndarray) -> int:
    mesh = trimesh.Trimesh(faces=faces, vertices=np.zeros((faces.max() + 1, 3)), process=False)
    edges = mesh.edges_sorted
    return len(trimesh.graph.connected_components(edges[trimesh.grouping.group_rows(edges, require_count=1)]))


def test_the_network_alone_keeps_its_seen_side_whole_though_it_lies_off_the_points(
        reconstructor: Reconstructor) -> None:
    """Unfitted, the surface lies up to about 0.04 off the points: the near band's floor covers it (with the fitted
    mesh's 0.01 the seen side came back with holes)."""
    shape = reconstructor.encode(prepare_pointcloud(front_half(40_000, 4)), fit="off")
    trimmed = shape.extract(ExtractionSettings(resolution=64, trim_unseen=0.03))
    assert trimmed.stats["faces_unseen_trimmed"] > 0 and boundary_loops(trimmed.faces) == 1


def terrain(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return 0.05 * np.sin(7 * u) * np.cos(5 * v) + 0.03 * np.sin(13 * u + 3 * v)


def test_a_scanned_sheet_keeps_no_shelf_standing_off_it(reconstructor: Reconstructor) -> None:
    """A terrain patch scanned from above, which the network draws as a slab with bubbles: trimmed, what stays lies
    on the sheet (without the rule for faces off the points' own planes, 1.8% of the faces stood 0.01-0.026 off it,
    the walls of the bubbles the trim opened)."""
    rng = np.random.default_rng(0)
    u, v = rng.uniform(-0.5, 0.5, 20_000), rng.uniform(-0.35, 0.35, 20_000)
    shape = reconstructor.encode(prepare_pointcloud(np.stack([u, terrain(u, v), v], 1).astype(np.float32),
                                                    keep_observed=True), fit="on")
    trimmed = shape.extract(ExtractionSettings(resolution=128, trim_unseen=0.03))
    centres = trimmed.vertices[trimmed.faces].mean(axis=1)
    height = np.abs(centres[:, 1] - terrain(centres[:, 0], centres[:, 2]))
    assert (height > 0.01).mean() < 0.001 and trimmed.stats["faces_unseen_trimmed"] > 0.3 * len(trimmed.faces)


def test_the_command_line_trims_and_refuses_a_distance_out_of_range(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "half.npy"
    np.save(source, front_half(6000, 3))
    assert cli_main(["reconstruct", str(source), "-o", str(tmp_path / "half.ply"), "--resolution", "64",
                     "--trim-unseen", "0.05", "--json", "--quiet"]) == 0
    stats = json.loads(capsys.readouterr().out)
    mesh = trimesh.load(tmp_path / "half.ply", process=False)
    assert stats["faces_unseen_trimmed"] > 0 and not mesh.is_watertight and mesh.bounds[0, 2] > -0.06
    assert cli_main(["reconstruct", str(source), "-o", str(tmp_path / "bad.ply"), "--trim-unseen", "2"]) == 1
    assert "trim_unseen must be a fraction of the object's size between 0 and 0.5, got 2.0" in capsys.readouterr().err
    assert not (tmp_path / "bad.ply").exists()


def test_trimming_what_is_not_a_point_cloud_says_it_left_the_mesh_whole(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    grid = np.zeros((32, 32, 32), bool)
    grid[8:24, 8:24, 8:24] = True
    np.save(tmp_path / "cube.npy", grid)
    assert cli_main(["reconstruct", str(tmp_path / "cube.npy"), "-o", str(tmp_path / "cube.ply"), "--resolution",
                     "32", "--trim-unseen", "0.05"]) == 0
    assert "warning: Trim unseen applies to point clouds only: this mesh is left whole" in capsys.readouterr().out
    assert trimesh.load(tmp_path / "cube.ply", process=False).is_watertight
