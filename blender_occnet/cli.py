"""The command line: `python -m blender_occnet {convert,...}`.

Errors this project raises on purpose are printed as one line ("error: ...") with exit status 1; no
partial output file is left behind (writers go through files.atomic_output).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .common.messages import input_warnings
from .common.policy import MODALITIES, RESOLUTIONS
from .common.settings import DECLARED, EXTRACTION, SETTINGS
from .common.torch_env import MAX_THREADS, apply_to_torch, configure_before_torch
from .occnet.config import ARCH_MODALITY


def _cmd_convert(args: argparse.Namespace) -> int:
    from .occnet.checkpoints import convert_checkpoint

    if not str(args.output).endswith(".safetensors"):
        raise UsageError("the output of convert must end in .safetensors")
    weights = convert_checkpoint(args.input, args.output, args.arch)
    print(f"wrote {args.output}: {weights.config.arch} ({weights.modality}), "
          f"{len(weights.state_dict)} tensors, "
          f"{sum(t.numel() for t in weights.state_dict.values()):,} values")
    return 0


class _Networks:
    """The weights and network of each modality, loaded once for every input of a command."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.loaded: dict[str, Any] = {}

    def for_modality(self, modality: str, source: Path) -> Any:
        from .occnet.checkpoints import load_weights
        from .occnet.generation import Reconstructor
        from .occnet.registry import resolve_weights

        if modality not in self.loaded:
            weights = load_weights(resolve_weights(self.args.weights, modality), self.args.arch)
            if weights.modality != modality:
                raise UsageError(f"{source} is a {modality} input but the weights take {weights.modality}; choose "
                                 f"{modality} weights or pass --modality {weights.modality}")
            self.loaded[modality] = Reconstructor(weights, self.args.device, batch_size=self.args.batch_size)
        return self.loaded[modality]

    def for_input(self, reconstructor: Any, prepared: Any) -> Any:
        """`reconstructor`, or where no weights were named and the cloud is dense, the bundled fine weights'
        network (registry.finer_weights)."""
        from .occnet.checkpoints import load_weights
        from .occnet.generation import Reconstructor
        from .occnet.registry import finer_weights

        fine = None if self.args.weights else finer_weights(Path(reconstructor.weights.source), prepared)
        if fine is None:
            return reconstructor
        if str(fine) not in self.loaded:
            self.loaded[str(fine)] = Reconstructor(load_weights(fine), self.args.device,
                                                   batch_size=self.args.batch_size)
        return self.loaded[str(fine)]


