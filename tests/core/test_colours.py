"""Colours from a coloured input onto the result (occnet/colours.py): the files that carry them in, the command line
and the core with the bundled weights, the files that carry them out, and what the messages accept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from blender_occnet.cli import main as cli_main
from blender_occnet.common import messages
from blender_occnet.occnet.colours import colour_source, vertex_colours
from blender_occnet.occnet.meshio import read_coloured_points, write_mesh

RED, BLUE = (255, 0, 0), (0, 0, 255)


def half_red_sphere(n: int = 4000, seed: int = 0, centre: tuple[float, float, float] = (0.0, 0.0, 0.0),
                    radius: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Points on a sphere, red above its equator (z > 0) and blue below, as uint8."""
    d = np.random.default_rng(seed).normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    colours = np.where(d[:, 2:3] > 0, RED, BLUE).astype(np.uint8)
    return (d * radius + centre).astype(np.float32), colours


def assert_red_above_blue_below(vertices: np.ndarray, colours: np.ndarray, centre_z: float = 0.0,
                                margin: float = 0.05) -> None:
    """Every vertex clearly above the equator red, every one clearly below blue."""
    assert colours is not None and len(colours) == len(vertices)
    up, down = vertices[:, 2] > centre_z + margin, vertices[:, 2] < centre_z - margin
    assert up.sum() > 100 and down.sum() > 100
    assert (colours[up, 0] > 200).all() and (colours[up, 2] < 55).all()
    assert (colours[down, 2] > 200).all() and (colours[down, 0] < 55).all()


