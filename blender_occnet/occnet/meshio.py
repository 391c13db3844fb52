"""Reading point clouds and meshes from files, and sampling points on mesh surfaces."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import geometry
from .errors import InputError

MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")
POINT_SUFFIXES = (".xyz", ".npy", ".npz") + MESH_SUFFIXES


@dataclass
class MeshData:
    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64; empty (0, 3) for a bare point set


def read_mesh(path: str | os.PathLike[str]) -> MeshData:
    """Vertices and triangles of a mesh file (a scene's meshes are merged, transforms applied)."""
    path = _existing(path)
    if path.suffix.lower() == ".obj":
        plain = _read_plain_obj(path)
        if plain is not None:
            return plain
    import trimesh  # imported here: the add-on side never needs it

    try:
        loaded: Any = trimesh.load(str(path), process=False)
        if isinstance(loaded, trimesh.Scene):  # glTF and multi-object files: merge, transforms applied
            loaded = loaded.to_geometry() if loaded.geometry else None
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise InputError(f"{path}: cannot read as a mesh ({type(exc).__name__}: {exc})") from None
    vertices = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
    if len(vertices) == 0:
        raise InputError(f"{path}: the file holds no vertices")
    return MeshData(vertices, faces)


OBJ_CHUNK_BYTES = 1 << 24  # text read at once by the OBJ reader: memory is the arrays', not the file's


def _read_plain_obj(path: Path) -> MeshData | None:
    """An OBJ of 'v x y z' and 'f a b c ...' lines (a/b/c and polygon forms too), read with numpy a chunk
    of lines at a time: a 10-million-face file costs its arrays (a few hundred MB) rather than trimesh's
    2.8 GB, and no trimesh import. None when the file uses what only trimesh handles (vertex colours,
    negative or relative indices, line continuations): the caller then uses trimesh."""
    vertices: list[np.ndarray] = []
    triangles: list[np.ndarray] = []
    try:
        with open(path, "rb") as handle:
            while True:
                lines = handle.readlines(OBJ_CHUNK_BYTES)
                if not lines:
                    break
                v = [line[2:] for line in lines if line.startswith(b"v ")]
                f = [line[2:].split() for line in lines if line.startswith(b"f ")]
                if v:
                    values = np.array(b" ".join(v).split(), dtype=np.float64)
                    if values.size != 3 * len(v):
                        return None  # colours or a w coordinate on some vertex
                    vertices.append(values.reshape(-1, 3))
                if f:
                    try:
                        chunk = _obj_faces(f)
                    except OverflowError:
                        raise InputError(f"{path}: a face refers to a vertex index beyond any file's (over 19 "
                                         "digits); the file is broken: export it again") from None
                    if chunk is None:
                        return None
                    triangles.append(chunk)
                if any(line.rstrip().endswith(b"\\") for line in lines):
                    return None
    except InputError:
        raise
    except (OSError, ValueError):
        return None  # let trimesh say what is wrong
    if not vertices:
        return None
    points = np.concatenate(vertices)
    faces = np.concatenate(triangles) - 1 if triangles else np.zeros((0, 3), np.int64)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(points)):
        raise InputError(f"{path}: a face refers to vertex {int(faces.max()) + 1 if faces.max() >= len(points) else 0},"
                         f" but the file has {len(points):,} vertices")
    return MeshData(points, faces)


def _obj_faces(rows: list[list[bytes]]) -> np.ndarray | None:
    """1-based triangles (K, 3) int64 from face rows of vertex tokens ('7', '7/2', '7//3', '7/2/3');
    polygons are fanned. None for negative (relative) indices."""
    counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    if (counts < 3).any():
        raise ValueError("a face with fewer than three vertices")
    tokens = [t.split(b"/", 1)[0] for r in rows for t in r]
    index = np.array(tokens, dtype=np.int64)
    if (index <= 0).any():
        return None
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # Fan each polygon: (first, k, k + 1) for k in 1..n-2.
    fans = counts - 2
    owner = np.repeat(np.arange(len(rows)), fans)
    k = np.arange(int(fans.sum())) - np.repeat(np.cumsum(fans) - fans, fans) + 1
    first = starts[owner]
    return np.stack([index[first], index[first + k], index[first + k + 1]], axis=1)


def read_normalised_mesh(path: str | os.PathLike[str]) -> tuple[MeshData, np.ndarray, float]:
    """A mesh file moved into the unit cube (bbox centre at 0, longest edge 1), with that loc and scale."""
    return normalise_mesh(read_mesh(path), str(path))


def normalise_mesh(mesh: MeshData, name: str = "mesh") -> tuple[MeshData, np.ndarray, float]:
    """The mesh moved into the unit cube (bbox centre at 0, longest edge 1), with that loc and scale;
    `name` (a file or an object) goes into the error messages."""
    if len(mesh.vertices) == 0:
        raise InputError(f"{name}: the mesh has no vertices")
    finite = np.isfinite(mesh.vertices).all(axis=1)
    if not finite.all():
        raise InputError(f"{name}: {int((~finite).sum())} vertices have non-finite coordinates")
    loc, scale = geometry.unit_cube_frame(mesh.vertices.min(axis=0), mesh.vertices.max(axis=0))
    if not scale > 0:
        raise InputError(f"{name}: the mesh has no extent")
    return MeshData((mesh.vertices - loc) / scale, mesh.faces), loc, scale


