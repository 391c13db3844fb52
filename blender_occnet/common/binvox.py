"""Read and write `.binvox` voxel files, with the axis fix the original project applies.

A binvox file stores its run-length-encoded voxels in x, z, y order (y fastest); like the reference
we return grids indexed [x, y, z]. Voxel (i, j, k) covers the box
translate + scale * ([i, i+1] x [j, j+1] x [k, k+1]) / dim in the model's frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import atomic_output

MAX_DIM = 1024  # refuse absurd headers before allocating


@dataclass
class VoxelFile:
    data: np.ndarray  # bool (D, D, D), indexed [x, y, z]
    translate: np.ndarray  # (3,) float64
    scale: float


def read_binvox(path: str | os.PathLike[str]) -> VoxelFile:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if not raw.startswith(b"#binvox"):
        raise InputError(f"{path}: not a binvox file (it does not start with '#binvox')")
    dims: list[int] | None = None
    translate, scale = np.zeros(3), 1.0
    pos = 0
    try:
        for _ in range(16):  # the header is a handful of lines ending with "data"
            end = raw.index(b"\n", pos)
            words = raw[pos:end].split()
            pos = end + 1
            if not words or words[0].startswith(b"#"):
                continue
            if words[0] == b"dim":
                dims = [int(w) for w in words[1:4]]
            elif words[0] == b"translate":
                translate = np.array([float(w) for w in words[1:4]], dtype=np.float64)
            elif words[0] == b"scale":
                scale = float(words[1])
            elif words[0] == b"data":
                break
        else:
            raise ValueError("no 'data' line")
    except (ValueError, IndexError) as exc:
        raise InputError(f"{path}: damaged binvox header ({exc})") from None
    if dims is None or len(dims) != 3 or not all(0 < d <= MAX_DIM for d in dims):
        raise InputError(f"{path}: binvox header has no valid 'dim' line (got {dims})")
    if translate.shape != (3,) or not np.isfinite(translate).all() or not np.isfinite(scale) or scale <= 0:
        raise InputError(f"{path}: binvox header has an invalid translate/scale")
    body = np.frombuffer(raw, dtype=np.uint8, offset=pos)
    if body.size % 2:
        raise InputError(f"{path}: truncated binvox data (odd number of run-length bytes)")
    values, counts = body[0::2], body[1::2]
    total = int(counts.sum(dtype=np.int64))
    expected = dims[0] * dims[1] * dims[2]
    if total != expected:
        raise InputError(f"{path}: binvox data holds {total} voxels, the header says {dims} = {expected}")
    flat = np.repeat(values.astype(bool), counts)
    # Stored order is x, z, y (y fastest): reshape as stored, then swap to [x, y, z] as the reference.
    data = flat.reshape(dims).transpose(0, 2, 1)
    return VoxelFile(np.ascontiguousarray(data), translate, scale)


def write_binvox(path: str | os.PathLike[str], data: np.ndarray,
                 translate: np.ndarray | tuple[float, float, float] = (-0.5, -0.5, -0.5),
                 scale: float = 1.0) -> None:
    """Write a [x, y, z] boolean grid; the default frame is the unit cube [-0.5, 0.5]^3."""
    data = np.asarray(data)
    if data.ndim != 3:
        raise InputError(f"{path}: a voxel grid must be 3-dimensional, got shape {data.shape}")
    flat = np.ascontiguousarray(data.astype(bool).transpose(0, 2, 1)).ravel()
    # Run-length encode: runs of equal values, each at most 255 long.
    change = np.flatnonzero(np.diff(flat.view(np.uint8))) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [flat.size]]))
    run_values = flat[starts]
    repeats = (lengths + 254) // 255
    values = np.repeat(run_values, repeats).astype(np.uint8)
    counts = np.full(values.size, 255, dtype=np.int64)
    last = np.cumsum(repeats) - 1
    counts[last] = lengths - 255 * (repeats - 1)
    body = np.empty(values.size * 2, dtype=np.uint8)
    body[0::2], body[1::2] = values, counts.astype(np.uint8)
    translate = np.asarray(translate, dtype=np.float64)
    d = data.shape[0], data.shape[2], data.shape[1]  # the stored (x, z, y) order
    header = (f"#binvox 1\ndim {d[0]} {d[1]} {d[2]}\n"
              f"translate {translate[0]!r} {translate[1]!r} {translate[2]!r}\nscale {float(scale)!r}\ndata\n")
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(header.encode("ascii"))
            handle.write(body.tobytes())


def pool_grid(grid: np.ndarray, resolution: int, name: str) -> np.ndarray:
    """A cube grid whose side is a multiple of `resolution` -> `resolution`^3, a cell filled when any of its
    fine cells is (what a coarser voxeliser would give); the one rule for every voxel input."""
    if grid.ndim != 3 or len(set(grid.shape)) != 1 or grid.shape[0] % resolution or grid.shape[0] == 0:
        raise InputError(f"{name}: the voxel grid is {'x'.join(map(str, grid.shape))}; the network takes "
                         f"{resolution}x{resolution}x{resolution} (or a cube whose side is a multiple of {resolution}, "
                         "which is pooled): resample it, or voxelise the mesh instead")
    f = grid.shape[0] // resolution
    if f == 1:
        return grid
    filled = grid if grid.dtype == bool else grid >= 0.5
    return filled.reshape(resolution, f, resolution, f, resolution, f).any(axis=(1, 3, 5))