def _reconstruct_file(source: Path, output: Path, args: argparse.Namespace, networks: _Networks,
                      progress: Callable[[str, float], None] | None) -> tuple[dict[str, Any], Any]:
    """One input -> one mesh file written (atomically); its statistics and the mesh."""
    import torch

    from .common.errors import GenerationError
    from .occnet.generation import ExtractionSettings
    from .occnet.meshio import write_mesh
    from .occnet.preprocess import guess_modality, prepare_for_network

    started = time.perf_counter()
    modality = args.modality or guess_modality(source)
    reconstructor = networks.for_modality(modality, source)
    prepared = prepare_for_network(reconstructor.weights.config, modality, source, seed=args.seed,
                                   input_points=args.input_points)
    reconstructor = networks.for_input(reconstructor, prepared)  # prepared alike for the fine weights
    weights = reconstructor.weights
    given = {setting.name: getattr(args, setting.name) for setting in EXTRACTION}
    settings = ExtractionSettings(**{**given, "threshold": weights.threshold if args.threshold is None
                                     else args.threshold})  # unset: the weights' own
    seconds_prepare = time.perf_counter() - started
    shape = reconstructor.encode(prepared, fit=args.fit, progress=progress, fit_threshold=settings.threshold,
                                 ensemble=args.ensemble)
    mesh = shape.extract(settings, progress=progress)
    if not len(mesh.faces):
        raise GenerationError(f"no surface at threshold {settings.threshold:g}: the network puts every point "
                              "outside; try a lower --threshold, or check that the input suits the weights")
    t = time.perf_counter()
    write_mesh(output, mesh.vertices, mesh.faces, mesh.normals, mesh.colours)
    stats = {"input": str(source), "output": str(output), "modality": modality,
             "weights": weights.source, "device": str(reconstructor.device), "threads": torch.get_num_threads(),
             "threshold": settings.threshold,
             "resolution": settings.resolution, "seconds_prepare": round(seconds_prepare, 4),
             "colours": mesh.colours is not None, **mesh.stats, "seconds_write": round(time.perf_counter() - t, 4)}
    return stats, mesh


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from .batch import is_many, reconstruct_many
    from .occnet.meshio import COLOUR_OUTPUT_SUFFIXES, MESH_OUTPUT_SUFFIXES

    if is_many(args):
        return reconstruct_many(args)
    source, output = Path(args.input[0]), Path(args.output)
    # Everything that can be checked cheaply is checked before the network runs.
    if not source.exists():
        raise UsageError(f"{source}: no such file")
    if output.suffix.lower() not in MESH_OUTPUT_SUFFIXES:
        raise UsageError(f"{output}: the output must end in one of {', '.join(MESH_OUTPUT_SUFFIXES)} (or give a "
                         "folder, several inputs or a pattern to reconstruct many)")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{output}: folder {folder} does not exist")
    progress = None if args.quiet else _ProgressBar()
    started = time.perf_counter()
    stats, mesh = _reconstruct_file(source, output, args, _Networks(args), progress)
    if progress is not None:
        progress.close()
    if args.json:
        print(json.dumps(stats, indent=2))
    elif not args.quiet:
        given, used = mesh.stats.get("input_points_given", 0), mesh.stats.get("input_points_used", 0)
        dropped = mesh.stats.get("input_points_dropped", 0)
        if dropped:
            print(f"{dropped:,} input point(s) with NaN or infinite coordinates left out")
        if used and used < given:
            print(f"the network was given {used:,} of the {given:,} input points (a random subset; "
                  "--input-points sets how many)")
        if mesh.stats.get("input_points_outliers"):
            print(f"{mesh.stats['input_points_outliers']:,} stray input point(s) far from the rest left out")
        for warning in input_warnings(mesh.stats):
            print(f"warning: {warning}")
        if mesh.colours is not None:
            origin = "the input's"
            if "image_view_azimuth" in mesh.stats:  # image_colours.py: the view its outline matches best
                origin = (f"the image, seen from azimuth {mesh.stats['image_view_azimuth']:.0f}° and elevation "
                          f"{mesh.stats['image_view_elevation']:.0f}° (outline overlap "
                          f"{mesh.stats['image_view_overlap']:.0%}; the side it hides takes the nearest seen colours)")
            print(f"vertex colours from {origin} ({output.suffix} holds them; --no-colours leaves them out)"
                  if output.suffix.lower() in COLOUR_OUTPUT_SUFFIXES else
                  f"the input's colours are not written: {output.suffix} has no vertex colours (use .ply, .obj or "
                  ".glb to keep them)")
        if mesh.stats.get("fit_points"):
            oriented = ", oriented by the file's normals" if mesh.stats.get("winding_given_normals") else ""
            print(f"fitted to {mesh.stats['fit_points']:,} input points in {mesh.stats['seconds_fit']:.1f} s"
                  f"{oriented} (--fit off: the network's prediction as it is)")
        print(f"wrote {output}: {mesh.stats['vertices']:,} vertices, {mesh.stats['faces']:,} faces, "
              f"{mesh.stats['points_evaluated']:,} points evaluated, {time.perf_counter() - started:.1f} s")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .occnet.registry import list_weights, search_dirs

    found = list_weights()
    if args.json:
        print(json.dumps([info.to_dict() for info in found], indent=2))
        return 0
    if not found:
        print(f"no weights found in {', '.join(map(str, search_dirs()))}")
    for info in found:
        if info.error:
            print(f"{info.name:24} {info.error}  ({info.path})")
            continue
        card = info.card
        summary = card.get("summary") or card.get("source") or card.get("data", "")
        print(f"{info.name:24} {info.modality:10} {info.arch:16} threshold {info.threshold:g}  {summary}")
        if card.get("metrics"):
            print(f"{'':24} metrics: " + ", ".join(f"{k} {v}" for k, v in card["metrics"].items()))
        if isinstance(card.get("frame"), dict):
            print(f"{'':24} frame: up {card['frame'].get('up', '?')}, front {card['frame'].get('front', '?')}")
        test = card.get("test_metrics") or {}
        if test:
            shown = ("iou", "chamfer_l1", "normal_consistency", "f_score")
            print(f"{'':24} test split ({test.get('shapes', '?')} shapes): "
                  + ", ".join(f"{k} {test[k]}" for k in shown if k in test))
    return 0


