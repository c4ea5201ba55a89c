"""``python -m runtime`` / ``ttmr``: embed files and sentences, index a music folder, search it,
serve it over HTTP, evaluate a model, export or import a catalog.

Exit code 0 on success, 2 on bad input (one line on stderr, no traceback), 3 when ``index``
finished but could not embed some files (listed), 130 when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from pathlib import Path

import numpy as np

from runtime.catalog.indexing import Interrupted, index_folder
from runtime.catalog.store import ModelIdentity, TrackCatalog
from runtime.cli.arguments import Parser, at_least_one, embedder_from, model_options
from runtime.cli.catalog import add_catalog_commands
from runtime.cli.serve import add_serve_command
from runtime.embedder import SPACES
from runtime.errors import InputError
from runtime.evaluate.commands import add_eval_commands
from runtime.files import check_rows_file, write_rows

SOME_FILES_FAILED = 3  # index finished, but listed files could not be embedded
INTERRUPTED = 130  # Ctrl-C, as shells report it


def embed_audio(args: argparse.Namespace) -> None:
    check_rows_file(args.out)
    for index, name in enumerate(args.files):
        if Path(name).is_dir():
            raise InputError(
                f"item {index} ({name!r}) is a folder: pass audio files, or use "
                "'ttmr index FOLDER --out CATALOG' for a whole folder"
            )
    model = embedder_from(args)
    rows = model.embed_audio(args.files, space=args.space, normalize=args.normalize)
    save_rows(args.out, rows, args.files)


def embed_text(args: argparse.Namespace) -> None:
    check_rows_file(args.out)
    model = embedder_from(args)
    rows = model.embed_text(args.texts, space=args.space, normalize=args.normalize)
    save_rows(args.out, rows, args.texts)


def save_rows(out: Path, rows: np.ndarray, items: list[str]) -> None:
    write_rows(out, rows, items)
    print(f"wrote {rows.shape[0]} × {rows.shape[1]} embeddings → {out}")


def index(args: argparse.Namespace) -> int:
    model = embedder_from(args)
    embed_files = None
    if args.ray is not None:
        from runtime.catalog.ray import ray_embed_files

        embed_files = ray_embed_files(model, args.ray or None, args.ray_cpus)
    try:
        run = index_folder(model, args.music_dir, args.out, args.ann, embed_files)
    except Interrupted as stop:
        print(
            f"ttmr: interrupted; {files(stop.run.added)} saved ({stop.run.total} in "
            f"{args.out}); re-run to resume",
            file=sys.stderr,
            flush=True,
        )
        # A graph call or a decoder may still run in a daemon thread, and tearing the
        # interpreter down under it can abort (onnxruntime's thread pool): leave at once.
        # Every chunk the catalog holds is committed on disk already.
        sys.stdout.flush()
        os._exit(INTERRUPTED)
    print(f"indexed {files(run.added, 'new ')}; {run.total} in {args.out}")
    if run.ann_built:
        print(f"built an ANN index over {run.total} rows")
    if run.skipped:
        counts = ", ".join(f"{ext} {n}" for ext, n in run.skipped.most_common())
        print(f"passed over, not audio files: {sum(run.skipped.values())} ({counts})")
    if run.failures:
        print(f"could not read {files(len(run.failures))}:")
        for path, why in run.failures:
            print(f"  {path}: {why}")
        return SOME_FILES_FAILED
    return 0


def files(count: int, kind: str = "") -> str:
    return f"{count} {kind}file{'' if count == 1 else 's'}"


def search(args: argparse.Namespace) -> None:
    if (args.query is None) == (args.like is None):
        raise InputError("give either a text query or --like FILE")
    if args.query is not None and not args.query.strip():
        raise InputError("the text query is empty")
    if args.k < 1:
        raise InputError(f"-k must be at least 1, got {args.k}")
    model = embedder_from(args)
    catalog = TrackCatalog.open(args.catalog, ModelIdentity.of_model(model))
    if args.like is not None:
        query = model.embed_audio([args.like])[0]
    else:
        query = model.embed_text([args.query])[0]
    hits = catalog.search(query, args.k)
    width = max([len("path"), *(len(hit.path) for hit in hits)])
    print(f"{'rank':>4}  {'score':>7}  {'duration':>8}  {'path':<{width}}")
    for rank, hit in enumerate(hits, start=1):
        print(f"{rank:>4}  {hit.score:>7.4f}  {hit.duration:>7.1f}s  {hit.path:<{width}}")
    if model.manifest.random_weights:
        print("(demo model with random weights: these scores are meaningless)")


def build_parser() -> Parser:
    common = model_options()
    embed = Parser(add_help=False)
    embed.add_argument(
        "--out",
        type=Path,
        required=True,
        help=".npy (rows), .npz (rows and the items they belong to) or .json",
    )
    embed.add_argument("--space", choices=SPACES, default="joint")
    embed.add_argument("--normalize", action="store_true", help="L2-normalise the rows")

    parser = Parser(prog="ttmr", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"ttmr {package_version()}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    sub = commands.add_parser("embed-audio", parents=[common, embed], help="embed audio files")
    sub.add_argument("files", nargs="+")
    sub.set_defaults(run=embed_audio)
    sub = commands.add_parser("embed-text", parents=[common, embed], help="embed sentences")
    sub.add_argument("texts", nargs="+")
    sub.set_defaults(run=embed_text)
    sub = commands.add_parser("index", parents=[common], help="embed every audio file of a folder")
    sub.add_argument("music_dir", type=Path)
    sub.add_argument("--out", type=Path, required=True, help="catalog folder (LanceDB)")
    sub.add_argument(
        "--ann",
        action="store_true",
        help="build an ANN index at the end (done by itself past 100,000 rows)",
    )
    sub.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="embed on a Ray cluster (ADDRESS: 'auto', ray://host:10001; none: a local Ray)",
    )
    sub.add_argument(
        "--ray-cpus", type=at_least_one, default=2, help="CPU cores per Ray embedder (no GPU)"
    )
    sub.set_defaults(run=index)
    sub = commands.add_parser("search", parents=[common], help="search a catalog")
    sub.add_argument("catalog", type=Path, help="catalog folder")
    sub.add_argument("query", nargs="?", help="a text query")
    sub.add_argument("--like", help="an audio file: find tracks like it")
    sub.add_argument("-k", type=int, default=10, help="how many results")
    sub.set_defaults(run=search)
    add_catalog_commands(commands, common)
    add_serve_command(commands, common)
    add_eval_commands(commands, common)
    return parser


def package_version() -> str:
    try:
        return importlib.metadata.version("ttmr-runtime")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help(sys.stderr)  # no command: what the commands are
        return 2
    try:
        args = parser.parse_args(argv)
        return args.run(args) or 0
    except InputError as err:
        print(f"ttmr: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ttmr: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
