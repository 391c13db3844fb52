"""Renders of dataset models in the original img_choy2016 layout, made by Blender in a child process.

Each model folder holding `mesh.obj` (normalised to the unit cube, y up) gets `img_choy2016/000.jpg` ...
(white background, grey object) and `cameras.npz` with, per view i:

    camera_mat_i  (3, 3)  intrinsics in pixels, OpenCV style: pixel (u, v) = column u, row v counted from
                          the top-left pixel, whose centre is (0, 0); principal point at the image centre
    world_mat_i   (3, 4)  [R | t] from the dataset's frame (the frame of mesh.obj and points.npz) to the
                          camera's: x right, y down, z forward (depth)

so `camera_mat_i @ world_mat_i @ [p, 1]` is (u, v, 1) times the depth of point p. A model's folder
appears whole (renders are written into a sibling temporary folder, then renamed), so an interrupted run
resumes by rendering the models without a complete folder.

bpy is imported only in the child (`python -m training.render --worker`, fed folder names on stdin), so
the builders never load Blender, a crash in Blender (Workbench aborts when EGL is missing) costs one
model rather than the run, and a Python without the bpy module just skips the renders.

Workbench (default) is about 2.5x faster than Cycles at 8 samples and noise-free, but needs EGL; where it
cannot start, the run goes on with Cycles.

    python -m training.render DATASET_OR_MODEL_FOLDER... [--views 24] [--engine CYCLES] [--overwrite]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The camera: defined where the image colouring finds it again (a view of a reconstruction from one image).
from blender_occnet.occnet.image_colours import ELEVATION_DEGREES, FOV_DEGREES, FRAME_MARGIN

ENGINES = ("CYCLES", "BLENDER_WORKBENCH")
IMAGE_FOLDER = "img_choy2016"
GREY = 0.6  # linear albedo of the object in Cycles
WORKBENCH_GREY = 0.8  # Workbench's studio light is dimmer
JPEG_QUALITY = 92
NO_BPY_EXIT = 3
MAX_CRASHES = 3  # consecutive Blender crashes without a finished model before giving up
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ cameras (no bpy)


def view_rng(folder: Path, seed: int) -> np.random.Generator:
    """Viewpoints depend on the seed and the model's 'category/id' only, not on where the dataset lies."""
    return np.random.default_rng([seed, zlib.crc32(f"{folder.parent.name}/{folder.name}".encode())])


def intrinsics(size: int, fov_degrees: float = FOV_DEGREES) -> np.ndarray:
    focal = size / 2 / math.tan(math.radians(fov_degrees) / 2)
    centre = (size - 1) / 2
    return np.array([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]])


def viewpoints(n: int, radius: float, rng: np.random.Generator,
               fov_degrees: float = FOV_DEGREES) -> list[np.ndarray]:
    """`n` world-to-camera [R | t] (3, 4) looking at the origin from random azimuths and elevations (y up),
    at the distance where a sphere of `radius` about the origin fills the frame (less the margin)."""
    distance = radius * FRAME_MARGIN / math.sin(math.radians(fov_degrees) / 2)
    azimuth = rng.uniform(0.0, 2 * math.pi, n)
    elevation = np.radians(rng.uniform(*ELEVATION_DEGREES, n))
    mats = []
    for az, el in zip(azimuth, elevation):
        # Azimuth 0 looks at the front (the shapes face -z), elevation > 0 looks down on the object.
        eye = distance * np.array([math.cos(el) * math.sin(az), math.sin(el), -math.cos(el) * math.cos(az)])
        forward = -eye / np.linalg.norm(eye)
        right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        rotation = np.stack([right, down, forward])
        mats.append(np.hstack([rotation, (-rotation @ eye)[:, None]]))
    return mats