def _cmd_weights_list(args: argparse.Namespace) -> int:
    from .occnet.registry import list_weights, user_weights_dir
    from .occnet.released import catalogue

    have = {info.name for info in list_weights() if info.usable}
    entries = catalogue()
    if args.json:
        print(json.dumps([{**e.to_dict(), "installed": e.name in have} for e in entries], indent=2))
        return 0
    for e in entries:
        state = "installed" if e.name in have else ("available" if e.loadable else "cannot be used yet")
        size = f", {e.values / 1e6:.1f}M values" if e.values else ""
        print(f"{e.name:44} {e.modality or '-':10} {state:18} {e.note}{size}")
    print(f"\n`python -m blender_occnet weights get NAME` downloads one into {user_weights_dir()}; all were "
          "trained on ShapeNet by their authors (MIT licence; see each entry's licence_at in --json)")
    return 0


def _cmd_weights_get(args: argparse.Namespace) -> int:
    from .occnet.released import find, get

    entry = find(args.name)
    last = [-1.0]

    def progress(done: int, total: int) -> None:
        if args.progress_lines:
            print(f"progress {done} {total}", flush=True)
        elif sys.stderr.isatty() and total:
            print(f"\rdownloading {entry.file_name}: {done / total:4.0%} of {total / 1e6:.1f} MB", end="",
                  file=sys.stderr, flush=True)
        elif done - last[0] >= 10e6:
            last[0] = done
            print(f"downloading {entry.file_name}: {done / 1e6:.0f} MB", file=sys.stderr, flush=True)

    path = get(args.name, progress=progress)
    if sys.stderr.isatty() and not args.progress_lines:
        print(file=sys.stderr)
    print(f"wrote {path}: {entry.arch} weights for {entry.modality} input; use them as --weights {entry.name}")
    return 0


SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


def _cmd_demo(args: argparse.Namespace) -> int:
    """Reconstruct every bundled sample with the bundled weights of its modality."""
    from .occnet.preprocess import guess_modality
    from .occnet.registry import list_weights

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    available = {info.modality for info in list_weights() if info.usable}
    samples = sorted(p for p in SAMPLES_DIR.iterdir() if p.is_file())
    written, failed = [], 0
    for sample in samples:
        modality = guess_modality(sample)
        if modality not in available:
            print(f"{sample.name}: no {modality} weights are bundled yet; skipped")
            continue
        target = out / f"{sample.stem}.{args.format}"
        print(f"{sample.name} ({modality}) -> {target}")
        code = main(["reconstruct", str(sample), "-o", str(target), "--resolution", str(args.resolution)]
                    + (["--quiet"] if args.quiet else []))
        if code == 0:
            written.append(target)
        else:
            failed += 1
    if not written:
        raise UsageError("no sample could be reconstructed: no weights are bundled for their modalities")
    print(f"\ndemo meshes in {out.resolve()}:")
    for path in written:
        print(f"  {path.resolve()}")
    return 1 if failed else 0


class _ProgressBar:
    """A one-line progress bar on stderr: the stage and its fraction."""

    def __init__(self) -> None:
        self.stage = ""
        self.tty = sys.stderr.isatty()

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.tty:
            if stage != self.stage:
                print(f"{stage}...", file=sys.stderr, flush=True)
        else:
            filled = int(30 * fraction)
            print(f"\r{stage:<11} [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%}", end="",
                  file=sys.stderr, flush=True)
        self.stage = stage

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