def read_back(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    loaded = trimesh.load(path, process=False)
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_geometry()
    colours = loaded.visual.vertex_colors[:, :3] if loaded.visual.kind == "vertex" else None
    return np.asarray(loaded.vertices), colours


def test_the_command_line_colours_the_red_half_red(tmp_path: Path) -> None:
    """A half-red, half-blue PLY cloud through the command line (bundled weights, fitted as by default): the
    result's vertices above the equator are red, below blue, in the PLY written; --no-colours writes none."""
    points, colours = half_red_sphere()
    source = tmp_path / "ball.ply"
    trimesh.PointCloud(points, colors=colours).export(source)
    out = tmp_path / "ball_out.ply"
    assert cli_main(["reconstruct", str(source), "-o", str(out), "--resolution", "64", "--quiet"]) == 0
    vertices, written = read_back(out)
    assert written is not None
    assert_red_above_blue_below(vertices, written)
    plain = tmp_path / "plain.ply"
    assert cli_main(["reconstruct", str(source), "-o", str(plain), "--resolution", "64", "--quiet",
                     "--no-colours"]) == 0
    assert read_back(plain)[1] is None
    assert b"red" not in plain.read_bytes()[:400]


def test_text_and_npz_clouds_bring_their_colours(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """XYZRGB (0-255 and 0-1), Leica PTS (count line, intensity column) and an .npz with 'colors' all colour the
    result; the JSON says so."""
    points, colours = half_red_sphere(3000, seed=1)
    np.savetxt(tmp_path / "a.xyz", np.hstack([points, colours]), fmt="%.6f %.6f %.6f %d %d %d")
    np.savetxt(tmp_path / "b.xyzrgb", np.hstack([points, colours / 255.0]), fmt="%.6f", delimiter=",")
    with open(tmp_path / "c.pts", "w") as handle:
        handle.write(f"{len(points)}\n")
        np.savetxt(handle, np.hstack([points, np.full((len(points), 1), -1200), colours]),
                   fmt="%.6f %.6f %.6f %d %d %d %d")
    np.savez(tmp_path / "d.npz", points=points, colors=colours)
    for name in ("a.xyz", "b.xyzrgb", "c.pts", "d.npz"):
        read, source = read_coloured_points(tmp_path / name)
        assert source is not None and len(read) == len(points), name
        assert np.allclose(source.colours * 255, colours, atol=1), name
    out = tmp_path / "c.obj"
    assert cli_main(["reconstruct", str(tmp_path / "c.pts"), "-o", str(out), "--resolution", "32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["colours"] is True
    assert_red_above_blue_below(*read_back(out))


def test_a_mesh_file_s_vertex_colours_colour_the_result_of_its_surface_samples(tmp_path: Path) -> None:
    """A coloured mesh (its surface sampled for the network) gives its vertices' colours, through our own
    OBJ reader (`v x y z r g b`) and trimesh's PLY reader alike."""
    ball = trimesh.creation.icosphere(3, radius=0.4)
    colours = np.where(ball.vertices[:, 2:3] > 0, RED, BLUE).astype(np.uint8)
    write_mesh(tmp_path / "ball.obj", ball.vertices, ball.faces, colours=colours)
    write_mesh(tmp_path / "ball.ply", ball.vertices, ball.faces, colours=colours)
    for name in ("ball.obj", "ball.ply"):
        points, source = read_coloured_points(tmp_path / name)
        assert len(points) == 100_000 and source is not None and len(source.points) == len(ball.vertices)
        assert np.array_equal(np.rint(source.colours * 255).astype(np.uint8), colours), name


def test_every_format_that_can_hold_colours_writes_them(tmp_path: Path) -> None:
    ball = trimesh.creation.icosphere(2, radius=0.4)
    colours = np.where(ball.vertices[:, 2:3] > 0, RED, BLUE).astype(np.uint8)
    for suffix in (".ply", ".obj", ".glb"):
        write_mesh(tmp_path / f"m{suffix}", ball.vertices, ball.faces, colours=colours)
        vertices, read = read_back(tmp_path / f"m{suffix}")
        assert read is not None and np.array_equal(read, colours), suffix
    assert b"COLOR_0" in (tmp_path / "m.glb").read_bytes()
    write_mesh(tmp_path / "m.off", ball.vertices, ball.faces, colours=colours)  # COFF: x y z r g b a per vertex
    lines = (tmp_path / "m.off").read_text().splitlines()
    assert lines[0] == "COFF" and lines[1] == f"{len(ball.vertices)} {len(ball.faces)} 0"
    rows = np.array([line.split() for line in lines[2:2 + len(ball.vertices)]], float)
    assert np.allclose(rows[:, :3], ball.vertices, atol=1e-5) and np.array_equal(rows[:, 3:6], colours)


def test_a_stray_colour_among_the_nearest_points_is_left_out() -> None:
    """Robust to outliers: one blue speck among a vertex's red neighbours leaves it red, and a point of the other
    side of a thin wall, further than twice the nearest, does not tint it."""
    rng = np.random.default_rng(2)
    wall = rng.random((4000, 3)) * [1, 1, 0]  # a red sheet at z = 0
    colours = np.tile(np.array(RED, np.uint8), (len(wall), 1))
    colours[::50] = BLUE  # one point in fifty is a blue speck
    back = rng.random((4000, 3)) * [1, 1, 0] + [0, 0, 0.05]  # a blue sheet just behind it
    source = colour_source(np.vstack([wall, back]), np.vstack([colours, np.tile(np.uint8(BLUE), (4000, 1))]))
    assert source is not None
    probe = rng.random((500, 3)) * [0.8, 0.8, 0] + [0.1, 0.1, 0.005]  # vertices on the red sheet's side
    got = vertex_colours(probe, source)
    assert (got[:, 0] == 255).all() and (got[:, 2] == 0).all()


def test_the_messages_carry_colours_and_bound_them() -> None:
    points, colours = half_red_sphere(100)
    request = messages.Reconstruct(modality="pointcloud", input=points, point_colours=colours, colours=True)
    header, arrays = request.to_frame()
    assert header["colours"] is True and set(arrays) == {"input", "point_colours"}
    again = messages.Reconstruct.from_frame(header, arrays)
    assert again.point_colours is not None and np.array_equal(again.point_colours, colours)
    for bad, says in ((colours[:50], "one per point"), (colours.astype(np.float32), "[0, 1]"),
                      (colours[:, :2], "N x 3")):
        with pytest.raises(messages.FieldError, match="point_colours") as refused:
            messages.Reconstruct(modality="pointcloud", input=points, point_colours=bad)
        assert says in str(refused.value)
    with pytest.raises(messages.FieldError, match="not to image input"):
        messages.Reconstruct(modality="image", input=np.zeros((8, 8, 3), np.uint8), point_colours=colours[:8])
    with pytest.raises(messages.FieldError, match="one per vertex"):
        messages.Result(job="j", vertices=points, faces=np.zeros((1, 3), np.int32), colours=colours[:3],
                        stats=messages.Stats(faces=1, vertices=100, points_evaluated=0, points_reused=0,
                                             points_total=0, device="cpu", seconds_backend=0.0),
                        settings=messages.Settings(), loc=[0.0, 0.0, 0.0], scale=1.0)


def test_bad_colour_inputs_get_one_line_saying_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    points, colours = half_red_sphere(100)
    np.savez(tmp_path / "short.npz", points=points, colors=colours[:50])
    np.savez(tmp_path / "wide.npz", points=points, colors=colours * 1.0)  # 0-255 as floats
    (tmp_path / "long.xyz").write_text("1 " * 5000)  # no line breaks: refused before it is held whole
    for name, says in (("short.npz", "50 colours for 100 points; give one per point"),
                       ("wide.npz", "float colours must lie in [0, 1] (bytes: 0 to 255 as uint8)"),
                       ("long.xyz", "a line of over 1024 bytes")):
        assert cli_main(["reconstruct", str(tmp_path / name), "-o", str(tmp_path / "x.obj"), "--quiet"]) == 1
        error = capsys.readouterr().err.strip()
        assert error.startswith("error: ") and says in error and "\n" not in error, error


def half_red_ball_grid(side: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A ball of filled voxels and one colour per cell in C order: red in the upper half (z), blue below."""
    centre = (side - 1) / 2
    i, j, k = np.indices((side,) * 3)
    grid = (i - centre) ** 2 + (j - centre) ** 2 + (k - centre) ** 2 <= (0.36 * side) ** 2
    colours = np.where((k >= side // 2).reshape(-1, 1), RED, BLUE).astype(np.uint8)
    return grid, colours


@pytest.mark.parametrize("side", [32, 64])
def test_a_voxel_grid_s_cell_colours_colour_the_result(side: int) -> None:
    """Colours per cell of a voxel grid (a painted voxel object's) colour the bundled voxel network's result: the
    red upper half's vertices red. A 64^3 grid is pooled to 32^3, its cells' colours with it."""
    from blender_occnet.occnet.checkpoints import load_weights
    from blender_occnet.occnet.generation import ExtractionSettings, Reconstructor
    from blender_occnet.occnet.preprocess import prepare_for_network

    weights = load_weights(Path(__file__).parents[2] / "blender_occnet" / "weights" / "voxels.safetensors")
    grid, colours = half_red_ball_grid(side)
    prepared = prepare_for_network(weights.config, "voxels", grid, colours=colours)
    assert prepared.colours is not None and len(prepared.colours.points) == int(prepared.array.sum())
    mesh = Reconstructor(weights, "cpu").encode(prepared).extract(ExtractionSettings(threshold=weights.threshold,
                                                                                     resolution=64))
    assert mesh.colours is not None
    assert_red_above_blue_below(mesh.vertices, mesh.colours)
    plain = Reconstructor(weights, "cpu").encode(prepare_for_network(weights.config, "voxels", grid)).extract(
        ExtractionSettings(threshold=weights.threshold, resolution=32))
    assert plain.colours is None


def test_the_messages_carry_a_voxel_grid_s_cell_colours() -> None:
    grid, colours = half_red_ball_grid()
    request = messages.Reconstruct(modality="voxels", input=grid.astype(np.uint8), point_colours=colours)
    again = messages.Reconstruct.from_frame(*request.to_frame())
    assert again.point_colours is not None and np.array_equal(again.point_colours, colours)
    with pytest.raises(messages.FieldError, match="one per cell: 100 for 32,768 cells"):
        messages.Reconstruct(modality="voxels", input=grid.astype(np.uint8), point_colours=colours[:100])