def project(points: np.ndarray, camera_mat: np.ndarray, world_mat: np.ndarray) -> np.ndarray:
    """(N, 3) points of the dataset frame -> (N, 2) pixel coordinates (u = column, v = row)."""
    camera = points @ world_mat[:, :3].T + world_mat[:, 3]
    pixels = camera @ camera_mat.T
    return pixels[:, :2] / pixels[:, 2:3]


def has_renders(folder: Path, views: int = 24) -> bool:
    images = folder / IMAGE_FOLDER
    return (images / "cameras.npz").is_file() and all((images / f"{i:03d}.jpg").is_file() for i in range(views))


# ------------------------------------------------------------------------------------------ Blender side (child)


class _Renderer:
    """One Blender scene reused for every model: a camera with a light on it, a grey material, a white world."""

    def __init__(self, engine: str, size: int, samples: int):
        import bpy

        self.bpy = bpy
        bpy.ops.wm.read_factory_settings(use_empty=True)
        # Any: the stubs make every datablock Optional; these exist once the factory scene is loaded.
        scene: Any = bpy.context.scene
        self.scene, self.size = scene, size
        scene.render.engine = engine
        scene.render.resolution_x = scene.render.resolution_y = size
        scene.render.resolution_percentage = 100
        scene.render.film_transparent = False
        scene.render.image_settings.file_format = "JPEG"
        scene.render.image_settings.color_mode = "RGB"
        scene.render.image_settings.quality = JPEG_QUALITY
        scene.render.use_file_extension = False
        scene.view_settings.view_transform = "Standard"  # the default (AgX) turns white into grey
        scene.view_settings.look = "None"
        scene.view_settings.exposure, scene.view_settings.gamma = 0.0, 1.0

        world: Any = bpy.data.worlds.new("White")
        world.color = (1.0, 1.0, 1.0)  # Workbench's background; it ignores world nodes
        scene.world = world
        camera: Any = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
        camera.data.sensor_fit = "AUTO"  # square frames: the angle holds for both axes
        camera.data.angle = math.radians(FOV_DEGREES)
        camera.data.clip_start, camera.data.clip_end = 0.01, 100.0
        scene.collection.objects.link(camera)
        scene.camera = self.camera = camera

        material: Any = bpy.data.materials.new("Grey")
        material.diffuse_color = (GREY, GREY, GREY, 1.0)
        self.material = material
        if engine == "CYCLES":
            self._cycles(samples)
        else:
            shading = scene.display.shading
            shading.light, shading.color_type = "STUDIO", "SINGLE"
            shading.single_color = (WORKBENCH_GREY,) * 3
            scene.display.render_aa = "8"
        self.mesh: Any = None
        self.obj: Any = None

    def _cycles(self, samples: int) -> None:
        bpy, scene = self.bpy, self.scene
        scene.cycles.device = "CPU"
        scene.cycles.samples = samples
        scene.cycles.use_adaptive_sampling = False
        scene.cycles.use_denoising = False
        scene.cycles.max_bounces = scene.cycles.diffuse_bounces = 1
        scene.cycles.glossy_bounces = scene.cycles.transmission_bounces = scene.cycles.volume_bounces = 0
        scene.cycles.transparent_max_bounces = 0
        scene.cycles.caustics_reflective = scene.cycles.caustics_refractive = False
        scene.render.use_persistent_data = True  # keep the scene (BVH) between views: only the camera moves

        # The background is pure white to the camera and a dim grey sky to the object (ambient light).
        world: Any = scene.world
        if not world.use_nodes:
            world.use_nodes = True
        nodes, links = world.node_tree.nodes, world.node_tree.links
        nodes.clear()
        seen = nodes.new("ShaderNodeBackground")
        seen.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
        sky = nodes.new("ShaderNodeBackground")
        sky.inputs["Color"].default_value = (0.35, 0.35, 0.35, 1.0)
        path = nodes.new("ShaderNodeLightPath")
        mix = nodes.new("ShaderNodeMixShader")
        out = nodes.new("ShaderNodeOutputWorld")
        links.new(path.outputs["Is Camera Ray"], mix.inputs["Fac"])
        links.new(sky.outputs["Background"], mix.inputs[1])
        links.new(seen.outputs["Background"], mix.inputs[2])
        links.new(mix.outputs["Shader"], out.inputs["Surface"])

        # A key light from above left of the camera, so every view shows the shape's relief.
        light: Any = bpy.data.objects.new("Key", bpy.data.lights.new("Key", "SUN"))
        light.data.energy = 2.2
        light.data.angle = math.radians(5.0)
        light.parent = self.camera
        from mathutils import Vector

        light.rotation_mode = "QUATERNION"
        light.rotation_quaternion = Vector((0.45, -0.6, -1.0)).normalized().to_track_quat("-Z", "Y")
        self.scene.collection.objects.link(light)

        material: Any = self.material
        if not material.use_nodes:
            material.use_nodes = True
        bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        bsdf.inputs["Base Color"].default_value = (GREY, GREY, GREY, 1.0)
        bsdf.inputs["Roughness"].default_value = 0.8
        bsdf.inputs["Specular IOR Level"].default_value = 0.2

    def _load(self, path: Path) -> float:
        """Replace the previous model by the mesh at `path`; returns its bounding radius about the origin."""
        from blender_occnet.occnet.meshio import read_mesh

        bpy = self.bpy
        if self.obj is not None:
            bpy.data.objects.remove(self.obj)
            bpy.data.meshes.remove(self.mesh)
            self.obj = self.mesh = None
        data = read_mesh(path)
        if len(data.faces) == 0:
            raise ValueError(f"{path}: the mesh has no faces")
        vertices = data.vertices.astype(np.float32)
        faces = data.faces.astype(np.int32)
        # The mesh stays in the dataset's frame (y up): the camera is placed in that frame, and rendering
        # has no notion of up, so no axis conversion is needed and world_mat needs no Blender matrix.
        mesh: Any = bpy.data.meshes.new(path.parent.name)
        mesh.vertices.add(len(vertices))
        mesh.vertices.foreach_set("co", vertices.ravel())
        mesh.loops.add(faces.size)
        mesh.loops.foreach_set("vertex_index", faces.ravel())
        mesh.polygons.add(len(faces))
        mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
        mesh.update(calc_edges=True)
        mesh.validate(verbose=False)
        mesh.materials.append(self.material)
        obj = bpy.data.objects.new(mesh.name, mesh)
        self.scene.collection.objects.link(obj)
        self.mesh, self.obj = mesh, obj
        return float(np.linalg.norm(data.vertices, axis=1).max())

    def render_model(self, folder: Path, views: int, seed: int) -> None:
        from mathutils import Matrix

        radius = self._load(folder / "mesh.obj")
        if not radius > 0:
            raise ValueError(f"{folder / 'mesh.obj'}: the mesh has no extent")
        camera_mat = intrinsics(self.size)
        world_mats = viewpoints(views, radius, view_rng(folder, seed))
        for leftover in folder.glob(f".{IMAGE_FOLDER}.*.part"):  # from a run that crashed on this model
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{IMAGE_FOLDER}.", suffix=".part", dir=folder))
        try:
            cameras: dict[str, np.ndarray] = {}
            for i, world_mat in enumerate(world_mats):
                # Blender's camera looks down its -z with y up: flip OpenCV's y and z, then invert.
                to_camera = np.vstack([world_mat, [0.0, 0.0, 0.0, 1.0]])
                to_camera[1:3] *= -1
                self.camera.matrix_world = Matrix(np.linalg.inv(to_camera).tolist())
                self.scene.render.filepath = str(tmp / f"{i:03d}.jpg")
                self.bpy.ops.render.render(write_still=True)
                cameras[f"camera_mat_{i}"] = camera_mat
                cameras[f"world_mat_{i}"] = world_mat
            np.savez(tmp / "cameras.npz", **cameras)
            missing = [i for i in range(views) if not (tmp / f"{i:03d}.jpg").is_file()]
            if missing:
                raise OSError(f"Blender wrote no image for view(s) {missing}")
            os.chmod(tmp, 0o755)  # mkdtemp makes it private
            _swap_in(tmp, folder / IMAGE_FOLDER)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _swap_in(new: Path, target: Path) -> None:
    """Rename `new` onto `target`; an older (incomplete) folder there is moved aside first, then removed."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _worker(engine: str, views: int, size: int, seed: int, samples: int) -> int:
    """Child: folder names on stdin; protocol lines on the original stdout; Blender's chatter silenced."""
    folders = [line for line in sys.stdin.read().split("\n") if line]  # read all now: the parent cannot block
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # render progress lines and "Saved: ..." go to fd 1
    try:
        import bpy  # noqa: F401
    except ImportError as exc:
        print(f"No module named 'bpy' ({exc})", file=sys.stderr)
        return NO_BPY_EXIT
    renderer = _Renderer(engine, size, samples)
    proto.write("ready\n")
    for folder in folders:
        proto.write(f"start\t{folder}\n")
        try:
            renderer.render_model(Path(folder), views, seed)
        except Exception as exc:  # a bad model is reported, the others go on
            message = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            proto.write(f"fail\t{folder}\t{message}\n")
        else:
            proto.write(f"ok\t{folder}\n")
    return 0


