"""`python -m blender_occnet.backend serve --stdio | --host H --port N --token T`."""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from ..common.torch_env import MAX_THREADS, apply_to_torch, backend_threads, configure_before_torch
from . import EXIT_MISSING_PACKAGE

# Exit status the client reads as "a required package is missing in this interpreter".
REQUIREMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.txt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blender_occnet.backend",
                                     description="The blender-occnet reconstruction backend.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve reconstructions")
    mode = serve.add_mutually_exclusive_group(required=True)
    mode.add_argument("--stdio", action="store_true", help="speak over stdin/stdout (what the add-on uses)")
    mode.add_argument("--port", type=int, help="listen on this TCP port (for a remote GPU machine)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only; use an SSH tunnel, or "
                            "0.0.0.0 on a trusted network)")
    serve.add_argument("--token", default=os.environ.get("OCCNET_BACKEND_TOKEN"),
                       help="token clients must present (default: $OCCNET_BACKEND_TOKEN, else a random one "
                            "printed at start)")
    serve.add_argument("--weights-dir", action="append", default=[], help="extra folder of weights (repeatable)")
    serve.add_argument("--allow-remote-shutdown", action="store_true",
                       help="TCP: let a client stop the server (off: a shared server outlives its clients)")
    serve.add_argument("--reply-buffer-mb", type=int, default=512, metavar="MB",
                       help="TCP: replies waiting for all clients together; past it the client with the most waiting "
                            "(one that stopped reading) is dropped (default 512)")
    serve.add_argument("--threads", type=int, default=0, metavar="N",
                       help="CPU threads for the network (default: over stdio every core but one, left for "
                            "Blender; over TCP every core)")
    args = parser.parse_args(argv)
    if args.reply_buffer_mb < 1:
        parser.error(f"--reply-buffer-mb must be at least 1, got {args.reply_buffer_mb}")
    if not 0 <= args.threads <= MAX_THREADS:
        parser.error(f"--threads must be between 0 (automatic) and {MAX_THREADS}, got {args.threads}")
    # Before anything imports torch: libgomp reads these once, when it loads.
    threads = backend_threads(args.threads) if args.stdio else args.threads
    configure_before_torch(threads)

    missing = _missing_packages()
    if missing:
        print(f"blender-occnet backend: {sys.executable} lacks {', '.join(missing)}. Install the backend's "
              f"requirements into it: {sys.executable} -m pip install -r {REQUIREMENTS} "
              "(or use the extension's Install backend button).", file=sys.stderr, flush=True)
        return EXIT_MISSING_PACKAGE

    from .engine import Engine
    from .server import serve_stdio, serve_tcp

    apply_to_torch(threads)
    engine = Engine(args.weights_dir)
    if args.stdio:
        serve_stdio(engine)
        return 0
    token = args.token or secrets.token_urlsafe(24)
    if not args.token:
        print(f"token: {token}", file=sys.stderr, flush=True)

    def ready(port: int) -> None:
        print(f"blender-occnet backend listening on {args.host}:{port}", file=sys.stderr, flush=True)

    serve_tcp(engine, args.host, args.port, token, ready, allow_shutdown=args.allow_remote_shutdown,
              reply_buffer=args.reply_buffer_mb << 20)
    return 0


def _missing_packages() -> list[str]:
    import importlib.util

    needed = ("numpy", "torch", "skimage", "safetensors", "PIL", "trimesh", "fast_simplification")
    return [name for name in needed if importlib.util.find_spec(name) is None]


if __name__ == "__main__":
    sys.exit(main())
