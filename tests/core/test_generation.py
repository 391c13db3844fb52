"""The generation API end to end: analytic functions through EncodedShape, random networks, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from blender_occnet.cli import main as cli_main
from blender_occnet.common.errors import Cancelled, GenerationError, InputError
from blender_occnet.occnet.checkpoints import Weights, save_weights
from blender_occnet.occnet.generation import EncodedShape, ExtractionSettings, Reconstructor
from blender_occnet.occnet.inference import FoldedDecoder
from blender_occnet.occnet.preprocess import prepare_pointcloud, prepare_voxels
from tests.helpers import centre_logits, example_input, randomized_model, small_config
from tests.mesh_checks import is_watertight, mesh_volume


def torch_sphere(p: torch.Tensor) -> torch.Tensor:
    return (0.4 - p.norm(dim=1)) * 100


def test_threshold_change_reuses_values_and_matches_a_fresh_run() -> None:
    shape = EncodedShape(torch_sphere)
    first = shape.extract(ExtractionSettings(threshold=0.5, resolution=64))
    second = shape.extract(ExtractionSettings(threshold=0.2, resolution=64))
    fresh = EncodedShape(torch_sphere).extract(ExtractionSettings(threshold=0.2, resolution=64))
    assert second.stats["points_reused"] > 0
    assert second.stats["points_evaluated"] < fresh.stats["points_evaluated"] / 2
    assert np.array_equal(second.vertices, fresh.vertices) and np.array_equal(second.faces, fresh.faces)
    # The same threshold again evaluates nothing at all; a finer grid only the new points.
    assert shape.extract(ExtractionSettings(threshold=0.5, resolution=64)).stats["points_evaluated"] == 0
    finer = shape.extract(ExtractionSettings(threshold=0.5, resolution=128))
    assert 0 < finer.stats["points_evaluated"] < finer.stats["points_total"]
    # threshold 0.5 (logit 0) sits on the sphere; 0.2 (logit -1.386) 0.0139 further out.
    assert np.allclose(np.linalg.norm(first.vertices, axis=1), 0.4, atol=1e-3)
    assert np.allclose(np.linalg.norm(second.vertices, axis=1), 0.4 + np.log(4) / 100, atol=1e-3)


def test_dense_path_equals_mise() -> None:
    dense = EncodedShape(torch_sphere).extract(ExtractionSettings(resolution=64, resolution_0=64))
    mise = EncodedShape(torch_sphere).extract(ExtractionSettings(resolution=64, resolution_0=16))
    assert dense.stats["points_evaluated"] == 65 ** 3
    assert mise.stats["points_evaluated"] < dense.stats["points_evaluated"] / 3
    assert np.array_equal(dense.vertices, mise.vertices) and np.array_equal(dense.faces, mise.faces)


def test_normals_simplify_refine_on_an_analytic_sphere() -> None:
    shape = EncodedShape(torch_sphere)
    mesh = shape.extract(ExtractionSettings(threshold=0.5, resolution=64, normals=True, simplify_faces=1000,
                                            refine_steps=3))
    assert 900 <= len(mesh.faces) <= 1000 and is_watertight(mesh.faces)
    assert mesh.normals is not None and mesh.normals.shape == mesh.vertices.shape
    radial = mesh.vertices / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", mesh.normals, radial).min() > 0.99  # outward
    assert mesh_volume(mesh.vertices, mesh.faces) == pytest.approx(4 / 3 * np.pi * 0.4 ** 3, rel=0.03)
    assert set(mesh.stats) >= {"seconds_simplify", "seconds_refine", "seconds_normals", "seconds_meshing"}


def test_projection_puts_vertices_on_the_surface_and_stops_early() -> None:
    """The default refinement: Newton steps onto the threshold's iso-surface. A logit that is quadratic in
    the radius makes marching cubes' linear interpolation miss the sphere; projection must land every vertex
    on it, move none further than a cell, and stop evaluating once every vertex is there."""
    def quadratic(p: torch.Tensor) -> torch.Tensor:
        return (0.4 ** 2 - p.pow(2).sum(1)) * 400

    level = float(np.log(0.3 / 0.7))  # threshold 0.3
    on_surface = np.sqrt(0.4 ** 2 - level / 400)
    shape = EncodedShape(quadratic)
    plain = shape.extract(ExtractionSettings(threshold=0.3, resolution=32))
    projected = shape.extract(ExtractionSettings(threshold=0.3, resolution=32, refine_steps=30))
    before = np.abs(np.linalg.norm(plain.vertices, axis=1) - on_surface)
    after = np.abs(np.linalg.norm(projected.vertices, axis=1) - on_surface)
    assert before.max() > 1e-4  # marching cubes alone is visibly off
    assert after.max() < 1e-5
    assert np.linalg.norm(projected.vertices - plain.vertices, axis=1).max() <= 1.1 / 32 + 1e-6
    assert np.array_equal(projected.faces, plain.faces)
    assert 1 <= projected.stats["refine_passes"] < 10  # converged long before the 30 steps asked for


def test_projection_never_throws_a_vertex_across_the_shape() -> None:
    """Outside this sphere the logit rises again, slowly (as past a kink of a ReLU network): Newton steps
    there point away from the shape and would be huge. Each vertex must stay within one cell of where
    marching cubes put it."""
    def cliff(p: torch.Tensor) -> torch.Tensor:
        r = p.norm(dim=1)
        return torch.where(r < 0.3, (0.3 - r) * 100, -1 + (r - 0.3) * 1e-3)

    shape = EncodedShape(cliff)
    plain = shape.extract(ExtractionSettings(threshold=0.5, resolution=32))
    projected = shape.extract(ExtractionSettings(threshold=0.5, resolution=32, refine_steps=30))
    moved = np.linalg.norm(projected.vertices - plain.vertices, axis=1)
    assert len(plain.faces) and moved.max() > 0.5 * 1.1 / 32  # some vertices were pushed to the limit
    assert moved.max() <= 1.1 / 32 + 1e-6


def test_progress_and_cancel() -> None:
    events: list[tuple[str, float]] = []
    shape = EncodedShape(torch_sphere, batch_size=5_000)
    shape.extract(ExtractionSettings(resolution=64), progress=lambda s, f: events.append((s, f)))
    stages = [s for s, _ in events]
    assert stages[0] == "evaluating" and stages[-1] == "done" and "meshing" in stages
    evaluating = [f for s, f in events if s == "evaluating"]
    assert len(evaluating) > 5 and evaluating == sorted(evaluating) and max(evaluating) < 1.0

    calls = {"n": 0}

    def cancel_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        EncodedShape(torch_sphere, batch_size=5_000).extract(ExtractionSettings(resolution=64),
                                                            should_cancel=cancel_after_three)
    assert calls["n"] == 4  # stopped at the first check after it said yes


def test_nan_network_is_an_error() -> None:
    with pytest.raises(GenerationError, match="NaN"):
        EncodedShape(lambda p: torch.full((len(p),), float("nan"))).extract(ExtractionSettings(resolution=32))


@pytest.mark.parametrize("bad,message", [
    ({"threshold": 1.0}, "threshold must be a probability"),
    ({"threshold": 0.0}, "threshold must be a probability"),
    ({"resolution": 100}, "resolution must be one of"),
    ({"resolution": 64, "resolution_0": 24}, "resolution_0 must be a power of two"),
    ({"refine_steps": -1}, "refine_steps must be at least 0"),
    ({"refine_method": "newton"}, "refine_method must be one of project, optimise"),
])
def test_bad_settings(bad: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ExtractionSettings(**bad)


def test_folded_decoder_matches_the_network() -> None:
    model = randomized_model(small_config("onet-pointcloud"))
    with torch.no_grad():
        c = model.encode(example_input("pointcloud", 1))
        points = torch.rand(4000, 3) - 0.55
        reference = model.decode(points[None], c)[0]
        folded = FoldedDecoder(model.decoder, c)(points)
    torch.testing.assert_close(folded, reference, rtol=1e-4, atol=1e-4)
    # Gradients in float64: in float32 the two summation orders can put a point on either side of a ReLU
    # kink (a few of 4,000 did on one machine), which is rounding, not a difference between the decoders.
    model, c, points = model.double(), c.double(), points.double().requires_grad_(True)
    grad_folded = torch.autograd.grad(FoldedDecoder(model.decoder, c)(points).sum(), points)[0]
    grad_reference = torch.autograd.grad(model.decode(points[None], c)[0].sum(), points)[0]
    torch.testing.assert_close(grad_folded, grad_reference, rtol=1e-3, atol=1e-4)


def test_folded_decoder_slices_give_the_same_logits() -> None:
    model = randomized_model(small_config("onet-pointcloud"))
    with torch.inference_mode():
        c = model.encode(example_input("pointcloud", 1))
        points = torch.rand(1000, 3) - 0.55
        whole = FoldedDecoder(model.decoder, c)(points)  # one slice at this width
        sliced = FoldedDecoder(model.decoder, c, slice_rows=256)  # three full slices and a rest
        torch.testing.assert_close(sliced(points), whole, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sliced(points[:7]), whole[:7], rtol=1e-5, atol=1e-5)
        assert sliced(points[:0]).shape == (0,)


def _random_weights(arch: str) -> Weights:
    model = randomized_model(small_config(arch))
    return Weights(model.config, model.state_dict(), 0.5, {"summary": "random test network"})


def test_random_network_deterministic_and_in_source_frame() -> None:
    weights = _random_weights("onet-pointcloud")
    cloud = np.random.default_rng(0).random((2000, 3)) * 4.0 + 10.0
    meshes = []
    for _ in range(2):
        reconstructor = Reconstructor(weights, "cpu", batch_size=7_000)
        shape = reconstructor.encode(prepare_pointcloud(cloud, n_points=300, seed=1))
        meshes.append(shape.extract(ExtractionSettings(threshold=0.5, resolution=32)))
    a, b = meshes
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    assert a.vertices.dtype == np.float32 and a.faces.dtype == np.int32
    if len(a.faces):
        assert is_watertight(a.faces)
        # Box [-0.55, 0.55]^3 mapped back through the cloud's loc/scale.
        prepared = prepare_pointcloud(cloud, n_points=300, seed=1)
        lo, hi = prepared.to_source(np.full((1, 3), -0.55)), prepared.to_source(np.full((1, 3), 0.55))
        assert (a.vertices >= lo - 1e-4).all() and (a.vertices <= hi + 1e-4).all()


def test_modality_mismatch_and_missing_device() -> None:
    reconstructor = Reconstructor(_random_weights("onet-pointcloud"), "cpu")
    grid = np.zeros((32,) * 3, bool)
    grid[10:20, 10:20, 10:20] = True
    with pytest.raises(InputError, match="these weights take pointcloud input, not voxels"):
        reconstructor.encode(prepare_voxels(grid))
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="'cuda' is not available"):
            Reconstructor(_random_weights("onet-voxels"), "cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu() -> None:
    weights = _random_weights("onet-voxels")
    grid = np.zeros((32,) * 3, bool)
    grid[8:24, 8:24, 8:24] = True
    results = [Reconstructor(weights, device).encode(prepare_voxels(grid)).extract(
        ExtractionSettings(threshold=0.5, resolution=32)) for device in ("cpu", "cuda")]
    assert abs(len(results[0].faces) - len(results[1].faces)) <= 0.01 * max(1, len(results[0].faces))


# ------------------------------------------------------------------------------------------ CLI


def _voxel_grid() -> np.ndarray:
    grid = np.zeros((32,) * 3, bool)
    grid[6:26, 10:22, 4:28] = True
    return grid


@pytest.fixture
def voxel_weights(tmp_path: Path) -> Path:
    """Random voxel weights, shifted so that they have a surface for _voxel_grid() at threshold 0.5."""
    model = randomized_model(small_config("onet-voxels"))
    centre_logits(model, torch.from_numpy(_voxel_grid()).float()[None])
    path = tmp_path / "vox.safetensors"
    save_weights(path, Weights(model.config, model.state_dict(), 0.5, {"summary": "test"}))
    return path


def _voxel_file(tmp_path: Path) -> Path:
    path = tmp_path / "in.npy"
    np.save(path, _voxel_grid())
    return path


def test_cli_reconstruct_writes_every_format(tmp_path: Path, voxel_weights: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    source = _voxel_file(tmp_path)
    for suffix in (".obj", ".ply", ".off", ".glb"):
        out = tmp_path / f"mesh{suffix}"
        code = cli_main(["reconstruct", str(source), "-o", str(out), "--weights", str(voxel_weights),
                         "--resolution", "32", "--json", "--quiet", "--normals"])
        assert code == 0, capsys.readouterr().err
        stats = json.loads(capsys.readouterr().out)
        assert stats["modality"] == "voxels" and stats["points_evaluated"] > 0
        loaded = trimesh.load(out, force="mesh", process=False)
        assert len(loaded.faces) == stats["faces"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files


def test_cli_refinement_methods(tmp_path: Path, voxel_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, out = _voxel_file(tmp_path), tmp_path / "mesh.obj"
    base = ["reconstruct", str(source), "-o", str(out), "--weights", str(voxel_weights), "--resolution", "32",
            "--json", "--quiet", "--refine", "4"]
    seen = {}
    for method in ("project", "optimise"):
        assert cli_main(base + ["--refine-method", method]) == 0, capsys.readouterr().err
        seen[method] = json.loads(capsys.readouterr().out)
        assert seen[method]["seconds_refine"] > 0
    assert 1 <= seen["project"]["refine_passes"] <= 4 and "refine_passes" not in seen["optimise"]
    with pytest.raises(SystemExit):
        cli_main(base + ["--refine-method", "newton"])
    assert "invalid choice: 'newton'" in capsys.readouterr().err


def test_cli_bad_inputs_leave_nothing(tmp_path: Path, voxel_weights: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    source = _voxel_file(tmp_path)
    out = tmp_path / "out.obj"
    base = ["reconstruct", str(source), "-o", str(out), "--weights", str(voxel_weights), "--quiet"]
    assert cli_main(base + ["--threshold", "1.5"]) == 1
    assert "threshold must be a probability" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli_main(base + ["--modality", "pointcloud"])
    assert exit_info.value.code == 2 and "the weights take voxels" in capsys.readouterr().err
    assert cli_main(base + ["--threshold", "0.999999"]) == 1  # nothing is that certainly inside
    assert "no surface" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["reconstruct", str(tmp_path / "missing.npy"), "-o", str(out), "--quiet"])
    assert exit_info.value.code == 2 and "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(base[:3] + [str(tmp_path / "no_folder" / "out.obj")] + base[4:])
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("stage, settings", [
    ("simplifying", ExtractionSettings(threshold=0.5, resolution=256, simplify_faces=2000)),
    ("refining", ExtractionSettings(threshold=0.5, resolution=128, refine_steps=5)),
    ("normals", ExtractionSettings(threshold=0.5, resolution=128, normals=True)),
])
def test_every_stage_can_be_cancelled(stage: str, settings: ExtractionSettings) -> None:
    """A cancel asked for once a stage has begun stops it (simplification of a large mesh runs in a child
    process that is killed; refinement and normals check between passes of bounded size)."""
    def big_sphere(p: torch.Tensor) -> torch.Tensor:
        return (0.52 - p.norm(dim=1)) * 100

    seen: list[str] = []
    with pytest.raises(Cancelled):
        EncodedShape(big_sphere).extract(settings, progress=lambda s, f: seen.append(s),
                                         should_cancel=lambda: stage in seen)
    assert seen[-1] == stage


def test_simplification_in_a_child_process_gives_the_same_mesh() -> None:
    from blender_occnet.occnet import generation

    mesh = EncodedShape(torch_sphere).extract(ExtractionSettings(threshold=0.5, resolution=128))
    inline = generation.simplify(mesh.vertices, mesh.faces, 1500)
    child = generation._simplify_in_child(mesh.vertices, mesh.faces, 1500, lambda: False)
    assert np.array_equal(inline[1], child[1]) and np.allclose(inline[0], child[0])


def test_an_extraction_that_would_not_fit_is_refused_with_the_figures() -> None:
    from blender_occnet.occnet.generation import available_memory, check_memory, extraction_bytes

    assert extraction_bytes(512) == 9 * 513 ** 3  # 1.2 GB, as measured (BENCHMARKS.md)
    with pytest.raises(InputError, match=r"a 512-cell extraction needs about 1\.1 GB and this machine has 0\.5 GB "
                                         r"free; choose 256 cells or fewer"):
        check_memory(512, available=2 ** 29)
    check_memory(256, available=2 ** 29)  # fits
    free = available_memory()
    assert free is None or free > 0  # Linux reports it; elsewhere no check is made