# ------------------------------------------------------------------------------------------ parent side


def render_models(folders: Iterable[str | os.PathLike[str]], views: int = 24, size: int = 137, seed: int = 0,
                  engine: str = "BLENDER_WORKBENCH", progress: bool = True, samples: int = 8,
                  overwrite: bool = False) -> dict[str, Any]:
    """Render every model folder (holding mesh.obj) that has no complete img_choy2016 yet, in one Blender
    child process (another one after a crash). Workbench falls back to Cycles (`samples` per pixel) when
    it cannot start; without Blender's Python module this says so and renders nothing. Returns
    {'rendered', 'already', 'failed': [(folder, reason)], 'engine', 'available', 'seconds'}."""
    from tqdm import tqdm

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    result: dict[str, Any] = {"rendered": 0, "already": 0, "failed": [], "engine": engine, "available": True,
                              "seconds": 0.0}
    todo: dict[str, None] = {}  # ordered set of absolute folder names
    for folder in map(Path, folders):
        if not (folder / "mesh.obj").is_file():
            result["failed"].append((str(folder), "no mesh.obj"))
        elif not overwrite and has_renders(folder, views):
            result["already"] += 1
        else:
            todo[str(folder.resolve())] = None
    if not todo:
        return result
    start = time.perf_counter()
    crashes = 0
    with tqdm(total=len(todo), desc=f"renders ({engine.lower()})", unit="model", disable=not progress) as bar:
        while todo:
            finished = 0
            current: str | None = None

            def on_line(kind: str, folder: str, message: str) -> None:
                nonlocal finished, current
                if kind == "start":
                    current = folder
                    return
                todo.pop(folder, None)
                finished, current = finished + 1, None
                if kind == "ok":
                    result["rendered"] += 1
                else:
                    result["failed"].append((folder, message))
                    bar.write(f"render failed: {folder}: {message}", file=sys.stderr)
                bar.update()

            rc, errors = _run_child(list(todo), engine, views, size, seed, samples, on_line)
            if rc == 0:
                break
            if rc == NO_BPY_EXIT and "No module named 'bpy'" in errors:
                bar.write(f"Blender's Python module (bpy) is not available to {sys.executable}: "
                          f"{len(todo)} model(s) left without renders", file=sys.stderr)
                result["available"] = False
                break
            # Blender died: fall back from Workbench (it aborts without EGL), else drop the model it was on.
            tail = " | ".join(errors.strip().splitlines()[-5:]) or "no message"
            bar.write(f"Blender exited with code {rc} ({tail})", file=sys.stderr)
            if engine == "BLENDER_WORKBENCH" and result["rendered"] == 0:
                bar.write("Workbench cannot render here (no EGL?): using Cycles", file=sys.stderr)
                engine = result["engine"] = "CYCLES"
                bar.set_description("renders (cycles)")
                continue
            if current is not None:
                todo.pop(current)
                result["failed"].append((current, f"Blender crashed (exit code {rc})"))
                bar.update()
            crashes = 0 if finished else crashes + 1
            if crashes >= MAX_CRASHES:
                bar.write(f"Blender keeps crashing: {len(todo)} model(s) left without renders", file=sys.stderr)
                result["failed"] += [(folder, f"not rendered: Blender kept crashing ({tail})") for folder in todo]
                break
    result["seconds"] = time.perf_counter() - start
    if result["rendered"] and progress:
        rate = result["rendered"] * views / max(result["seconds"], 1e-9)
        print(f"rendered {result['rendered']} models x {views} views in {result['seconds']:.1f} s "
              f"({rate:.1f} images/s, {result['engine'].lower()})", file=sys.stderr)
    return result


