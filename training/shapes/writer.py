"""One model's files in the original layout, from any solid that can say what is inside it (write_model)."""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import ArrayLike

from blender_occnet.common.binvox import write_binvox
from blender_occnet.common.files import atomic_output
from blender_occnet.common.policy import BOX_SIZE  # uniform query points fill [-0.55, 0.55]^3, as in the original
from blender_occnet.occnet.meshio import write_mesh

if TYPE_CHECKING:
    from trimesh import Trimesh

MODEL_FILES = ("points.npz", "points_near.npz", "pointcloud.npz", "model.binvox")

Array = np.ndarray


class SolidShape(Protocol):
    """What write_model needs of a shape, in the unit cube's frame: the frame it came from (p_unit = (p - loc) /
    scale), an inside test, surface samples with outward normals, a voxel grid and a triangle mesh."""

    loc: Array
    scale: float

    def contains(self, points: Array) -> Array:
        """A bool per point: inside the solid."""
        ...

    def sample_surface(self, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
        """`n` points uniform over the surface and their outward unit normals."""
        ...

    def voxels(self, resolution: int, rng: np.random.Generator, n_surface: int) -> Array:
        """An [x, y, z] bool grid over [-0.5, 0.5]^3 (`n_surface`: samples that mark the cells crossed)."""
        ...

    def trimesh(self) -> Trimesh:
        """The surface as a triangle mesh."""
        ...


@dataclass
class Settings:
    n_uniform: int = 100_000
    n_near: int | None = None  # None: as many as n_uniform
    n_surface: int = 100_000
    near_sigmas: tuple[float, ...] = (0.01, 0.05)  # equal shares of the near points per sigma
    voxel_resolution: int = 32
    voxel_surface_samples: int = 100_000
    mesh: bool = True


def _save_npz(path: Path, **arrays: ArrayLike) -> None:
    """np.savez_compressed with fixed zip timestamps, so equal arrays give equal bytes; atomic.

    Deflate saves about a quarter here (normals of flat faces compress well); np.load reads it as is.
    """
    with atomic_output(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, buffer.getvalue())


def _labelled(shape: SolidShape, points: Array) -> tuple[Array, Array]:
    """float16 points and the packed occupancy of the stored (rounded) points, so labels stay exact."""
    stored = points.astype(np.float16)
    return stored, np.packbits(shape.contains(stored.astype(np.float64)))


def write_model(shape: SolidShape, folder: str | os.PathLike[str], rng: np.random.Generator,
                settings: Settings | None = None) -> None:
    """points.npz, points_near.npz, pointcloud.npz, model.binvox (and mesh.obj) of one shape in `folder`."""
    st = settings or Settings()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame: dict[str, ArrayLike] = {"loc": shape.loc.astype(np.float64), "scale": np.float64(shape.scale)}

    uniform = rng.uniform(-BOX_SIZE / 2, BOX_SIZE / 2, (st.n_uniform, 3))
    points, occ = _labelled(shape, uniform)
    _save_npz(folder / "points.npz", points=points, occupancies=occ, **frame)

    n_near = st.n_uniform if st.n_near is None else st.n_near
    surface, _ = shape.sample_surface(n_near, rng)
    sigma = np.repeat(np.asarray(st.near_sigmas, dtype=np.float64), -(-n_near // len(st.near_sigmas)))[:n_near]
    near = (surface + rng.normal(size=surface.shape) * sigma[:, None])[rng.permutation(n_near)]
    points, occ = _labelled(shape, near)
    _save_npz(folder / "points_near.npz", points=points, occupancies=occ, **frame)

    surface, normals = shape.sample_surface(st.n_surface, rng)
    _save_npz(folder / "pointcloud.npz", points=surface.astype(np.float16), normals=normals.astype(np.float16),
              **frame)

    grid = shape.voxels(st.voxel_resolution, rng, st.voxel_surface_samples)
    write_binvox(folder / "model.binvox", grid, translate=(-0.5, -0.5, -0.5), scale=1.0)

    if st.mesh:
        mesh = shape.trimesh()
        write_mesh(folder / "mesh.obj", mesh.vertices, mesh.faces)

