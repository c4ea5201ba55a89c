"""``python -m runtime`` / ``ttmr``: embed files and sentences, index a music folder, search it,
evaluate a model.

Exit code 0 on success, 2 on bad input (one line on stderr, no traceback), 3 when ``index``
finished but could not embed some files (listed), 130 when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path

import numpy as np

from runtime.arguments import Parser, embedder_from, model_options
from runtime.catalog import Catalog
from runtime.embedder import SPACES
from runtime.errors import InputError
from runtime.evaluate.commands import add_eval_commands
from runtime.files import check_rows_file, write_rows
from runtime.indexing import Interrupted, index_folder

SOME_FILES_FAILED = 3  # index finished, but listed files could not be embedded
INTERRUPTED = 130  # Ctrl-C, as shells report it


def embed_audio(args: argparse.Namespace) -> None:
    check_rows_file(args.out)
    for index, name in enumerate(args.files):
        if Path(name).is_dir():
            raise InputError(
                f"item {index} ({name!r}) is a folder: pass audio files, or use "
                "'ttmr index FOLDER --out catalog.npz' for a whole folder"
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
    try:
        run = index_folder(model, args.music_dir, args.out)
    except Interrupted as stop:
        print(
            f"ttmr: interrupted; {files(stop.run.added)} saved ({stop.run.total} in "
            f"{args.out}); re-run to resume",
            file=sys.stderr,
        )
        return INTERRUPTED
    print(f"indexed {files(run.added, 'new ')}; {run.total} in {args.out}")
    if run.skipped:
        counts = ", ".join(f"{ext} {n}" for ext, n in run.skipped.most_common())
        print(f"passed over, not audio files: {sum(run.skipped.values())} ({counts})")
    if run.failures:
        print(f"could not read {files(len(run.failures))}:")
        for failure in run.failures:
            print(f"  {failure}")
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
    catalog = Catalog.load(args.catalog)
    model = embedder_from(args)
    catalog.check_width(model.width("audio", "joint"), args.catalog)
    if args.like is not None:
        query = model.embed_audio([args.like])[0]
    else:
        query = model.embed_text([args.query])[0]
    hits = catalog.top(query, args.k)
    width = max([len("path"), *(len(path) for _, _, path in hits)])
    print(f"{'rank':>4}  {'score':>7}  {'duration':>8}  {'path':<{width}}")
    for rank, (score, duration, path) in enumerate(hits, start=1):
        print(f"{rank:>4}  {score:>7.4f}  {duration:>7.1f}s  {path:<{width}}")
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
    sub.add_argument("--out", type=Path, required=True, help="catalog file (.npz)")
    sub.set_defaults(run=index)
    sub = commands.add_parser("search", parents=[common], help="search a catalog")
    sub.add_argument("catalog", type=Path)
    sub.add_argument("query", nargs="?", help="a text query")
    sub.add_argument("--like", help="an audio file: find tracks like it")
    sub.add_argument("-k", type=int, default=10, help="how many results")
    sub.set_defaults(run=search)
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
