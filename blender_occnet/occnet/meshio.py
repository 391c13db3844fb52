"""Reading point clouds and meshes from files, and sampling points on mesh surfaces."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..common import geometry
from ..common.errors import InputError
from .colours import ColourSource, colour_source, text_colours

MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")
TEXT_SUFFIXES = (".xyz", ".xyzrgb", ".pts", ".txt")  # rows of x y z [r g b] or x y z intensity r g b
POINT_SUFFIXES = TEXT_SUFFIXES + (".npy", ".npz") + MESH_SUFFIXES
NPZ_COLOUR_KEYS = ("colors", "colours", "rgb")
NPZ_NORMAL_KEY = "normals"


@dataclass
class MeshData:
    vertices: np.ndarray  # (V, 3) float64 (float32 as a binary STL holds them: three a face, half the memory)
    faces: np.ndarray  # (F, 3) int64; empty (0, 3) for a bare point set
    colours: np.ndarray | None = None  # (V, 3 or 4) per-vertex colours as the file holds them, when it has them
    normals: np.ndarray | None = None  # (V, 3) per-vertex normals of a PLY that gives them (nx, ny, nz)


@dataclass
class PointFile:
    """What a point file gives: its points (N, 3), the colour source when it has colours, and one normal a
    point when it has those (a scanner's PLY nx ny nz, an .npz's 'normals'), as the file holds them."""

    points: np.ndarray
    colours: ColourSource | None = None
    normals: np.ndarray | None = None


def read_mesh(path: str | os.PathLike[str]) -> MeshData:
    """Vertices and triangles of a mesh file (a scene's meshes are merged, transforms applied)."""
    path = _existing(path)
    plain_reader = _PLAIN_READERS.get(path.suffix.lower())
    if plain_reader is not None:
        plain = plain_reader(path)
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


# The plain readers: OBJ, OFF, PLY and STL read with numpy, geometry.CHUNK_BYTES of text or CHUNK_ROWS binary rows
# at a time, so a file costs its arrays rather than trimesh's copies of it (a 5M-face OFF had peaked at 3.3 GB).
# Each returns None for what only trimesh handles (vertex colours in an OFF, negative OBJ indices, mixed polygon
# sizes in a binary PLY, ...): the caller then uses trimesh.


def _read_plain_obj(path: Path) -> MeshData | None:
    """An OBJ of 'v x y z' and 'f a b c ...' lines (a/b/c and polygon forms too), a chunk of lines at a time (a
    10-million-face file costs a few hundred MB rather than trimesh's 2.8 GB); `v x y z r g b` gives vertex colours.
    None when the file uses a w coordinate, negative or relative indices or line continuations."""
    vertices: list[np.ndarray] = []
    triangles: list[np.ndarray] = []
    rgb: list[np.ndarray] = []
    try:
        with open(path, "rb") as handle:
            while True:
                lines = handle.readlines(geometry.CHUNK_BYTES)
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
                    chunk = _obj_faces(f)
                    if chunk is None:
                        return None
                    triangles.append(chunk)
                if any(line.rstrip().endswith(b"\\") for line in lines):
                    return None
    except OverflowError:
        raise _index_overflow(path) from None
    except (OSError, ValueError):
        return None  # let trimesh say what is wrong
    if rgb and len(rgb) != len(vertices):
        return None  # colours on some chunks' vertices only: trimesh sorts it out
    colours = text_colours(np.concatenate(rgb)) if rgb else None
    mesh = _mesh_of(path, vertices, triangles, base=1)
    if mesh is not None:
        mesh.colours = colours
    return mesh


def _obj_faces(rows: list[list[bytes]]) -> np.ndarray | None:
    """1-based triangles (K, 3) int64 from face rows of vertex tokens ('7', '7/2', '7//3', '7/2/3');
    polygons are fanned. None for negative (relative) indices."""
    counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    if (counts < 3).any():
        raise ValueError("a face with fewer than three vertices")
    index = np.array([t.split(b"/", 1)[0] for r in rows for t in r], dtype=np.int64)
    if (index <= 0).any():
        return None
    return _fan(counts, index)


def _fan(counts: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Triangles (K, 3) of polygons given by their vertex counts and their indices back to back: each polygon
    fanned, (first, k, k + 1) for k in 1..n-2."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    fans = counts - 2
    owner = np.repeat(np.arange(len(counts)), fans)
    k = np.arange(int(fans.sum())) - np.repeat(np.cumsum(fans) - fans, fans) + 1
    first = starts[owner]
    return np.stack([index[first], index[first + k], index[first + k + 1]], axis=1)


def _vertex_rows(lines: list[bytes], width: int, columns: tuple[int, ...] = (0, 1, 2)) -> np.ndarray | None:
    """(N, 3) float64 from N text lines of `width` numbers each (the x, y, z at `columns`); None when a line holds
    another count."""
    values = np.array(b" ".join(lines).split(), dtype=np.float64)
    if values.size != width * len(lines):
        return None
    return values.reshape(-1, width)[:, list(columns)]


def _polygon_rows(lines: list[bytes]) -> np.ndarray | None:
    """0-based triangles from OFF or ASCII PLY face lines ('n i j k ...', anything after the n indices ignored)."""
    rows = [line.split() for line in lines]
    counts = np.array([row[0] for row in rows], dtype=np.int64)
    if (counts < 3).any():
        return None
    index = np.array([t for row, n in zip(rows, counts.tolist()) for t in row[1:1 + n]], dtype=np.int64)
    if index.size != counts.sum():
        return None
    return _fan(counts, index)


def _sections(handle: Any, counts: list[int], comments: bool = False) -> Iterator[tuple[int, list[bytes]]]:
    """(section, lines) of a text body made of consecutive sections of `counts` lines, CHUNK_BYTES at a time; blank
    lines (and '#' comments) are not counted. Raises ValueError when the file ends early."""
    section = 0
    left = counts[0] if counts else 0
    while True:
        while section < len(counts) and left == 0:
            section += 1
            left = counts[section] if section < len(counts) else 0
        if section == len(counts):
            return
        lines = handle.readlines(geometry.CHUNK_BYTES)
        if not lines:
            raise ValueError("the file ends early")
        lines = [line for line in lines if line.strip() and not (comments and line.lstrip().startswith(b"#"))]
        while lines and section < len(counts):
            if left:
                yield section, lines[:left]
                taken = min(left, len(lines))
                lines, left = lines[taken:], left - taken
            if left == 0:
                section += 1
                left = counts[section] if section < len(counts) else 0


def _read_off(path: Path) -> MeshData | None:
    """An OFF file: 'OFF', the counts 'V F E', V lines 'x y z', F lines 'n i j k ...'. None for COFF, NOFF and
    vertex colours."""
    vertices: list[np.ndarray] = []
    triangles: list[np.ndarray] = []
    try:
        with open(path, "rb") as handle:
            words = handle.readline().split(b"#", 1)[0].split()
            if words[:1] != [b"OFF"]:
                return None
            words = words[1:]  # the counts may follow on the same line
            while len(words) < 3:
                line = handle.readline()
                if not line:
                    return None
                words += line.split(b"#", 1)[0].split()
            for section, lines in _sections(handle, [int(words[0]), int(words[1])], comments=True):
                chunk = _vertex_rows(lines, 3) if section == 0 else _polygon_rows(lines)
                if chunk is None:
                    return None
                (vertices if section == 0 else triangles).append(chunk)
    except OverflowError:
        raise _index_overflow(path) from None
    except (OSError, ValueError, IndexError):
        return None
    return _mesh_of(path, vertices, triangles, base=0)


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_PLY_FORMATS = {b"binary_little_endian": "<", b"binary_big_endian": ">", b"ascii": ""}
# (name, numpy type, list item type or None for a scalar)
_PlyProperty = tuple[str, str, "str | None"]


def _read_ply(path: Path) -> MeshData | None:
    """A PLY file whose elements are 'vertex' (scalar properties with x, y, z) then, optionally, 'face' (one list
    property), ASCII or binary; a binary file's polygons all of one size. Later elements are not read."""
    try:
        with open(path, "rb") as handle:
            if handle.readline().strip() != b"ply":
                return None
            order: str | None = None
            elements: list[tuple[str, int, list[_PlyProperty]]] = []
            while True:
                words = handle.readline().split()
                if not words or words[0] in (b"comment", b"obj_info"):
                    continue
                if words[0] == b"end_header":
                    break
                if words[0] == b"format":
                    order = _PLY_FORMATS[words[1]]
                elif words[0] == b"element":
                    elements.append((words[1].decode(), int(words[2]), []))
                elif words[0] == b"property" and elements and words[1] == b"list":
                    elements[-1][2].append((words[4].decode(), _PLY_TYPES[words[2].decode()],
                                            _PLY_TYPES[words[3].decode()]))
                elif words[0] == b"property" and elements:
                    elements[-1][2].append((words[2].decode(), _PLY_TYPES[words[1].decode()], None))
                else:
                    return None
            names = [element[0] for element in elements]
            if order is None or names[:1] != ["vertex"] or names[1:2] not in ([], ["face"]):
                return None
            vertex, face = elements[0][1:], elements[1][1:] if len(elements) > 1 else (0, [])
            if any(item is not None for _, _, item in vertex[1]) or not {"x", "y", "z"} <= {n for n, _, _ in vertex[1]}:
                return None
            if face[0] and (len(face[1]) != 1 or face[1][0][2] is None):
                return None
            read = _ply_binary if order else _ply_ascii
            parts = read(handle, order, vertex, face)
    except OverflowError:
        raise _index_overflow(path) from None
    except (OSError, ValueError, KeyError, IndexError, UnicodeDecodeError):
        return None
    if parts is None:
        return None
    mesh = _mesh_of(path, parts[0], parts[1], base=0)
    if mesh is not None and parts[2]:
        mesh.colours = np.concatenate(parts[2])
    if mesh is not None and parts[3]:
        mesh.normals = np.concatenate(parts[3])
    return mesh


_PlyElement = tuple[int, list[_PlyProperty]]
_Parts = tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]  # vertices, triangles,
# colours, normals
_PLY_COLOURS = ("red", "green", "blue", "alpha")
_PLY_NORMALS = ("nx", "ny", "nz")


def _ply_normal_names(vertex: _PlyElement) -> list[str]:
    """nx, ny, nz when the vertex has all three, else none."""
    return list(_PLY_NORMALS) if set(_PLY_NORMALS) <= {name for name, _, _ in vertex[1]} else []


def _ply_colour_names(vertex: _PlyElement) -> list[str]:
    """The vertex's colour properties (red, green, blue and any alpha), or none unless all three are there."""
    names = [name for name, _, _ in vertex[1]]
    return [name for name in _PLY_COLOURS if name in names] if {"red", "green", "blue"} <= set(names) else []


def _ply_ascii(handle: Any, order: str, vertex: _PlyElement, face: _PlyElement) -> _Parts | None:
    names = [name for name, _, _ in vertex[1]]
    kinds = {name: kind for name, kind, _ in vertex[1]}
    colour_names, normal_names = _ply_colour_names(vertex), _ply_normal_names(vertex)
    columns = tuple(names.index(name) for name in ("x", "y", "z", *colour_names, *normal_names))
    parts: _Parts = ([], [], [], [])
    for section, lines in _sections(handle, [vertex[0], face[0]]):
        chunk = _vertex_rows(lines, len(names), columns) if section == 0 else _polygon_rows(lines)
        if chunk is None:
            return None
        if section == 0:
            parts[0].append(chunk[:, :3])
            if colour_names:  # as the file holds them: bytes stay bytes (colours.unit_colours reads either)
                parts[2].append(chunk[:, 3:3 + len(colour_names)].astype(np.dtype(kinds[colour_names[0]])))
            if normal_names:
                parts[3].append(chunk[:, 3 + len(colour_names):].astype(np.float32))
        else:
            parts[1].append(chunk)
    return parts


def _ply_binary(handle: Any, order: str, vertex: _PlyElement, face: _PlyElement) -> _Parts | None:
    row = np.dtype([(name, order + kind) for name, kind, _ in vertex[1]])
    colour_names, normal_names = _ply_colour_names(vertex), _ply_normal_names(vertex)
    parts: _Parts = ([], [], [], [])
    for start in range(0, vertex[0], geometry.CHUNK_ROWS):
        rows = np.frombuffer(_read_bytes(handle, min(geometry.CHUNK_ROWS, vertex[0] - start) * row.itemsize), row)
        parts[0].append(np.stack([rows["x"], rows["y"], rows["z"]], axis=1).astype(np.float64))
        if colour_names:
            parts[2].append(np.stack([rows[name] for name in colour_names], axis=1).astype(
                rows.dtype[colour_names[0]].newbyteorder("=")))
        if normal_names:
            parts[3].append(np.stack([rows[name] for name in normal_names], axis=1).astype(np.float32))
    if not face[0]:
        return parts
    _, count_type, item_type = face[1][0]
    # The first polygon's size is every polygon's (checked): rows of one length, read CHUNK_ROWS at a time.
    size_bytes = np.dtype(count_type).itemsize
    sides = int(np.frombuffer(_read_bytes(handle, size_bytes), order + str(count_type))[0])
    polygon = np.dtype([("n", order + str(count_type)), ("v", order + str(item_type), (sides,))])
    pending = np.frombuffer(_read_bytes(handle, polygon.itemsize - size_bytes), order + str(item_type))
    if sides < 3:
        return None
    parts[1].append(_fan(np.array([sides]), pending.astype(np.int64)))
    for start in range(1, face[0], geometry.CHUNK_ROWS):
        rows = np.frombuffer(_read_bytes(handle, min(geometry.CHUNK_ROWS, face[0] - start) * polygon.itemsize),
                             polygon)
        if (rows["n"] != sides).any():
            return None  # polygons of mixed sizes: trimesh reads those
        index = rows["v"].astype(np.int64)
        parts[1].append(index if sides == 3 else _fan(np.full(len(rows), sides), index.reshape(-1)))
    return parts


_STL_ROW = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attr", "<u2")])


def _read_stl(path: Path) -> MeshData | None:
    """A binary STL (told by its size: 84 bytes and 50 a triangle), or an ASCII one's 'vertex x y z' lines. Every
    triangle has its own three vertices, as trimesh reads them unprocessed."""
    corners: list[np.ndarray] = []
    try:
        with open(path, "rb") as handle:
            head = handle.read(84)
            count = int.from_bytes(head[80:84], "little") if len(head) == 84 else -1
            if 84 + _STL_ROW.itemsize * count == path.stat().st_size:
                corners.append(np.empty((3 * count, 3), np.float32))  # filled in place, as the file holds them
                for start in range(0, count, geometry.CHUNK_ROWS):
                    size = min(geometry.CHUNK_ROWS, count - start) * _STL_ROW.itemsize
                    rows = np.frombuffer(_read_bytes(handle, size), _STL_ROW)
                    corners[0][3 * start:3 * (start + len(rows))] = rows["corners"].reshape(-1, 3)
            elif head.lstrip().startswith(b"solid"):
                handle.seek(0)
                while lines := handle.readlines(geometry.CHUNK_BYTES):
                    found = [line.split(None, 1)[1] for line in lines if line.lstrip().startswith(b"vertex ")]
                    chunk = _vertex_rows(found, 3) if found else np.zeros((0, 3))
                    if chunk is None:
                        return None
                    corners.append(chunk)
            else:
                return None
    except (OSError, ValueError, IndexError):
        return None
    total = sum(len(chunk) for chunk in corners)
    if not total or total % 3:
        return None
    return _mesh_of(path, corners, [np.arange(total, dtype=np.int64).reshape(-1, 3)], base=0)


def _read_bytes(handle: Any, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise ValueError("the file ends early")
    return bytes(data)


def _mesh_of(path: Path, vertices: list[np.ndarray], triangles: list[np.ndarray], base: int) -> MeshData | None:
    """The chunks read as one mesh, its face indices checked against its vertices; `base`: the file's first index."""
    if not vertices:
        return None
    points = vertices[0] if len(vertices) == 1 else np.concatenate(vertices)
    vertices.clear()
    faces = (triangles[0] if len(triangles) == 1 else np.concatenate(triangles)) if triangles else \
        np.zeros((0, 3), np.int64)
    triangles.clear()
    faces -= base
    if len(faces) and (faces.min() < 0 or faces.max() >= len(points)):
        named = int(faces.max()) + base if faces.max() >= len(points) else int(faces.min()) + base
        raise InputError(f"{path}: a face refers to vertex {named}, but the file has {len(points):,} vertices")
    return MeshData(points, faces)


def _index_overflow(path: Path) -> InputError:
    return InputError(f"{path}: a face refers to a vertex index beyond any file's (over 19 digits); the file is "
                      "broken: export it again")


_PLAIN_READERS = {".obj": _read_plain_obj, ".off": _read_off, ".ply": _read_ply, ".stl": _read_stl}


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
    loc, scale = geometry.unit_cube_frame(mesh.vertices.min(axis=0), mesh.vertices.max(axis=0), name)
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
    """read_points' points, and the colours the file gives them when it has any (read_point_file)."""
    read = read_point_file(path, n_surface_samples, seed)
    return read.points, read.colours


def read_point_file(path: str | os.PathLike[str], n_surface_samples: int = 100_000, seed: int = 0) -> PointFile:
    """read_points' points, the colours the file gives them when it has any (a PLY's red/green/blue, an OBJ's
    `v x y z r g b`, a glTF's COLOR_0, a text file's colour columns, an .npz's 'colors' array) and their normals
    when it has those (a PLY's nx ny nz, an .npz's 'normals'). A mesh's colours stay on its vertices (the colour
    source), its points are samples of its faces (and its vertex normals are not theirs: left aside)."""
    path = _existing(path)
    suffix = path.suffix.lower()
    colours: ColourSource | None = None
    normals: np.ndarray | None = None
    if suffix == ".npy":
        points = _load_npy(path)
    elif suffix == ".npz":
        points, rgb, normals = _load_npz_points(path)
        colours = None if rgb is None else _colour_source(path, points, rgb)
    elif suffix in TEXT_SUFFIXES:
        points, rgb = _load_text_points(path)
        colours = None if rgb is None else _colour_source(path, points, rgb)
    elif suffix in MESH_SUFFIXES:
        mesh = read_mesh(path)
        if mesh.colours is not None:
            colours = _colour_source(path, mesh.vertices, mesh.colours)
        if len(mesh.faces) == 0:
            points, normals = mesh.vertices, mesh.normals  # a PLY/OBJ point cloud without faces
        else:
            points, _ = geometry.sample_surface(mesh.vertices, mesh.faces, n_surface_samples, seed)
    else:
        raise InputError(f"{path}: unknown point cloud format {suffix!r}; use one of {', '.join(POINT_SUFFIXES)}")
    if not isinstance(points, np.ndarray):
        points = np.asarray(points)
    check_point_rows(points, str(path))
    if normals is not None and np.shape(normals) != (len(points), 3):
        raise InputError(f"{path}: {np.shape(normals)} normals for {len(points):,} points; give one (nx, ny, nz) "
                         "per point or none")
    return PointFile(points[:, :3].astype(np.float64) if points.dtype.kind != "f" else points[:, :3], colours,
                     normals)


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


def check_point_rows(points: np.ndarray, name: str) -> None:
    """Points are the rows of an N x 3 array (further columns, such as normals or colours, are left aside)."""
    if points.ndim != 2 or points.shape[1] < 3:
        raise InputError(f"{name}: expected an N x 3 array of points, got shape {points.shape}")
    if len(points) == 3 and points.shape[1] > 3:  # read as 3 points, it had been told "3 usable point(s)"
        raise InputError(f"{name}: a 3 x {points.shape[1]:,} array: points must be its rows (N x 3); transpose it")


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


def _load_npz_points(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The points (under 'points', or the only array), their colours (under 'colors', 'colours' or 'rgb') and
    normals (under 'normals')."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.keys())
            # The original layout's pointcloud.npz keeps them under 'points'.
            key = "points" if "points" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise InputError(f"{path}: holds arrays {names}; put the points under 'points'")
            colour_key = next((name for name in NPZ_COLOUR_KEYS if name in names), None)
            return (archive[key], None if colour_key is None else archive[colour_key],
                    archive[NPZ_NORMAL_KEY] if NPZ_NORMAL_KEY in names and key != NPZ_NORMAL_KEY else None)
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
    from ..common.files import atomic_output

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
