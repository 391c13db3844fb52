"""Reading point clouds and meshes from files, and sampling points on mesh surfaces."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import geometry
from .colours import ColourSource, colour_source, text_colours
from .errors import InputError

MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")
TEXT_SUFFIXES = (".xyz", ".xyzrgb", ".pts", ".txt")  # rows of x y z [r g b] or x y z intensity r g b
POINT_SUFFIXES = TEXT_SUFFIXES + (".npy", ".npz") + MESH_SUFFIXES
NPZ_COLOUR_KEYS = ("colors", "colours", "rgb")


@dataclass
class MeshData:
    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64; empty (0, 3) for a bare point set
    colours: np.ndarray | None = None  # (V, 3 or 4) per-vertex colours as the file holds them, when it has them


def read_mesh(path: str | os.PathLike[str]) -> MeshData:
    """Vertices and triangles of a mesh file (a scene's meshes are merged, transforms applied)."""
    path = _existing(path)
    if path.suffix.lower() == ".obj":
        plain = _read_plain_obj(path)
        if plain is not None:
            return plain
    import trimesh  # imported here: the add-on side never needs it

    ply = path.suffix.lower() == ".ply"
    if ply:
        _check_ply_header(path)
    try:
        loaded: Any = trimesh.load(str(path), process=False)
        if isinstance(loaded, trimesh.Scene):  # glTF and multi-object files: merge, transforms applied
            loaded = loaded.to_geometry() if loaded.geometry else None
    except Exception as exc:  # trimesh raises many types for unreadable files
        if ply:  # its header was read above: the rest is what is wrong, not which exception trimesh met
            raise InputError(f"{path}: what follows its header does not match it (a damaged or incomplete "
                             "file)") from None
        raise InputError(f"{path}: cannot read as a mesh ({type(exc).__name__}: {exc})") from None
    vertices = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
    if len(vertices) == 0:
        raise InputError(f"{path}: the file holds no vertices")
    return MeshData(vertices, faces, _trimesh_colours(loaded, len(vertices)))


PLY_HEADER_BYTES = 1 << 16


def _check_ply_header(path: Path) -> None:
    """A PLY's header, read before trimesh reads the file (which meets a vertex without y with KeyError: 'y'):
    raises InputError naming what is missing."""
    with open(path, "rb") as handle:
        head = handle.read(PLY_HEADER_BYTES)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise InputError(f"{path}: not a PLY file (no 'ply' ... 'end_header' header at its start)")
    element, vertex_properties, has_vertices = "", [], False
    for line in head[:end].decode("ascii", "replace").splitlines():
        words = line.split()
        if words[:1] == ["element"] and len(words) >= 2:
            element = words[1]
            has_vertices = has_vertices or element == "vertex"
        elif words[:1] == ["property"] and element == "vertex" and len(words) >= 3:
            vertex_properties.append(words[-1])
    if not has_vertices:
        raise InputError(f"{path}: the PLY has no vertex element; a point cloud or mesh needs one with x, y and z")
    missing = [axis for axis in "xyz" if axis not in vertex_properties]
    if missing:
        raise InputError(f"{path}: its vertices have no {' or '.join(missing)} property (they have "
                         f"{', '.join(vertex_properties) or 'none'}); a point cloud needs x, y and z")


def _trimesh_colours(loaded: Any, count: int) -> np.ndarray | None:
    """Per-vertex colours trimesh read (a point cloud's `colors`, a mesh's vertex colours), else None: a mesh
    without any gets trimesh's made-up grey, which is no colour of the source's."""
    visual = getattr(loaded, "visual", None)
    if visual is not None and getattr(visual, "kind", None) == "vertex":
        colours = np.asarray(visual.vertex_colors)
    elif visual is None and len(getattr(loaded, "colors", ())):
        colours = np.asarray(loaded.colors)
    else:
        return None
    return colours if colours.ndim == 2 and len(colours) == count and colours.shape[1] in (3, 4) else None


OBJ_CHUNK_BYTES = 1 << 24  # text read at once by the OBJ reader: memory is the arrays', not the file's


def _read_plain_obj(path: Path) -> MeshData | None:
    """An OBJ of 'v x y z' and 'f a b c ...' lines (a/b/c and polygon forms too), read with numpy a chunk
    of lines at a time: a 10-million-face file costs its arrays (a few hundred MB) rather than trimesh's
    2.8 GB, and no trimesh import; `v x y z r g b` gives vertex colours. None when the file uses what only
    trimesh handles (a w coordinate, negative or relative indices, line continuations): the caller then uses
    trimesh."""
    vertices: list[np.ndarray] = []
    triangles: list[np.ndarray] = []
    rgb: list[np.ndarray] = []
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
                    if values.size == 6 * len(v):  # `v x y z r g b` on every vertex: colours in [0, 1]
                        values = values.reshape(-1, 6)
                        rgb.append(values[:, 3:])
                        values = values[:, :3]
                    elif values.size != 3 * len(v):
                        return None  # a w coordinate, or colours on some vertices only
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
    colours = None
    if rgb:
        if len(rgb) != len(vertices):
            return None  # colours on some chunks' vertices only: trimesh sorts it out
        colours = text_colours(np.concatenate(rgb))
    return MeshData(points, faces, colours)


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
    return read_coloured_points(path, n_surface_samples, seed)[0]


def read_coloured_points(path: str | os.PathLike[str], n_surface_samples: int = 100_000,
                         seed: int = 0) -> tuple[np.ndarray, ColourSource | None]:
    """read_points' points, and the colours the file gives them when it has any: a PLY's red/green/blue, an
    OBJ's `v x y z r g b`, a glTF's COLOR_0, a text file's colour columns, an .npz's 'colors' array. A mesh's
    colours stay on its vertices (the colour source), its points are samples of its faces."""
    path = _existing(path)
    suffix = path.suffix.lower()
    colours: ColourSource | None = None
    if suffix == ".npy":
        points = _load_npy(path)
    elif suffix == ".npz":
        points, rgb = _load_npz_points(path)
        colours = None if rgb is None else _colour_source(path, points, rgb)
    elif suffix in TEXT_SUFFIXES:
        points, rgb = _load_text_points(path)
        colours = None if rgb is None else _colour_source(path, points, rgb)
    elif suffix in MESH_SUFFIXES:
        mesh = read_mesh(path)
        if mesh.colours is not None:
            colours = _colour_source(path, mesh.vertices, mesh.colours)
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
        return points[:, :3].astype(np.float64), colours
    return points[:, :3], colours


def _colour_source(path: Path, points: np.ndarray, colours: np.ndarray) -> ColourSource | None:
    if np.asarray(points).ndim != 2 or np.asarray(points).shape[1] < 3:
        return None  # the caller says what is wrong with the points
    return colour_source(points, colours, str(path))


# Text clouds are read a chunk of rows at a time and refused beyond this many rows (the wire's own bound):
# np.loadtxt of a whole file would hold every row as Python objects first.
MAX_TEXT_ROWS = 5_000_000
TEXT_CHUNK_ROWS = 1 << 16
MAX_TEXT_LINE = 1024  # bytes of one row read at once: a file without line breaks cannot fill memory


def _load_text_points(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows of `x y z`, `x y z r g b` or `x y z intensity r g b` (Leica PTS, whose first line is the count);
    commas or spaces between values, `#` comments. Colours 0-255 (any above 1) or in [0, 1]."""
    rows: list[np.ndarray] = []
    count, width = 0, 0
    try:
        with open(path, "rb") as handle:
            first = True
            while True:
                lines = [line for line in (handle.readline(MAX_TEXT_LINE) for _ in range(TEXT_CHUNK_ROWS)) if line]
                if any(len(line) == MAX_TEXT_LINE and not line.endswith(b"\n") for line in lines):
                    raise InputError(f"{path}: a line of over {MAX_TEXT_LINE} bytes; a point cloud's text file holds "
                                     "rows of x y z [r g b]")
                if not lines:
                    break
                if first and len(lines[0].replace(b",", b" ").split()) == 1:
                    lines = lines[1:]  # a PTS header: the point count
                first = False
                text = b"".join(lines).replace(b",", b" ").decode("latin-1")
                block = np.loadtxt(text.splitlines(), dtype=np.float64, ndmin=2, comments="#")
                if not block.size:
                    continue
                width = width or block.shape[1]
                count += len(block)
                if count > MAX_TEXT_ROWS:
                    raise InputError(f"{path}: over {MAX_TEXT_ROWS:,} points in a text file; save the cloud as "
                                     ".npy or .ply (binary), or subsample it")
                rows.append(block)
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(f"{path}: not a text file of x y z [r g b] rows ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if not rows:
        raise InputError(f"{path}: the file holds no points")
    values = np.concatenate(rows)
    colour_columns = {6: slice(3, 6), 7: slice(4, 7)}.get(values.shape[1])
    if colour_columns is None:
        return values, None
    return values[:, :3], text_colours(values[:, colour_columns])


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


def _load_npz_points(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The points (under 'points', or the only array) and their colours (under 'colors', 'colours' or 'rgb')."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.keys())
            # The original layout's pointcloud.npz keeps them under 'points'.
            key = "points" if "points" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise InputError(f"{path}: holds arrays {names}; put the points under 'points'")
            colour_key = next((name for name in NPZ_COLOUR_KEYS if name in names), None)
            return archive[key], None if colour_key is None else archive[colour_key]
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npz archive ({exc})") from None


MESH_OUTPUT_SUFFIXES = (".obj", ".ply", ".off", ".glb", ".stl")


COLOUR_OUTPUT_SUFFIXES = (".obj", ".ply", ".off", ".glb")  # the formats that can hold vertex colours


def write_mesh(path: str | os.PathLike[str], vertices: np.ndarray, faces: np.ndarray,
               normals: np.ndarray | None = None, colours: np.ndarray | None = None) -> None:
    """Write a mesh; the format follows the suffix. The file appears whole or not at all. `colours` ((V, 3)
    uint8, sRGB) go where the format holds them: PLY red/green/blue, OBJ `v x y z r g b`, OFF as COFF, glTF
    COLOR_0; STL has no place for them.

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
    colours = None if colours is None else np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    with atomic_output(path) as tmp:
        writer = _WRITERS.get(suffix)
        if writer is not None:
            with open(tmp, "wb") as handle:
                writer(handle, vertices, faces, normals, colours)
            return
        import trimesh

        trimesh.Trimesh(vertices, faces, vertex_normals=normals, process=False,
                        vertex_colors=colours).export(tmp, file_type=suffix[1:])


def _write_obj(handle: Any, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None,
               colours: np.ndarray | None) -> None:
    if colours is not None:  # the common extension: each vertex line followed by its red, green, blue in [0, 1]
        np.savetxt(handle, np.hstack([vertices, colours / 255.0]), fmt="v %.7g %.7g %.7g %.4g %.4g %.4g")
    else:
        np.savetxt(handle, vertices, fmt="v %.7g %.7g %.7g")
    if normals is not None:
        np.savetxt(handle, normals, fmt="vn %.5g %.5g %.5g")
        np.savetxt(handle, np.repeat(faces + 1, 2, axis=1), fmt="f %d//%d %d//%d %d//%d")
    else:
        np.savetxt(handle, faces + 1, fmt="f %d %d %d")


def _write_off(handle: Any, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None,
               colours: np.ndarray | None) -> None:
    if colours is not None:
        handle.write(f"COFF\n{len(vertices)} {len(faces)} 0\n".encode())
        rows = np.hstack([vertices, colours, np.full((len(vertices), 1), 255)]).astype(np.float64)
        np.savetxt(handle, rows, fmt="%.7g %.7g %.7g %d %d %d %d")
    else:
        handle.write(f"OFF\n{len(vertices)} {len(faces)} 0\n".encode())
        np.savetxt(handle, vertices, fmt="%.7g %.7g %.7g")
    np.savetxt(handle, faces, fmt="3 %d %d %d")


def _write_ply(handle: Any, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None,
               colours: np.ndarray | None) -> None:
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + (
        [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")] if normals is not None else []) + (
        [("red", "u1"), ("green", "u1"), ("blue", "u1")] if colours is not None else [])
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(vertices)}"]
    header += [f"property {'uchar' if kind == 'u1' else 'float'} {name}" for name, kind in fields]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    handle.write(("\n".join(header) + "\n").encode())
    rows = np.empty(len(vertices), dtype=fields)
    for axis, name in enumerate("xyz"):
        rows[name] = vertices[:, axis]
        if normals is not None:
            rows["n" + name] = normals[:, axis]
    if colours is not None:
        for axis, name in enumerate(("red", "green", "blue")):
            rows[name] = colours[:, axis]
    handle.write(rows.tobytes())
    polygons = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    polygons["n"], polygons["v"] = 3, faces
    handle.write(polygons.tobytes())


def _write_stl(handle: Any, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None,
               colours: np.ndarray | None) -> None:
    corners = vertices[faces]
    normal = geometry.face_normals(vertices, faces)
    rows = np.zeros(len(faces), dtype=[("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attr", "<u2")])
    rows["normal"], rows["corners"] = normal, corners
    handle.write(b"binary STL written by blender-occnet".ljust(80, b" "))
    handle.write(np.uint32(len(faces)).tobytes())
    handle.write(rows.tobytes())


_WRITERS = {".obj": _write_obj, ".off": _write_off, ".ply": _write_ply, ".stl": _write_stl}
