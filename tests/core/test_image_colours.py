"""Colours from the image for the image network's result (occnet/image_colours.py): the view is found from the
outline, the vertices it sees take the picture's colours, and the command line writes them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from blender_occnet.cli import main as cli_main
from blender_occnet.common.geometry import sample_surface
from blender_occnet.occnet import image_colours

SAMPLES = Path(__file__).parents[2] / "blender_occnet" / "samples"
RED, BLUE = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])


def armchair() -> tuple[np.ndarray, np.ndarray]:
    """A seat, a back and one arm (no mirror symmetry, so one view explains its outline), y up, front -z."""
    parts = [trimesh.creation.box((0.8, 0.15, 0.6), trimesh.transformations.translation_matrix((0, -0.1, 0))),
             trimesh.creation.box((0.8, 0.5, 0.12), trimesh.transformations.translation_matrix((0, 0.2, 0.24))),
             trimesh.creation.box((0.12, 0.3, 0.6), trimesh.transformations.translation_matrix((0.34, 0.1, 0))),
             trimesh.creation.box((0.1, 0.25, 0.1), trimesh.transformations.translation_matrix((-0.3, -0.3, -0.2)))]
    mesh = trimesh.util.concatenate(parts).subdivide().subdivide()
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def colour_of(points: np.ndarray) -> np.ndarray:
    """The armchair's paint: red on its right (+x), blue on its left."""
    return np.where(points[:, :1] > 0, RED, BLUE)


def photograph(vertices: np.ndarray, faces: np.ndarray, azimuth: float, elevation: float,
               side: int = 160) -> image_colours.Picture:
    """The painted armchair as the image crop shows it from a view: nearest surface sample per pixel."""
    samples, _ = sample_surface(vertices, faces, 400_000, seed=7)
    turn = image_colours.rotation(math.radians(azimuth), math.radians(elevation))
    pixels, depth = image_colours._framed(samples, turn, side, image_colours.camera_distance(samples))
    cells = np.clip(pixels.astype(np.int64), 0, side - 1)
    flat = cells[:, 1] * side + cells[:, 0]
    order = np.argsort(-depth)  # far first: the nearest sample of a pixel is written last
    rgb = np.ones((side * side, 3), np.float32)
    rgb[flat[order]] = colour_of(samples[order])
    mask = np.zeros(side * side, bool)
    mask[flat] = True
    return image_colours.Picture(rgb.reshape(side, side, 3), mask.reshape(side, side))


@pytest.mark.parametrize("azimuth, elevation", [(40.0, 25.0), (200.0, 10.0), (300.0, -10.0)])
def test_the_view_is_found_from_the_outline_and_the_seen_vertices_take_their_colours(azimuth: float,
                                                                                     elevation: float) -> None:
    vertices, faces = armchair()
    picture = photograph(vertices, faces, azimuth, elevation)
    view = image_colours.find_view(vertices, faces, picture)
    off = (math.degrees(view.azimuth) - azimuth + 180) % 360 - 180
    assert abs(off) < 8 and abs(math.degrees(view.elevation) - elevation) < 8, view
    seen, colours = image_colours.seen_colours(vertices, faces, picture, view)
    assert len(seen) > 0.2 * len(vertices)
    clear = np.abs(vertices[seen][:, 0]) > 0.05  # not on the line where the paint changes
    right = np.abs(colours - colour_of(vertices[seen])).max(axis=1) < 0.01
    assert right[clear].mean() > 0.95
    # Seen means seen: from the front, no vertex inside the back's rear face is among them.
    front = image_colours.seen_colours(vertices, faces, photograph(vertices, faces, 0.0, 0.0),
                                       image_colours.View(0.0, 0.0, 1.0))[0]
    x, y, z = vertices.T
    rear = (z > 0.29) & (np.abs(x) < 0.3) & (np.abs(y - 0.2) < 0.2)
    assert rear.sum() > 10 and not rear[front].any() and len(front) > 0.1 * len(vertices)


def tinted_sofa(path: Path) -> None:
    """The sofa sample with its object's upper half (in the image) tinted red and the lower half blue, the
    shading kept (the network learned from shaded objects)."""
    rgb = np.asarray(Image.open(SAMPLES / "sofa_image.png").convert("RGB")).astype(np.float32)
    sofa = np.abs(rgb - rgb[0, 0]).max(axis=2) > 15
    rows = np.flatnonzero(sofa.any(axis=1))
    upper = np.zeros_like(sofa)
    upper[: (rows[0] + rows[-1]) // 2] = True
    rgb[sofa & upper] *= (1.0, 0.55, 0.55)
    rgb[sofa & ~upper] *= (0.55, 0.55, 1.0)
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(path)


def test_the_command_line_colours_an_image_s_result_from_the_image(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The tinted sofa through the bundled image network: the vertices highest up (the back's top, at the top of
    the picture) come out red, the lowest (the base) blue; --no-colours writes none."""
    tinted_sofa(tmp_path / "sofa.png")
    out = tmp_path / "sofa.ply"
    assert cli_main(["reconstruct", str(tmp_path / "sofa.png"), "-o", str(out), "--resolution", "64"]) == 0
    assert "vertex colours from the image, seen from azimuth" in capsys.readouterr().out
    mesh = trimesh.load(out, process=False)
    vertices, colours = np.asarray(mesh.vertices), np.asarray(mesh.visual.vertex_colors)[:, :3].astype(int)
    height = vertices[:, 1]  # y up, as the network's frame
    top, bottom = height > np.quantile(height, 0.9), height < np.quantile(height, 0.1)
    assert (colours[top, 0] > colours[top, 2]).mean() > 0.85
    assert (colours[bottom, 2] > colours[bottom, 0]).mean() > 0.85
    plain = tmp_path / "plain.ply"
    assert cli_main(["reconstruct", str(tmp_path / "sofa.png"), "-o", str(plain), "--resolution", "64",
                     "--no-colours", "--quiet"]) == 0
    assert trimesh.load(plain, process=False).visual.kind != "vertex"


def test_no_vertex_takes_the_background_blended_into_the_outline() -> None:
    """The grey sofa on white: pixels on the outline blend grey with white, and vertices seen there came out
    nearly white (86 of them lighter than 215 of 255 in every channel at 64 cells); none does now."""
    from blender_occnet.occnet.checkpoints import load_weights
    from blender_occnet.occnet.generation import ExtractionSettings, Reconstructor
    from blender_occnet.occnet.preprocess import prepare_for_network

    weights = load_weights(SAMPLES.parent / "weights" / "image.safetensors")
    prepared = prepare_for_network(weights.config, "image", SAMPLES / "sofa_image.png")
    mesh = Reconstructor(weights, "cpu").encode(prepared).extract(
        ExtractionSettings(threshold=weights.threshold, resolution=64))
    assert mesh.colours is not None and int((mesh.colours.min(axis=1) > 215).sum()) == 0
