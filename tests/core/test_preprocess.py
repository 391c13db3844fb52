"""Preprocessing of each modality, on files the tests write, and the errors bad inputs get."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from blender_occnet.cli import main as cli_main
from blender_occnet.common.binvox import read_binvox, write_binvox
from blender_occnet.common.errors import InputError
from blender_occnet.occnet.meshio import MeshData
from blender_occnet.occnet.preprocess import guess_modality, prepare_image, prepare_pointcloud, prepare_voxels
from blender_occnet.occnet.voxelize import voxelize_mesh

# ------------------------------------------------------------------------------------------ binvox


def test_binvox_round_trip_and_axis_convention(tmp_path: Path) -> None:
    grid = np.zeros((32, 32, 32), dtype=bool)
    grid[2:5, 10:20, 30] = True  # an asymmetric block: any axis swap would move it
    grid[31, 0, 0] = True
    path = tmp_path / "grid.binvox"
    write_binvox(path, grid, translate=(1.0, -2.0, 0.5), scale=3.0)
    back = read_binvox(path)
    assert back.data.dtype == bool and np.array_equal(back.data, grid)
    assert np.allclose(back.translate, [1.0, -2.0, 0.5]) and back.scale == 3.0

    # The file's own layout: runs in x, z, y order (y fastest). Voxel (x=31, y=0, z=0) is flat index
    # 31*32*32 in that order; decode the runs by hand and check it sits there.
    raw = path.read_bytes()
    body = np.frombuffer(raw[raw.index(b"data\n") + 5:], dtype=np.uint8)
    flat = np.repeat(body[0::2], body[1::2]).astype(bool)
    assert flat.size == 32 ** 3
    assert flat[31 * 32 * 32] and flat.reshape(32, 32, 32)[3, 30, 15]  # [x, z, y]


def test_binvox_long_runs_and_all_values(tmp_path: Path) -> None:
    for grid in (np.ones((32,) * 3, bool), np.zeros((32,) * 3, bool),
                 np.random.default_rng(1).random((32,) * 3) > 0.5):
        write_binvox(tmp_path / "g.binvox", grid)
        assert np.array_equal(read_binvox(tmp_path / "g.binvox").data, grid)


@pytest.mark.parametrize("content,message", [
    (b"hello, not voxels", "not a binvox file"),
    (b"#binvox 1\ndim 32 32 32\ntranslate 0 0 0\nscale 1\ndata\n\x01\xff\x00", "truncated binvox data"),
    (b"#binvox 1\ndim 32 32 32\ntranslate 0 0 0\nscale 1\ndata\n\x01\xff", "holds 255 voxels"),
    (b"#binvox 1\ndim 32 x 32\ndata\n", "damaged binvox header"),
])
def test_bad_binvox(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.binvox"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_binvox(path)
    with pytest.raises(InputError, match="bad.binvox"):
        prepare_voxels(path)


# ------------------------------------------------------------------------------------------ voxels


def test_voxels_from_binvox_keep_the_frame(tmp_path: Path) -> None:
    grid = np.zeros((32,) * 3, bool)
    grid[8:24, 8:24, 8:24] = True
    path = tmp_path / "cube.binvox"
    write_binvox(path, grid, translate=(10.0, 20.0, 30.0), scale=2.0)
    prepared = prepare_voxels(path)
    assert prepared.array.shape == (32, 32, 32) and prepared.array.dtype == np.float32
    assert np.array_equal(prepared.array > 0.5, grid)
    # Unit-cube corner (-0.5,)*3 is the binvox box's corner, (0.5,)*3 the opposite one.
    corners = prepared.to_source(np.array([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]))
    assert np.allclose(corners, [[10, 20, 30], [12, 22, 32]])


def test_voxels_from_npy_and_wrong_size(tmp_path: Path) -> None:
    np.save(tmp_path / "ok.npy", np.ones((32,) * 3, dtype=np.uint8))
    assert prepare_voxels(tmp_path / "ok.npy").array.sum() == 32 ** 3
    assert guess_modality(tmp_path / "ok.npy") == "voxels"
    np.save(tmp_path / "big.npy", np.ones((64,) * 3, dtype=bool))  # a multiple of 32: pooled
    assert prepare_voxels(tmp_path / "big.npy").array.sum() == 32 ** 3
    np.save(tmp_path / "odd.npy", np.ones((40,) * 3, dtype=bool))
    with pytest.raises(InputError, match=r"odd\.npy: the voxel grid is 40x40x40; the network takes 32x32x32"):
        prepare_voxels(tmp_path / "odd.npy")


def _box_mesh() -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=(0.45, 1.0, 0.3))  # faces away from cell boundaries at 32^3
    box.apply_translation((3.0, 0.0, -1.0))
    return box


def test_voxelise_mesh_file_watertight_and_with_holes(tmp_path: Path) -> None:
    box = _box_mesh()
    box.export(tmp_path / "box.obj")
    prepared = prepare_voxels(tmp_path / "box.obj")
    grid = prepared.array > 0.5
    # Normalised: longest edge (y, 1.0) spans the cube; x spans [-0.225, 0.225] (cells 8..23 with the
    # surface cells), z [-0.15, 0.15] (cells 11..20), centred.
    idx = np.argwhere(grid)
    assert idx.min(0).tolist() == [8, 0, 11] and idx.max(0).tolist() == [23, 31, 20]
    assert grid[8:24, :, 11:21].all() and grid.sum() == 16 * 32 * 10
    assert np.allclose(prepared.loc, [3.0, 0.0, -1.0]) and prepared.scale == pytest.approx(1.0)

    # A sphere with faces missing (not watertight) and the same sphere closed: the interior agrees.
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.45)
    closed = voxelize_mesh(MeshData(sphere.vertices, sphere.faces), 32)
    # 26 holes spread over the sphere: rays through a hole are outvoted.
    open_mesh = MeshData(sphere.vertices, np.delete(sphere.faces, np.arange(0, len(sphere.faces), 50), axis=0))
    leaky = voxelize_mesh(open_mesh, 32)
    centres = (np.argwhere(np.ones((32,) * 3)) + 0.5) / 32 - 0.5
    deep_inside = (np.linalg.norm(centres, axis=1) < 0.4).reshape((32,) * 3)
    far_outside = (np.linalg.norm(centres, axis=1) > 0.5).reshape((32,) * 3)
    assert closed[deep_inside].all() and not closed[far_outside].any()
    assert (~leaky[deep_inside]).sum() <= 2 and not leaky[far_outside].any()


def test_voxelise_inconsistently_oriented_faces() -> None:
    box = _box_mesh()
    faces = np.asarray(box.faces).copy()
    faces[::2] = faces[::2, ::-1]  # flip every other triangle
    mesh = MeshData(np.asarray(box.vertices) - [3.0, 0.0, -1.0], faces)
    assert voxelize_mesh(mesh, 16, lo=-0.5, hi=0.5).sum() == voxelize_mesh(
        MeshData(mesh.vertices, np.asarray(box.faces)), 16).sum()


# ------------------------------------------------------------------------------------------ points


def test_pointcloud_from_ply_normalised_and_subsampled(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    points = rng.random((5000, 3)) * [2.0, 4.0, 1.0] + [10.0, -5.0, 0.0]
    points[7] = np.nan
    trimesh.PointCloud(points[np.isfinite(points).all(1)]).export(tmp_path / "cloud.ply")
    prepared = prepare_pointcloud(tmp_path / "cloud.ply", n_points=300, seed=5)
    assert prepared.array.shape == (300, 3) and prepared.array.dtype == np.float32
    assert prepared.array.min() >= -0.5 - 1e-6 and prepared.array.max() <= 0.5 + 1e-6
    assert len(np.unique(prepared.array, axis=0)) == 300  # without replacement when there are enough
    finite = points[np.isfinite(points).all(1)]
    assert np.allclose(prepared.loc, (finite.min(0) + finite.max(0)) / 2)
    assert prepared.scale == pytest.approx((finite.max(0) - finite.min(0)).max())
    back = prepared.to_source(prepared.array.astype(np.float64))
    # Back in the source frame every sampled point is one of the input points.
    assert np.abs(back[:, None] - finite[None]).max(axis=2).min(axis=1).max() < 1e-4
    assert np.all((back >= finite.min(0) - 1e-5) & (back <= finite.max(0) + 1e-5))
    # Same seed, same points; another seed, others.
    again = prepare_pointcloud(tmp_path / "cloud.ply", n_points=300, seed=5)
    assert np.array_equal(again.array, prepared.array)
    assert not np.array_equal(prepare_pointcloud(tmp_path / "cloud.ply", seed=6).array, prepared.array)


def test_pointcloud_from_mesh_surface_xyz_npz(tmp_path: Path) -> None:
    box = _box_mesh()
    box.export(tmp_path / "box.off")
    prepared = prepare_pointcloud(tmp_path / "box.off", n_points=1000)
    # Surface samples of a box: each lies on one of its faces (some coordinate at +-half extent).
    unit_half = np.array([0.225, 0.5, 0.15])
    on_face = np.isclose(np.abs(prepared.array), unit_half, atol=1e-5).any(axis=1)
    assert on_face.all()
    np.savetxt(tmp_path / "p.xyz", np.random.default_rng(0).random((50, 3)))
    assert prepare_pointcloud(tmp_path / "p.xyz", n_points=100).array.shape == (100, 3)
    np.savez(tmp_path / "pointcloud.npz", points=np.random.default_rng(0).random((60, 3)).astype(np.float16),
             normals=np.zeros((60, 3)))
    assert prepare_pointcloud(tmp_path / "pointcloud.npz").array.shape == (300, 3)
    assert guess_modality(tmp_path / "pointcloud.npz") == "pointcloud"


def test_pointcloud_noise() -> None:
    points = np.random.default_rng(0).random((2000, 3))
    clean = prepare_pointcloud(points, seed=1)
    noisy = prepare_pointcloud(points, seed=1, noise_std=0.005)
    assert 0.002 < np.std(noisy.array - clean.array) < 0.008


@pytest.mark.parametrize("points,message", [
    (np.zeros((0, 3)), "0 usable point"),
    (np.full((100, 3), np.nan), r"0 usable point\(s\) \(100 non-finite dropped\)"),
    (np.ones((1, 3)), r"1 usable point\(s\); a point cloud needs at least 8: give it a denser cloud"),
    (np.ones((50, 3)), "all points are at the same place"),
    (np.ones((50, 2)), "expected an N x 3 array"),
    # Issue 24 item 10: a transposed cloud was read as 3 points; +-1e308 made the box's size infinite.
    (np.random.default_rng(0).random((3, 1000)), r"a 3 x 1,000 array: points must be its rows \(N x 3\); transpose"),
    (np.array([[1e308, 0, 0], [-1e308, 1, 1]] * 10), r"coordinates reach 1e\+308, too large to reconstruct"),
])
def test_bad_pointclouds(points: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        prepare_pointcloud(points)


def test_a_transposed_cloud_file_and_a_mesh_of_huge_coordinates_say_what_to_do(tmp_path: Path) -> None:
    """Issue 24 item 10: a 3 x N .npy was read as 3 points ('3 usable point(s)'); a mesh of +-1e35 came back in
    float32 as infinities. Each is one line saying what to do."""
    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).random((3, 500)).astype(np.float32))
    with pytest.raises(InputError, match=r"cloud\.npy: a 3 x 500 array: points must be its rows \(N x 3\)"):
        prepare_pointcloud(tmp_path / "cloud.npy")
    (tmp_path / "far.obj").write_text("v 1e35 0 0\nv -1e35 1 0\nv 0 1 1e35\nf 1 2 3\n")
    with pytest.raises(InputError, match=r"far\.obj: coordinates reach 1e\+35, too large to reconstruct .* scale it"):
        prepare_voxels(tmp_path / "far.obj")


@pytest.mark.parametrize("header, rows, message", [
    ("property float x\nproperty float z", "0 0\n1 1\n2 2\n",
     r"broken\.ply: its vertices have no y property \(they have x, z\); a point cloud needs x, y and z"),
    ("property float x\nproperty float y\nproperty float z", "0 0 0\n1 1\n",
     r"broken\.ply: what follows its header does not match it \(a damaged or incomplete file\)"),
])
def test_a_broken_ply_says_what_is_wrong_in_one_line(tmp_path: Path, header: str, rows: str, message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.ply"
    path.write_text(f"ply\nformat ascii 1.0\nelement vertex 3\n{header}\nend_header\n{rows}")
    with pytest.raises(InputError, match=message):
        prepare_pointcloud(path)
    assert cli_main(["reconstruct", str(path), "-o", str(tmp_path / "out.obj"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and err.count("\n") == 1 and "Error" not in err, err


def test_missing_and_empty_point_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.ply: no such file"):
        prepare_pointcloud(tmp_path / "nope.ply")
    (tmp_path / "empty.ply").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.ply: the file is empty"):
        prepare_pointcloud(tmp_path / "empty.ply")


# ------------------------------------------------------------------------------------------ image


@pytest.mark.parametrize("rgba", [np.full((64, 80, 4), 255, np.uint8),  # white
                                  np.zeros((64, 80, 4), np.uint8),  # fully transparent
                                  np.dstack([np.full((64, 80, 3), 90, np.uint8), np.full((64, 80), 255, np.uint8)])])
def test_a_blank_image_is_refused_saying_so(rgba: np.ndarray) -> None:
    """Not 'no surface at this threshold' later: the image has no object for the network to see."""
    with pytest.raises(InputError, match=r"image: the image appears blank \(one colour throughout\): it shows no "
                                         r"object; give a picture of the object on a plain background"):
        prepare_image(rgba)


def _rgba_drawing(width: int = 300, height: int = 200) -> np.ndarray:
    """A red rectangle on a transparent background, off-centre."""
    image = np.zeros((height, width, 4), dtype=np.uint8)
    image[40:100, 150:270] = (255, 0, 0, 255)
    return image


def test_rgba_png_is_composited_cropped_and_padded(tmp_path: Path) -> None:
    Image.fromarray(_rgba_drawing()).save(tmp_path / "drawing.png")
    prepared = prepare_image(tmp_path / "drawing.png", object_fraction=0.8)
    image = prepared.array
    assert image.shape == (3, 224, 224) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    # The background became white.
    assert np.allclose(image[:, 0, 0], 1.0) and np.allclose(image[:, -1, -1], 1.0)
    red = (image[0] > 0.9) & (image[1] < 0.1) & (image[2] < 0.1)
    rows, cols = np.flatnonzero(red.any(1)), np.flatnonzero(red.any(0))
    # Cropped and centred: the 120 x 60 rectangle's long side spans 80% of the frame.
    assert abs((cols[-1] - cols[0] + 1) - 0.8 * 224) <= 3
    assert abs((rows[-1] - rows[0] + 1) - 0.4 * 224) <= 3
    assert abs((cols[0] + cols[-1]) / 2 - 111.5) <= 2 and abs((rows[0] + rows[-1]) / 2 - 111.5) <= 2
    assert np.allclose(prepared.loc, 0) and prepared.scale == 1.0


def test_uniform_background_is_cropped_and_rgb_arrays_accepted() -> None:
    image = np.full((100, 400, 3), 0.3, dtype=np.float32)
    image[30:70, 10:50] = (0.9, 0.9, 0.1)
    prepared = prepare_image(image, object_fraction=0.5)
    yellow = (prepared.array[2] < 0.2)
    cols = np.flatnonzero(yellow.any(0))
    assert abs((cols[-1] - cols[0] + 1) - 112) <= 3
    assert np.allclose(prepared.array[:, 0, 0], 0.3, atol=0.01)  # padded with the background colour


def test_photo_without_background_is_only_padded() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (120, 240, 3), dtype=np.uint8)
    prepared = prepare_image(noise)
    assert np.allclose(prepared.array[:, :50, :], 1.0)  # white bars above and below
    assert not np.allclose(prepared.array[:, 112, :], 1.0)


def test_bad_images(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.png: the image file is empty"):
        prepare_image(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("this is not a PNG")
    with pytest.raises(InputError, match=r"text\.png: not a readable image"):
        prepare_image(tmp_path / "text.png")
    with pytest.raises(InputError, match="the image has no pixels"):
        prepare_image(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(InputError, match="too large"):
        prepare_image(np.zeros((9000, 9000, 1), np.uint8))


def test_voxelising_huge_triangles_stays_within_bounded_memory() -> None:
    """Thousands of triangles spanning the whole grid (a 0.6 MB request) once took gigabytes: the inside
    tests' candidates are processed in bounded chunks, so the same grid comes out under a 1 GB address-space
    limit."""
    import subprocess
    import sys

    code = """
