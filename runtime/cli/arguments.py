"""The command line's shared argparse pieces: one-line usage errors and the model options
that every model-using command takes. Both ``runtime.cli.main`` and ``runtime.evaluate.commands``
build on them, so neither imports the other's internals."""

from __future__ import annotations

import argparse
import sys

from runtime.embedder import BATCH_SIZE, Embedder
from runtime.engines.choice import BACKENDS, PRECISIONS
from runtime.errors import InputError
from runtime.model_folder import model_dir_from


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and go through the same exit path."""

    def error(self, message: str) -> None:
        raise InputError(message)


def at_least_one(text: str) -> int:
    """argparse type of --threads and --batch-size."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_engine_options(options: argparse.ArgumentParser) -> None:
    """How a model runs: threads, batch size, precision, backend (not which model)."""
    options.add_argument(
        "--threads", type=at_least_one, help="threads per graph call (default: all cores)"
    )
    options.add_argument(
        "--batch-size", type=at_least_one, default=BATCH_SIZE, help="windows / sentences per call"
    )
    options.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default="fp32",
        help="bf16: CPUs with AMX or AVX-512-BF16 (OpenVINO; fp32 elsewhere); int8: the "
        "folder's int8 graphs (export/quantize.py) (default: fp32)",
    )
    options.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: the fastest installed engine at that precision (TensorRT engines if "
        "built, OpenVINO for bf16, and for int8 on CPUs with VNNI or AMX-INT8, else "
        "onnxruntime)",
    )


def model_options() -> Parser:
    """``--model-dir`` and the engine options: what a command that runs one model takes."""
    options = Parser(add_help=False)
    options.add_argument("--model-dir", help="exported model folder (default: $TTMR_MODEL_DIR)")
    add_engine_options(options)
    return options


def embedder_from(args: argparse.Namespace, model_dir: str | None = None) -> Embedder:
    """The Embedder of ``model_dir`` (default ``--model-dir``, else ``$TTMR_MODEL_DIR``);
    what runs it goes to stderr once, when its first graph loads (so a usage error stays
    one line)."""
    model = Embedder(
        model_dir_from(model_dir or args.model_dir),
        threads=args.threads,
        batch_size=args.batch_size,
        precision=args.precision,
        backend=args.backend,
    )
    model.announce = lambda line: print(f"ttmr: running on {line}", file=sys.stderr)
    return model
