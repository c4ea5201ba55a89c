"""The command line's shared argparse pieces: one-line usage errors and the model options
that every model-using command takes. Both ``runtime.cli.main`` and ``runtime.evaluate.commands``
build on them, so neither imports the other's internals."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from pathlib import Path

from runtime.embedder import BATCH_SIZE, Embedder
from runtime.engines.choice import BACKENDS, PRECISIONS
from runtime.errors import InputError


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and go through the same exit path; a
    mistyped command gets "did you mean", a missing one the list of commands."""

    def error(self, message: str) -> None:
        commands = self.commands()
        wrong = re.search(r"invalid choice: '([^']*)'", message)
        if wrong and commands:
            close = difflib.get_close_matches(wrong.group(1), commands, n=1)
            known = f"did you mean {close[0]!r}?" if close else f"one of {', '.join(commands)}"
            message = f"{self.prog}: unknown command {wrong.group(1)!r}: {known}"
        elif "the following arguments are required" in message and commands:
            message += f" (one of {', '.join(commands)})"
        raise InputError(message)

    def commands(self) -> list[str]:
        """The sub-commands this parser takes, if it takes any."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return list(action.choices)
        return []


def at_least_one(text: str) -> int:
    """argparse type of --threads and --batch-size."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_engine_options(options: argparse.ArgumentParser, precision: str | None = "fp32") -> None:
    """How a model runs: threads, batch size, precision (``None``: the one a catalog
    records), backend (not which model)."""
    options.add_argument(
        "--threads", type=at_least_one, help="threads per graph call (default: all cores)"
    )
    options.add_argument(
        "--batch-size", type=at_least_one, default=BATCH_SIZE, help="windows / sentences per call"
    )
    options.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default=precision,
        help="bf16: CPUs with AMX or AVX-512-BF16 (OpenVINO; fp32 elsewhere); int8: the "
        "folder's int8 graphs (export/quantize.py) "
        f"(default: {precision or 'the one the catalog records'})",
    )
    options.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: the fastest installed engine at that precision (TensorRT engines if "
        "built, OpenVINO for bf16, and for int8 on CPUs with VNNI or AMX-INT8, else "
        "onnxruntime)",
    )


def model_options(catalog: bool = False) -> Parser:
    """``--model-dir`` and the engine options: what a command that runs one model takes
    (``catalog``: one that reads a catalog, whose model and precision are the defaults)."""
    options = Parser(add_help=False)
    default = "the model the catalog records" if catalog else "$TTMR_MODEL_DIR"
    options.add_argument("--model-dir", help=f"exported model folder (default: {default})")
    add_engine_options(options, None if catalog else "fp32")
    return options


def model_folder(given: str | None) -> Path:
    """``--model-dir``, else ``$TTMR_MODEL_DIR``, said in the command line's words."""
    chosen = given or os.environ.get("TTMR_MODEL_DIR")
    if not chosen:
        raise InputError("no model folder: give --model-dir DIR or set TTMR_MODEL_DIR")
    folder = Path(chosen)
    if not folder.exists():
        where = "--model-dir" if given else "TTMR_MODEL_DIR"
        relative = "" if folder.is_absolute() else f", from {os.getcwd()}"
        raise InputError(f"{where} {chosen!r}: no such folder{relative}")
    return folder


def embedder_from(
    args: argparse.Namespace, model_dir: str | None = None, precision: str | None = None
) -> Embedder:
    """The Embedder of ``model_dir`` (default ``--model-dir``, else ``$TTMR_MODEL_DIR``) at
    ``--precision`` (else ``precision``, else fp32); what runs it goes to stderr once, when
    its first graph loads (so a usage error stays one line)."""
    model = Embedder(
        model_folder(model_dir or args.model_dir),
        threads=args.threads,
        batch_size=args.batch_size,
        precision=args.precision or precision or "fp32",
        backend=args.backend,
    )
    model.announce = lambda line: print(f"ttmr: running on {line}", file=sys.stderr)
    return model