import resource, numpy as np
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from blender_occnet.occnet.voxelize import voxelize_mesh
from blender_occnet.occnet.meshio import MeshData
v = np.array([[-0.5, -0.5, -0.5], [0.5, -0.5, -0.5], [0.0, 0.5, -0.5], [0.0, 0.0, 0.5]])
f = np.array([[0, 1, 2], [0, 1, 3], [1, 2, 3], [0, 2, 3]] * 2501)
print(int(voxelize_mesh(MeshData(v, f)).sum()), int(voxelize_mesh(MeshData(v, f[:4])).sum()))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-2000:]
    many, once = map(int, result.stdout.split())
    assert many == once > 1000  # each face 2,501 times: an odd count crosses as one face does


def test_points_on_one_ray_share_it_and_get_the_answers_they_get_alone() -> None:
    """Grid centres in a row share one ray (the voxeliser's case); each must be answered as if tested alone."""
    from blender_occnet.occnet.inside import contains

    torus = trimesh.creation.torus(0.3, 0.12)
    faces = np.delete(np.asarray(torus.faces), np.arange(0, len(torus.faces), 60), axis=0)  # holes too
    centres = np.indices((24, 24, 24)).reshape(3, -1).T / 23 - 0.5
    together = contains(torus.vertices, faces, centres)
    alone = np.array([contains(torus.vertices, faces, p[None])[0]
                      for p in centres[np.random.default_rng(0).choice(len(centres), 300, replace=False)]])
    picked = together[np.random.default_rng(0).choice(len(centres), 300, replace=False)]
    assert np.array_equal(picked, alone) and 0.05 < together.mean() < 0.5