def _run_child(folders: list[str], engine: str, views: int, size: int, seed: int, samples: int,
               on_line: Callable[[str, str, str], None]) -> tuple[int, str]:
    """Run one worker, passing each protocol line (kind, folder, message) on as it comes; returns the exit
    code and the worker's stderr (Blender's messages)."""
    command = [sys.executable, "-m", "training.render", "--worker", "--engine", engine, "--views", str(views),
               "--size", str(size), "--seed", str(seed), "--samples", str(samples)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: Blender's chatter cannot fill it
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                   text=True, env=env, cwd=REPO)
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write("".join(f"{folder}\n" for folder in folders))
            process.stdin.close()
        except BrokenPipeError:  # died at once; the exit code tells why
            pass
        try:
            for line in process.stdout:
                kind, _, rest = line.rstrip("\n").partition("\t")
                folder, _, message = rest.partition("\t")
                if kind in ("start", "ok", "fail"):
                    on_line(kind, folder, message)
            rc = process.wait()
        finally:
            if process.poll() is None:  # interrupted (Ctrl-C): do not leave Blender running
                process.kill()
                process.wait()
        stderr.seek(0)
        return rc, stderr.read()


def report(result: dict[str, Any]) -> str:
    """One line on a render_models result."""
    if not result["available"]:
        return f"renders skipped: no Blender Python module (bpy); {result['already']} models had renders"
    return (f"renders: {result['rendered']} models rendered ({result['engine'].lower()}), {result['already']} "
            f"had them, {len(result['failed'])} failed")


def model_folders(paths: Sequence[Path]) -> list[Path]:
    """Model folders (holding mesh.obj) given directly or found anywhere below the given folders."""
    found: list[Path] = []
    for path in paths:
        if (path / "mesh.obj").is_file():
            found.append(path)
        else:
            found += sorted(p.parent for p in path.rglob("mesh.obj"))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.render", description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="*", help="model folders, or folders to search for mesh.obj")
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--size", type=int, default=137)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", choices=ENGINES, default="BLENDER_WORKBENCH",
                        help="Workbench falls back to Cycles where it cannot start")
    parser.add_argument("--samples", type=int, default=8, help="Cycles samples per pixel")
    parser.add_argument("--overwrite", action="store_true", help="render models that have renders already")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.engine, args.views, args.size, args.seed, args.samples)
    folders = model_folders(args.folders)
    if not folders:
        print("error: no model folders with a mesh.obj", file=sys.stderr)
        return 1
    result = render_models(folders, args.views, args.size, args.seed, args.engine, samples=args.samples,
                           overwrite=args.overwrite)
    print(report(result))
    return 0 if result["available"] and not result["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