class UsageError(Exception):
    """A combination of arguments argparse cannot check by itself; reported like argparse's own."""


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for each declared setting (common/settings.py), its value in args.<setting name>. The values are
    checked where they are used (ExtractionSettings, the preprocessing, the device), as for every other caller."""
    for setting in DECLARED:
        if setting.kind is bool:
            parser.add_argument(setting.flag, *setting.aliases, dest=setting.name, default=setting.default,
                                action=argparse.BooleanOptionalAction, help=setting.help)
        else:
            parser.add_argument(setting.flag, *setting.aliases, dest=setting.name, type=setting.kind,
                                default=setting.default, metavar=setting.metavar or None, help=setting.help,
                                choices=setting.values if setting.choices and setting.cli_choices else None)


def given_options(args: argparse.Namespace, leave_out: set[str]) -> list[str]:
    """The reconstruct command's options that `args` holds at other values than their defaults (what the person
    gave), as arguments again: what a --jobs worker is given, but the options named (by dest) in `leave_out`."""
    parser = argparse.ArgumentParser()
    given: list[str] = []
    for action in _add_reconstruct(parser.add_subparsers())._actions:
        if not action.option_strings or action.dest in leave_out or action.default == argparse.SUPPRESS:
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            given.append(action.option_strings[0 if value else 1])  # --colours / --no-colours
        elif action.nargs == 0:  # store_true
            given.append(action.option_strings[0])
        else:
            given += [action.option_strings[0], str(value)]
    return given


def _add_reconstruct(sub: Any) -> argparse.ArgumentParser:
    rec = sub.add_parser("reconstruct", help="reconstruct a mesh from an image, point cloud or voxel file",
                         description="Reconstruct a mesh. Inputs: images (.png .jpg), point clouds (.ply .obj "
                                     ".off .stl .xyz .pts .npy .npz; a mesh file gives surface samples), voxels "
                                     "(.binvox, a 32^3 .npy). Outputs: .obj .ply .off .glb .stl.")
    rec.add_argument("input", nargs="+", help="input file; or several, a folder, or a pattern such as 'scans/*.ply' "
                     "to reconstruct many (the network loaded once)")
    rec.add_argument("-o", "--output", required=True, help="mesh file to write (many inputs: the folder for the "
                     "results, named after their inputs)")
    rec.add_argument("--format", default="obj", choices=("obj", "ply", "off", "glb", "stl"),
                     help="many inputs: the results' file format (default obj)")
    rec.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="many inputs: worker processes, each loading the network once (default 1)")
    rec.add_argument("--skip-existing", action="store_true",
                     help="many inputs: leave inputs whose result exists (resume an interrupted run)")
    rec.add_argument("--overwrite", action="store_true", help="many inputs: replace results that exist")
    rec.add_argument("--worker-list", action="store_true", help=argparse.SUPPRESS)  # a --jobs worker's inputs
    rec.add_argument("--modality", choices=MODALITIES, help="input kind (guessed from the file when left out)")
    rec.add_argument("--weights", help="name of installed weights, or a path (.safetensors or original .pt); "
                                       "default: the bundled weights for the input's modality (a dense point cloud's: "
                                       "pointcloud_fine, the 64x64 planes)")
    rec.add_argument("--arch", choices=sorted(ARCH_MODALITY), help="architecture of an original .pt file")
    add_setting_flags(rec)
    rec.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads (default: every core)")
    rec.add_argument("--json", action="store_true", help="print statistics as JSON")
    rec.add_argument("--quiet", action="store_true", help="no progress bar")
    rec.set_defaults(run=_cmd_reconstruct)
    return rec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m blender_occnet",
        description="Occupancy Networks: reconstruct meshes from images, point clouds or voxels.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    convert = sub.add_parser("convert", help="convert an original .pt checkpoint to our .safetensors format",
                             description="Convert an original Occupancy Networks checkpoint (read without "
                                         "running any code it may contain) to a .safetensors weights file "
                                         "that carries its configuration.")
    convert.add_argument("input", help="original checkpoint (.pt)")
    convert.add_argument("output", help="weights file to write (.safetensors)")
    convert.add_argument("--arch", choices=sorted(ARCH_MODALITY),
                         help="architecture (told from the keys when left out)")
    convert.set_defaults(run=_cmd_convert)

    _add_reconstruct(sub)

    demo = sub.add_parser("demo", help="reconstruct the bundled sample inputs with the bundled weights")
    demo.add_argument("--out", default="out/demo", help="folder for the meshes (default out/demo)")
    demo.add_argument("--resolution", type=int, default=SETTINGS["resolution"].default, choices=RESOLUTIONS)
    demo.add_argument("--format", default="obj", choices=("obj", "ply", "off", "glb", "stl"))
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=_cmd_demo)

    models = sub.add_parser("models", help="list available weights with their modality and model card")
    models.add_argument("--json", action="store_true", help="as JSON")
    models.set_defaults(run=_cmd_models)

    weights = sub.add_parser("weights", help="the weights the original authors released: list, or get one")
    weights_sub = weights.add_subparsers(dest="weights_command", required=True)
    listing = weights_sub.add_parser("list", help="every released file, NAME first, and whether it can be used")
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.set_defaults(run=_cmd_weights_list)
    fetch = weights_sub.add_parser("get", help="download, check and convert one into the user weights folder "
                                               "($OCCNET_WEIGHTS_DIR overrides it)")
    fetch.add_argument("name", help="a NAME from `weights list`")
    fetch.add_argument("--progress-lines", action="store_true",
                       help="progress as 'progress DONE TOTAL' lines on stdout (what the add-on reads)")
    fetch.set_defaults(run=_cmd_weights_get)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .common.errors import OccNetError

    parser = build_parser()
    args = parser.parse_args(argv)
    threads = getattr(args, "threads", 0)
    if not 0 <= threads <= MAX_THREADS:
        parser.error(f"--threads must be between 0 (every core) and {MAX_THREADS}, got {threads}")
    configure_before_torch(threads)  # before the command imports torch: short spins hold up under load
    if "torch" in sys.modules:  # called from a process that already has it
        apply_to_torch(threads)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except UsageError as exc:
        parser.error(str(exc))  # exits with status 2
    except OccNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
