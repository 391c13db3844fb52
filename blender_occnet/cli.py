"""The command line: `python -m blender_occnet {convert,...}`.

Errors this project raises on purpose are printed as one line ("error: ...") with exit status 1; no
partial output file is left behind (writers go through files.atomic_output).
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

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


class UsageError(Exception):
    """A combination of arguments argparse cannot check by itself; reported like argparse's own."""


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .occnet.errors import OccNetError

    parser = build_parser()
    args = parser.parse_args(argv)
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