def test_an_inside_test_too_large_to_finish_is_refused_with_the_figures() -> None:
    """100,000 triangles that each span the shape (a 1.6 MB OBJ) once took past 6 GB, then would have taken
    hours: the work is counted first and refused with its figure, in little memory."""
    import subprocess
    import sys

    code = """
import resource, numpy as np
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from blender_occnet.common.errors import InputError
from blender_occnet.occnet.inside import contains
rng = np.random.default_rng(0)
v, points = rng.uniform(-0.5, 0.5, (300_000, 3)), rng.uniform(-0.5, 0.5, (100_000, 3))
try:
    contains(v, np.arange(300_000).reshape(-1, 3), points)
except InputError as exc:
    print(exc)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "100,000 triangles are too large for its inside test" in result.stdout
    assert "Remesh" in result.stdout


def test_a_huge_image_file_is_decoded_at_the_size_the_network_needs(tmp_path: Path) -> None:
    """A 6,000 px PNG of a few hundred KB once cost gigabytes as float32 RGBA; it is reduced while decoding,
    so it prepares under a 1 GB address-space limit, to the same picture as a small copy of it gives."""
    import subprocess
    import sys

    from PIL import Image

    picture = np.full((6000, 6000, 3), 255, np.uint8)
    picture[1500:4500, 2000:4000] = (30, 60, 90)
    Image.fromarray(picture).save(tmp_path / "huge.png")
    Image.fromarray(picture).resize((600, 600), Image.Resampling.BOX).save(tmp_path / "small.png")
    code = f"""
