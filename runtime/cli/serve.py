"""``ttmr serve``: the HTTP service of ``runtime.serving.http`` under uvicorn. It binds
loopback unless told otherwise, and refuses any other address without an API key."""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import signal
from pathlib import Path

from runtime.cli.arguments import Parser, at_least_one, model_folder
from runtime.errors import InputError

SERVE_EXTRA = "ttmr serve needs FastAPI and uvicorn: pip install -e '.[serve]'"
SERVE_MODULES = ("fastapi", "uvicorn", "prometheus_client", "python_multipart")


def read_key(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        key = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"--api-key-file {str(path)!r}: cannot read it ({err})") from None
    if len(key) < 16 or any(c.isspace() for c in key):
        raise InputError(
            f"--api-key-file {str(path)!r}: the key must be one word of at least 16 characters"
        )
    return key


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> None:
    key = read_key(args.api_key_file)
    if not is_loopback(args.host) and key is None and not args.insecure:
        raise InputError(
            f"--host {args.host} exposes the server beyond this machine: give "
            "--api-key-file FILE (or --insecure to serve it without a key)"
        )
    if any(importlib.util.find_spec(name) is None for name in SERVE_MODULES):
        raise InputError(SERVE_EXTRA)
    import uvicorn

    from runtime.serving.http import Limits, create_app

    limits = Limits(
        max_upload_bytes=args.max_upload_mb * 2**20,
        max_audio_seconds=args.max_audio_minutes * 60.0,
        max_items=args.max_items,
        batch_wait=args.batch_wait_ms / 1000,
    )
    app = create_app(
        model_folder(args.model_dir),
        args.catalog,
        api_key=key,
        cors=args.cors,
        limits=limits,
        threads=args.threads,
        batch_size=args.batch_size,
        precision=args.precision,
        backend=args.backend,
    )
    # uvicorn handles SIGTERM and Ctrl-C: in-flight requests finish, then the model stops.
    # It raises the signal again once it has stopped; SIGTERM then ends the command as a
    # finished one (exit status 0), not as killed.
    signal.signal(signal.SIGTERM, lambda number, frame: None)
    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=30)


def add_serve_command(commands, common: Parser) -> None:
    sub = commands.add_parser(
        "serve", parents=[common], help="serve embeddings and catalog search over HTTP"
    )
    sub.add_argument("--catalog", type=Path, help="catalog folder to search and play")
    sub.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    sub.add_argument("--port", type=int, default=8000)
    sub.add_argument(
        "--api-key-file", type=Path, help="file holding the key requests must send as Bearer"
    )
    sub.add_argument(
        "--insecure", action="store_true", help="allow another address than loopback without a key"
    )
    sub.add_argument(
        "--cors", action="append", default=[], metavar="ORIGIN", help="origin allowed by CORS"
    )
    sub.add_argument("--max-upload-mb", type=at_least_one, default=200, help="per request")
    sub.add_argument("--max-audio-minutes", type=at_least_one, default=60, help="per file")
    sub.add_argument("--max-items", type=at_least_one, default=64, help="files or sentences")
    sub.add_argument(
        "--batch-wait-ms",
        type=float,
        default=50.0,
        help="how long a model call may wait for more requests to gather",
    )
    sub.set_defaults(run=serve)
