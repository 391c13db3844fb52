"""`python -m training.samples`: the sample inputs shipped with the extension (blender_occnet/samples/).

Shapes from the procedural collection drawn with a seed no dataset uses, so none is in a training
split; each sample is placed in an arbitrary frame (not the unit cube), as a user's data would be.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from blender_occnet.common.binvox import write_binvox
from blender_occnet.occnet.meshio import write_mesh

from .shapes import Shape, generate

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "blender_occnet" / "samples"
SAMPLE_SEED = 987_654  # datasets use small seeds; this one is for samples only


def write_samples(out: Path = SAMPLES_DIR) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SAMPLE_SEED)
    written = []

    # A point cloud of a chair: 3000 surface points, 1.8 units tall, standing at x = 2.
    chair = generate("chair", rng)
    points, _ = chair.sample_surface(3000, rng)
    points = points * 1.8 + np.array([2.0, 0.0, 0.9])
    cloud_path = out / "chair_pointcloud.ply"
    write_mesh(cloud_path, points.astype(np.float32), np.zeros((0, 3), np.int32))
    written.append(cloud_path)

    # A 32^3 voxel grid of a car, its binvox box 4 units wide at the origin.
    car = generate("car", rng)
    voxels_path = out / "car_voxels.binvox"
    write_binvox(voxels_path, car.voxels(32, rng), translate=(-2.0, -2.0, -2.0), scale=4.0)
    written.append(voxels_path)

    # An image of a sofa, rendered as the dataset's views are (white background, grey object), 224 px.
    written.append(_render_sample(generate("sofa", rng), out / "sofa_image.png"))
    return written


def _render_sample(shape: Shape, target: Path) -> Path:
    from PIL import Image

    from .render import IMAGE_FOLDER, render_models

    with tempfile.TemporaryDirectory(prefix="occnet-sample-") as tmp:
        folder = Path(tmp) / "samples" / target.stem  # names the view: render.view_rng
        folder.mkdir(parents=True)
        mesh = shape.trimesh()
        write_mesh(folder / "mesh.obj", np.asarray(mesh.vertices), np.asarray(mesh.faces))
        result = render_models([folder], views=24, size=224, seed=SAMPLE_SEED, progress=False)
        if result["rendered"] != 1:
            raise RuntimeError(f"rendering {target.name} failed: {result['failed'] or 'no bpy module'}")
        # Of the 24 random views, the one nearest a three-quarter front view from above, as a photo would be.
        cameras = np.load(folder / IMAGE_FOLDER / "cameras.npz")
        wanted = np.array([0.5, 0.45, -0.75]) / np.linalg.norm([0.5, 0.45, -0.75])
        eyes = []
        for i in range(24):
            world_mat = cameras[f"world_mat_{i}"]
            eye = -world_mat[:, :3].T @ world_mat[:, 3]
            eyes.append(eye / np.linalg.norm(eye))
        best = int(np.argmax(np.array(eyes) @ wanted))
        Image.open(folder / IMAGE_FOLDER / f"{best:03d}.jpg").convert("RGB").save(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.samples", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLES_DIR)
    args = parser.parse_args(argv)
    for path in write_samples(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
