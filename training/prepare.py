"""`python -m training.prepare MESH_FOLDER OUT_FOLDER`: a folder of the user's meshes -> the original layout.

Sub-folders are categories (files at the top level form the category "default"). Each mesh is
normalised to the unit cube and labelled with inside tests that stay right on meshes that are not
watertight (six half-rays vote, occnet.inside), so no external watertighting pipeline is needed. The
files written are those of the procedural collection (training.shapes.write_model): uniform and
near-surface points with occupancies, surface samples with normals, a 32^3 binvox and the mesh.
Parallel over meshes with a progress bar; a bad mesh is reported and skipped.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from blender_occnet.common import geometry
from blender_occnet.common.errors import InputError
from blender_occnet.occnet.inside import contains
from blender_occnet.occnet.meshio import MESH_SUFFIXES, MeshData, read_normalised_mesh
from blender_occnet.occnet.voxelize import voxelize_mesh

from .shapes import MODEL_FILES, Settings, SolidShape, write_model, write_split_lists

if TYPE_CHECKING:
    from trimesh import Trimesh

Task = tuple[str, str, str, int, Settings]  # mesh file, dataset folder, category, seed, settings


@dataclass
class MeshShape(SolidShape):
    """A normalised mesh as the solid write_model needs (its inside test: six half-rays vote, occnet.inside)."""

    mesh: MeshData
    loc: np.ndarray
    scale: float

    @classmethod
    def from_file(cls, path: Path) -> MeshShape:
        mesh, loc, scale = read_normalised_mesh(path)
        if len(mesh.faces) == 0:
            raise InputError(f"{path}: the mesh has no faces")
        return cls(mesh, loc, scale)

    def contains(self, points: np.ndarray) -> np.ndarray:
        return contains(self.mesh.vertices, self.mesh.faces, points, robust=True)

    def sample_surface(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        vertices, faces = self.mesh.vertices, self.mesh.faces
        points, face = geometry.sample_surface(vertices, faces, n, int(rng.integers(2**31)))
        return points, geometry.face_normals(vertices, faces[face])

    def voxels(self, resolution: int, rng: np.random.Generator, n_surface: int = 100_000) -> np.ndarray:
        return voxelize_mesh(self.mesh, resolution, surface_samples=n_surface)

    def trimesh(self) -> Trimesh:
        import trimesh

        return trimesh.Trimesh(self.mesh.vertices, self.mesh.faces, process=False)


def find_meshes(folder: Path) -> dict[str, list[Path]]:
    """category -> mesh files; sub-folders are categories, top-level files go to 'default'."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in MESH_SUFFIXES:
            relative = path.relative_to(folder)
            category = relative.parts[0] if len(relative.parts) > 1 else "default"
            found.setdefault(category, []).append(path)
    if not found:
        raise InputError(f"{folder}: no mesh files ({', '.join(MESH_SUFFIXES)}) in it or its sub-folders")
    return found