import resource, numpy as np
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from blender_occnet.occnet.preprocess import prepare_image
np.save({str(tmp_path / "out.npy")!r}, prepare_image({str(tmp_path / "huge.png")!r}).array)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-2000:]
    huge, small = np.load(tmp_path / "out.npy"), prepare_image(tmp_path / "small.png").array
    assert huge.shape == small.shape == (3, 224, 224) and np.abs(huge - small).mean() < 0.01  # edges differ by a pixel


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".off", ".stl", ".glb"])
@pytest.mark.parametrize("with_normals", [False, True])
def test_written_meshes_read_back_the_same(tmp_path: Path, suffix: str, with_normals: bool) -> None:
    """OBJ, PLY, OFF and STL are written by numpy alone (no trimesh import); each reads back as written."""
    from blender_occnet.occnet.meshio import write_mesh

    sphere = trimesh.creation.icosphere(subdivisions=2)
    vertices, faces = sphere.vertices.astype(np.float32), sphere.faces.astype(np.int32)
    normals = sphere.vertex_normals.astype(np.float32) if with_normals else None
    write_mesh(tmp_path / f"m{suffix}", vertices, faces, normals)
    back = trimesh.load(tmp_path / f"m{suffix}", process=False, force="mesh")
    if suffix == ".stl":  # a triangle soup: compare corner by corner
        assert np.allclose(back.vertices[back.faces], vertices[faces], atol=1e-6)
        return
    assert np.allclose(back.vertices, vertices, atol=1e-6) and np.array_equal(back.faces, faces)
    if with_normals and suffix in (".obj", ".ply"):
        assert np.allclose(back.vertex_normals, normals, atol=1e-4)


