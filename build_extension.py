"""Build the installable extension zip (`./dev build`): stage the manifest and the package, then run
Blender's own extension CLI (validate, build) on the stage.

    python build_extension.py [--output-dir dist] [--blender-ext PATH]

The zip's root holds blender_manifest.toml and the package's __init__.py; training/ and tests/ stay out.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent
PACKAGE = REPO / "blender_occnet"
MANIFEST = REPO / "blender_manifest.toml"
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache")


def find_blender_ext() -> Path:
    """Blender's extension CLI as shipped in the bpy wheel (plain Python, no Blender needed)."""
    roots = [Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["platlib"])]
    for root in roots:
        for candidate in sorted(root.glob("bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py")):
            return candidate
    raise SystemExit("error: blender_ext.py not found; install the bpy wheel (./dev setup) or pass --blender-ext")


def stage(into: Path) -> Path:
    """Copy the manifest and the package's contents so both sit at the stage's root."""
    source = into / "occnet"
    shutil.copytree(PACKAGE, source, ignore=SKIP)
    shutil.copy2(MANIFEST, source / MANIFEST.name)
    return source


def build(output_dir: Path, blender_ext: Path | None = None) -> Path:
    """Validate and build; returns the zip's path (dist/<id>-<version>.zip)."""
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    cli = blender_ext or find_blender_ext()
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="occnet-build-") as tmp:
        source = stage(Path(tmp))
        for args in (["validate", str(source)],
                     ["build", "--source-dir", str(source), "--output-filepath", str(target)]):
            done = subprocess.run([sys.executable, str(cli), *args], capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"error: blender_ext {args[0]} failed:\n{done.stdout}{done.stderr}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "dist")
    parser.add_argument("--blender-ext", type=Path, help="path to Blender's blender_ext.py")
    args = parser.parse_args(argv)
    print(build(args.output_dir, args.blender_ext))
    return 0


if __name__ == "__main__":
    sys.exit(main())