def _prepare_one(task: Task) -> tuple[str, str, str]:
    """Worker: (category, model id, error or ''). The model is written into a hidden folder beside its
    place and renamed into it whole, so a mesh that fails (or a killed worker) leaves no partial model."""
    source, out, category, seed, settings = task
    path = Path(source)
    model_id = path.stem
    final = Path(out) / category / model_id
    partial = final.with_name(f".{model_id}.partial")
    assert not plain_name(model_id) and not plain_name(category), (category, model_id)  # _unique_ids refused them
    try:
        if final.exists() and not _written_by_us(final):
            raise InputError(f"{final} exists and is not a model this command wrote; move it or choose another "
                             "output folder")
        shape = MeshShape.from_file(path)
        rng = np.random.default_rng([seed, zlib.crc32(f"{category}/{model_id}".encode())])
        shutil.rmtree(partial, ignore_errors=True)
        write_model(shape, partial, rng, settings)
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
    except (InputError, ValueError, OSError, MemoryError, OverflowError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        return category, model_id, str(exc) or type(exc).__name__
    return category, model_id, ""


# What a model folder this command wrote may hold: a folder holding anything else is the user's, never replaced.
MODEL_CONTENTS = frozenset(MODEL_FILES) | {"mesh.obj", "img_choy2016"}


def plain_name(name: str) -> str:
    """Why `name` cannot name a model or category folder ('' when it can): the name becomes a folder inside
    the output folder, and the cleanup of a failed model removes that folder, so '..' or a name with a
    separator would reach outside it (a file named '...obj' once removed the whole output folder)."""
    if not name or name in (".", ".."):
        return "the name is empty, '.' or '..'"
    if name.startswith("."):
        return "the name starts with '.' (hidden, and the command's own staging folders do)"
    if any(c in name for c in "/\\:") or any(ord(c) < 32 for c in name):
        return "the name holds a path separator, ':' or a control character"
    if len(name) > 200:
        return "the name is over 200 characters"
    return ""


def _written_by_us(folder: Path) -> bool:
    """A folder holding only what write_model (and the renderer) put in a model folder."""
    return folder.is_dir() and not folder.is_symlink() and all(p.name in MODEL_CONTENTS for p in folder.iterdir())


def _unique_ids(meshes: dict[str, list[Path]]) -> tuple[dict[str, list[Path]], list[tuple[str, str]]]:
    """One file per model id (the file name's stem) and category; later namesakes are skipped, named, and so
    are files and categories whose names cannot be folder names (plain_name)."""
    kept: dict[str, list[Path]] = {}
    skipped: list[tuple[str, str]] = []
    for category, paths in meshes.items():
        if plain_name(category):
            skipped += [(f"{category}/{p.name}", f"folder {category!r}: {plain_name(category)}; rename it")
                        for p in paths]
            continue
        first: dict[str, Path] = {}
        for path in paths:
            if plain_name(path.stem):
                skipped.append((f"{category}/{path.name}", f"{path.name}: {plain_name(path.stem)}; rename it"))
                continue
            key = path.stem.casefold()  # Chair.obj and chair.ply share a folder on Windows and macOS
            if key in first:
                skipped.append((f"{category}/{path.stem}", f"{path.name} has the same name as "
                                f"{first[key].name} in {category}: rename one to keep both"))
                continue
            first[key] = path
        kept[category] = list(first.values())
    return kept, skipped


def prepare(folder: str | Path, out: str | Path, settings: Settings | None = None, seed: int = 0,
            workers: int = 1, progress: bool = True) -> dict[str, Any]:
    from tqdm import tqdm

    from .shapes import write_metadata

    folder, out = Path(folder), Path(out)
    meshes, failed = _unique_ids(find_meshes(folder))
    for name, why in failed:
        print(f"skipped {name}: {why}", file=sys.stderr)
    settings = settings or Settings(n_uniform=32768, n_surface=30000)
    tasks = [(str(p), str(out), c, seed, settings) for c, paths in meshes.items() for p in paths]
    done: dict[str, list[str]] = {c: [] for c in meshes}
    with tqdm(total=len(tasks), desc="meshes", unit="mesh", disable=not progress) as bar:
        for category, model_id, error in _run_tasks(tasks, workers):
            if error:
                failed.append((f"{category}/{model_id}", error))
                print(f"skipped {category}/{model_id}: {error}", file=sys.stderr)
            else:
                done[category].append(model_id)
            bar.update()
    if not any(done.values()):
        raise InputError(f"{folder}: none of the {len(tasks)} meshes could be prepared (first problem: "
                         f"{failed[0][1] if failed else 'unknown'})")
    for category, ids in done.items():
        order = np.random.default_rng([seed, len(ids)]).permutation(len(ids))
        write_split_lists(out / category, sorted(ids), order)
    write_metadata(out, [c for c, ids in done.items() if ids])
    return {"prepared": sum(len(v) for v in done.values()), "skipped": failed,
            "folders": [out / c / model_id for c, ids in done.items() for model_id in sorted(ids)]}


def _run_tasks(tasks: list[Task], workers: int) -> Iterator[tuple[str, str, str]]:
    """Each task's (category, model id, error), in the order they finish, from worker processes (also for
    one worker: a mesh that exhausts memory kills a worker, not the run). After a worker dies the pool is
    broken and which mesh did it is unknown, so the unfinished ones run again one by one, each in a
    process of its own: only the culprit is skipped, named, and nothing hangs."""
    unfinished = {id(task): task for task in tasks}
    pool = ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(_prepare_one, task): task for task in tasks}
        for future in as_completed(futures):
            result = future.result()  # raises BrokenProcessPool once a worker has died
            del unfinished[id(futures[future])]
            yield result
    except BrokenProcessPool:
        pool.shutdown(wait=True)
        for task in unfinished.values():  # one by one: slower, but only the culprit fails again
            yield _in_own_process(task)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C or an error: queued meshes are not started


def _in_own_process(task: Task) -> tuple[str, str, str]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_prepare_one, task).result()
        except BrokenProcessPool:
            return task[2], Path(task[0]).stem, ("the process preparing this mesh died (out of memory?); "
                                                  "skipped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("meshes", type=Path, help="folder of meshes; sub-folders are categories")
    parser.add_argument("out", type=Path, help="dataset folder to write (the original layout)")
    parser.add_argument("--uniform-points", type=int, default=32768)
    parser.add_argument("--surface-points", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=max(1, (multiprocessing.cpu_count() or 2) - 1))
    parser.add_argument("--render", action="store_true",
                        help="also render img_choy2016/ (24 views) of every model without them (needs bpy)")
    parser.add_argument("--render-engine", choices=("BLENDER_WORKBENCH", "CYCLES"), default="BLENDER_WORKBENCH",
                        help="Workbench falls back to Cycles where it cannot start")
    args = parser.parse_args(argv)
    try:
        result = prepare(args.meshes, args.out, Settings(n_uniform=args.uniform_points, n_surface=args.surface_points),
                         args.seed, args.workers)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"prepared {result['prepared']} meshes into {args.out}; skipped {len(result['skipped'])}")
    if args.render:
        from .render import render_models, report

        print(report(render_models(result["folders"], engine=args.render_engine)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