def read_points(path: str | os.PathLike[str], n_surface_samples: int = 100_000, seed: int = 0) -> np.ndarray:
    """An (N, 3) point array from a point file, or surface samples of a mesh file.

    A `.npy` file is memory-mapped and floating-point data is returned as it is stored (a view, not a
    float64 copy): a cloud of tens of millions of points costs its subsample, not its size."""
    path = _existing(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        points = _load_npy(path)
    elif suffix == ".npz":
        points = _load_npz_points(path)
    elif suffix == ".xyz":
        try:
            points = np.loadtxt(path, dtype=np.float64, ndmin=2, comments="#")
        except ValueError as exc:
            raise InputError(f"{path}: not a text file of x y z rows ({exc})") from None
    elif suffix in MESH_SUFFIXES:
        mesh = read_mesh(path)
        if len(mesh.faces) == 0:
            points = mesh.vertices  # a PLY/OBJ point cloud without faces
        else:
            points, _ = geometry.sample_surface(mesh.vertices, mesh.faces, n_surface_samples, seed)
    else:
        raise InputError(f"{path}: unknown point cloud format {suffix!r}; use one of {', '.join(POINT_SUFFIXES)}")
    if not isinstance(points, np.ndarray):
        points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3:
        raise InputError(f"{path}: expected an N x 3 array of points, got shape {points.shape}")
    if points.dtype.kind != "f":
        return points[:, :3].astype(np.float64)
    return points[:, :3]


def _existing(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    return path


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from None


def _load_npz_points(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.keys())
            # The original layout's pointcloud.npz keeps them under 'points'.
            key = "points" if "points" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise InputError(f"{path}: holds arrays {names}; put the points under 'points'")
            return archive[key]
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npz archive ({exc})") from None


MESH_OUTPUT_SUFFIXES = (".obj", ".ply", ".off", ".glb", ".stl")


def write_mesh(path: str | os.PathLike[str], vertices: np.ndarray, faces: np.ndarray,
               normals: np.ndarray | None = None) -> None:
    """Write a mesh; the format follows the suffix. The file appears whole or not at all.

    OBJ, PLY (binary), OFF and STL (binary) are written with numpy alone: importing trimesh costs about two
    seconds of a command-line run, more than writing a mesh of a million faces. glTF goes through trimesh."""
    from .files import atomic_output

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_OUTPUT_SUFFIXES:
        raise InputError(f"{path}: cannot write {suffix or 'files without a suffix'}; "
                         f"use one of {', '.join(MESH_OUTPUT_SUFFIXES)}")
    vertices = np.asarray(vertices, dtype=np.float32).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    normals = None if normals is None else np.asarray(normals, dtype=np.float32).reshape(-1, 3)
    with atomic_output(path) as tmp:
        writer = _WRITERS.get(suffix)
        if writer is not None:
            with open(tmp, "wb") as handle:
                writer(handle, vertices, faces, normals)
            return
        import trimesh

        trimesh.Trimesh(vertices, faces, vertex_normals=normals, process=False).export(tmp, file_type=suffix[1:])


def _write_obj(handle: Any, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None) -> None:
    np.savetxt(handle, vertices, fmt="v %.7g %.7g %.7g")
    if normals is not None:
        np.savetxt(handle, normals, fmt="vn %.5g %.5g %.5g")
        np.savetxt(handle, np.repeat(faces + 1, 2, axis=1), fmt="f %d//%d %d//%d %d//%d")
    else:
        np.savetxt(handle, faces + 1, fmt="f %d %d %d")


def _write_off(handle: Any, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None) -> None:
    handle.write(f"OFF\n{len(vertices)} {len(faces)} 0\n".encode())
    np.savetxt(handle, vertices, fmt="%.7g %.7g %.7g")
    np.savetxt(handle, faces, fmt="3 %d %d %d")


def _write_ply(handle: Any, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None) -> None:
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + (
        [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")] if normals is not None else [])
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(vertices)}"]
    header += [f"property float {name}" for name, _ in fields]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    handle.write(("\n".join(header) + "\n").encode())
    rows = np.empty(len(vertices), dtype=fields)
    for axis, name in enumerate("xyz"):
        rows[name] = vertices[:, axis]
        if normals is not None:
            rows["n" + name] = normals[:, axis]
    handle.write(rows.tobytes())
    polygons = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    polygons["n"], polygons["v"] = 3, faces
    handle.write(polygons.tobytes())


def _write_stl(handle: Any, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None) -> None:
    corners = vertices[faces]
    normal = geometry.face_normals(vertices, faces)
    rows = np.zeros(len(faces), dtype=[("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attr", "<u2")])
    rows["normal"], rows["corners"] = normal, corners
    handle.write(b"binary STL written by blender-occnet".ljust(80, b" "))
    handle.write(np.uint32(len(faces)).tobytes())
    handle.write(rows.tobytes())


_WRITERS = {".obj": _write_obj, ".off": _write_off, ".ply": _write_ply, ".stl": _write_stl}