def test_the_command_line_writes_a_mesh_without_importing_trimesh(tmp_path: Path) -> None:
    import subprocess
    import sys

    grid = np.zeros((32,) * 3, bool)
    grid[8:24, 8:24, 8:24] = True
    np.save(tmp_path / "cube.npy", grid)
    code = ("import sys; from blender_occnet.cli import main; "
            f"rc = main(['reconstruct', {str(tmp_path / 'cube.npy')!r}, '-o', {str(tmp_path / 'cube.ply')!r}, "
            "'--resolution', '32', '--quiet']);"
            " print(rc, 'trimesh' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.split() == ["0", "False"], result.stdout + result.stderr[-2000:]
    assert len(trimesh.load(tmp_path / "cube.ply").faces) > 100


def test_plain_obj_files_read_with_numpy_as_trimesh_reads_them(tmp_path: Path) -> None:
    """The chunked OBJ reader gives trimesh's vertices and triangles (fans for polygons, a/b/c tokens,
    comments, vt/vn and groups ignored), across chunk boundaries; what it does not handle goes to
    trimesh; a face past the last vertex is named."""
    import blender_occnet.common.geometry as geometry
    import blender_occnet.occnet.meshio as meshio

    sphere = trimesh.creation.icosphere(3)
    path = tmp_path / "ball.obj"
    sphere.export(path)
    small_chunks = geometry.CHUNK_BYTES
    try:
        geometry.CHUNK_BYTES = 4096  # many chunks, faces and vertices split between them
        read = meshio.read_mesh(path)
    finally:
        geometry.CHUNK_BYTES = small_chunks
    assert np.allclose(read.vertices, sphere.vertices) and np.array_equal(read.faces, sphere.faces)
    quads = tmp_path / "quads.obj"
    quads.write_text("# a quad and a triangle\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvn 0 0 1\ng part\n"
                     "f 1/1/1 2/1/1 3/1/1 4/1/1\nf 1//1 2//1 3//1\n")
    expected = trimesh.load(quads, process=False)
    read = meshio.read_mesh(quads)
    assert len(read.faces) == len(expected.faces) == 3 and read.faces[2].tolist() == [0, 1, 2]
    corners = read.vertices[read.faces[:2]]  # the quad as a fan: the same square, facing +z
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    assert set(read.faces[:2].ravel()) == {0, 1, 2, 3} and np.allclose(normals, [[0, 0, 1]] * 2)
    for name, text in (("relative", "v 0 0 0\nv 1 0 0\nv 1 1 0\nf -3 -2 -1\n"),
                       ("partly coloured", "v 0 0 0 1 0 0\nv 1 0 0\nv 1 1 0\nf 1 2 3\n")):
        (tmp_path / f"{name}.obj").write_text(text)
        assert meshio._read_plain_obj(tmp_path / f"{name}.obj") is None  # trimesh reads these
        assert meshio.read_mesh(tmp_path / f"{name}.obj").faces.tolist() == [[0, 1, 2]]
    (tmp_path / "coloured.obj").write_text("v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 1 1 0 0 0 255\nf 1 2 3\n")
    coloured = meshio._read_plain_obj(tmp_path / "coloured.obj")  # `v x y z r g b`: ours, colours kept
    assert coloured is not None and coloured.faces.tolist() == [[0, 1, 2]] and coloured.colours is not None
    assert np.allclose(coloured.colours, [[1 / 255, 0, 0], [0, 1 / 255, 0], [0, 0, 1]])  # one above 1: bytes
    (tmp_path / "past.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nf 1 2 9\n")
    with pytest.raises(InputError, match="refers to vertex 9, but the file has 3 vertices"):
        meshio.read_mesh(tmp_path / "past.obj")


def same_triangles(vertices: np.ndarray, faces: np.ndarray, other_vertices: np.ndarray, other: np.ndarray) -> bool:
    """The same triangles, whatever their order and each one's first corner."""
    def key(v: np.ndarray, f: np.ndarray) -> list:
        return sorted(tuple(sorted(map(tuple, np.round(corners, 6)))) for corners in np.asarray(v, np.float64)[f])
    return key(vertices, faces) == key(other_vertices, other)


def test_off_ply_and_stl_files_read_with_numpy_as_trimesh_reads_them(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24 item 9: OFF, PLY and STL went through trimesh whole (a 5M-face OFF peaked at 4 GB). The chunked
    readers give trimesh's vertices and triangles (binary and ASCII, comments, quads fanned, colour properties
    skipped), across chunk boundaries; what they do not handle goes to trimesh."""
    import blender_occnet.common.geometry as geometry
    import blender_occnet.occnet.meshio as meshio

    monkeypatch.setattr(geometry, "CHUNK_BYTES", 4096)  # many chunks: sections and rows split between them
    monkeypatch.setattr(geometry, "CHUNK_ROWS", 64)
    sphere = trimesh.creation.icosphere(3)
    files = {"ball.off": None, "ball.ply": None, "ball.stl": None, "ascii.ply": "ascii", "ascii.stl": "stl_ascii"}
    for name, encoding in files.items():
        if encoding is None:
            meshio.write_mesh(tmp_path / name, sphere.vertices, sphere.faces)
        elif encoding == "ascii":
            sphere.export(tmp_path / name, encoding="ascii")
        else:
            sphere.export(tmp_path / name, file_type=encoding)
    (tmp_path / "quads.off").write_text("OFF\n# a quad with a colour, then a triangle\n4 2 0\n0 0 0\n1 0 0\n\n"
                                        "1 1 0\n0 1 0\n4 0 1 2 3 255 0 0\n3 0 1 2\n")
    (tmp_path / "quads.ply").write_text("ply\nformat ascii 1.0\ncomment made by hand\nelement vertex 4\n"
                                        "property float x\nproperty float y\nproperty float z\nproperty uchar red\n"
                                        "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
                                        "0 0 0 9\n1 0 0 9\n1 1 0 9\n0 1 0 9\n4 0 1 2 3\n")
    head = (b"ply\nformat binary_little_endian 1.0\nelement vertex 6\nproperty float x\nproperty float y\n"
            b"property float z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n")
    corners = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]], "<f4")
    quads = np.array([(4, [0, 1, 2, 3]), (4, [0, 1, 5, 4])], dtype=[("n", "u1"), ("v", "<i4", (4,))])
    (tmp_path / "binquads.ply").write_bytes(head + corners.tobytes() + quads.tobytes())
    for name in [*files, "quads.off", "quads.ply", "binquads.ply"]:
        path = tmp_path / name
        read = meshio._PLAIN_READERS[path.suffix](path)
        expected = trimesh.load(path, process=False)
        assert read is not None, name
        assert np.allclose(read.vertices, expected.vertices), name
        assert same_triangles(read.vertices, read.faces, np.asarray(expected.vertices),
                              np.asarray(expected.faces)), name
    colours = (np.random.default_rng(0).random((len(sphere.vertices), 3)) * 255).astype(np.uint8)
    meshio.write_mesh(tmp_path / "coloured.ply", sphere.vertices, sphere.faces, colours=colours)
    coloured = meshio._read_ply(tmp_path / "coloured.ply")
    assert coloured is not None and np.array_equal(coloured.colours, colours)  # red, green, blue as the file holds
    samples = Path(meshio.__file__).resolve().parents[1] / "samples"
    assert meshio.read_mesh(samples / "chair_pointcloud.ply").faces.shape == (0, 3)  # a cloud: vertices only
    (tmp_path / "colour.off").write_text("COFF\n3 1 0\n0 0 0 1 0 0 1\n1 0 0 1 0 0 1\n0 1 0 1 0 0 1\n3 0 1 2\n")
    assert meshio._read_off(tmp_path / "colour.off") is None  # trimesh reads these
    assert meshio.read_mesh(tmp_path / "colour.off").faces.tolist() == [[0, 1, 2]]
    (tmp_path / "past.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n")
    with pytest.raises(InputError, match="refers to vertex 7, but the file has 3 vertices"):
        meshio.read_mesh(tmp_path / "past.off")


def peak_growth_mb(code: str) -> int:
    """How far a fresh interpreter's peak resident memory (VmHWM: its own, not what it inherits from the process that
    started it, as ru_maxrss does) grows over what `code`'s part before the line '# measured' took, in MB."""
    import subprocess
    import sys

    setup, measured = code.split("# measured\n")
    peak = "int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) // 1024"
    program = f"{setup}\nbefore = {peak}\n{measured}\nprint({peak} - before)"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split()[-1])


def test_surface_samples_of_millions_of_faces_cost_their_areas_not_their_corners() -> None:
    """Issue 24 item 9: sampling went through (F, 3, 3) corner arrays and their cross products (a 10M-face OBJ
    reconstructed at 2.5 GB). Faces are now looked at CHUNK_ROWS at a time: on 4.5 million faces the peak grew by
    788 MB, now by 7 (the areas fit under what building the mesh took)."""
    growth = peak_growth_mb("""
import numpy as np
from blender_occnet.common.geometry import sample_surface
n = 1500
u, v = np.meshgrid(np.linspace(0, 6.28, n), np.linspace(0.01, 3.13, n), indexing="ij")
vertices = np.stack([np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v)], -1).reshape(-1, 3)
i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
a, b = (i * n + j).ravel(), ((i + 1) * n + j).ravel()
faces = np.concatenate([np.stack([a, b, a + 1], 1), np.stack([b, b + 1, a + 1], 1)])
# measured
points, _ = sample_surface(vertices, faces, 100_000)
assert len(faces) > 4_000_000 and points.shape == (100_000, 3)
""")
    assert growth < 250, growth


@pytest.mark.parametrize("suffix", [".off", ".ply", ".stl"])
def test_a_mesh_file_of_a_million_faces_is_read_and_sampled_in_bounded_memory(tmp_path: Path, suffix: str) -> None:
    """Issue 24 item 9: the trimesh path for OFF, PLY and STL held the file several times over (a 5M-face OFF of
    200 MB peaked at 4 GB). Read and sampled by the chunked readers, a million faces cost their arrays."""
    from blender_occnet.occnet.meshio import write_mesh

    n = 710
    u, v = np.meshgrid(np.linspace(0, 6.28, n), np.linspace(0.01, 3.13, n), indexing="ij")
    vertices = np.stack([np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    a, b = (i * n + j).ravel(), ((i + 1) * n + j).ravel()
    faces = np.concatenate([np.stack([a, b, a + 1], 1), np.stack([b, b + 1, a + 1], 1)])
    assert len(faces) > 1_000_000
    path = tmp_path / f"sphere{suffix}"
    write_mesh(path, vertices, faces)
    growth = peak_growth_mb(f"""
from blender_occnet.occnet.meshio import read_points
# measured
assert read_points({str(path)!r}).shape == (100_000, 3)
""")
    # The mesh as float64 vertices and int64 faces is 36 MB (an STL's own vertices per face: 96 MB); through trimesh
    # it grew by 762 (OFF), 313 (PLY) and 423 MB (STL); read in chunks, 130, 95 and 184.
    assert growth < {".off": 300, ".ply": 200, ".stl": 300}[suffix], growth
