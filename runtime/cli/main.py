"""``python -m runtime`` / ``ttmr``: embed files and sentences, index a music folder, search it,
serve it over HTTP, evaluate a model, export or import a catalog.

Exit code 0 on success, 2 on bad input (one line on stderr, no traceback), 3 when ``index``
finished but could not embed some files it had not tried before (listed), 130 when
interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import os
import sys
from pathlib import Path

import numpy as np

from runtime.catalog.indexing import Interrupted, index_folder
from runtime.catalog.store import Catalog, Hit, is_utf8, readable
from runtime.cli.arguments import Parser, at_least_one, embedder_from, model_options
from runtime.cli.catalog import add_catalog_commands
from runtime.cli.serve import add_serve_command
from runtime.embedder import SPACES, Embedder
from runtime.errors import InputError, TtmrError
from runtime.evaluate.commands import add_eval_commands
from runtime.files import check_rows_file, write_rows
from runtime.manifest import RANDOM_WEIGHTS_NOTE, read_manifest

SOME_FILES_FAILED = 3  # index finished, but files not tried before could not be embedded
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

        embed_files = ray_embed_files(model, args.ray or None, args.ray_cpus, args.windows)
    try:
        run = index_folder(model, args.music_dir, args.out, args.ann, embed_files, args.windows)
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
    if run.moved:
        print(f"{files(run.moved)} moved: their rows follow them (nothing embedded again)")
    if run.ann_built:
        print(f"built an ANN index over {run.total} rows")
    if run.skipped:
        counts = ", ".join(f"{ext} {n}" for ext, n in run.skipped.most_common())
        print(f"passed over, not audio files: {sum(run.skipped.values())} ({counts})")
    if run.known_failures:
        print(
            f"skipped {run.known_failures} known failures: files that failed before and are "
            f"unchanged since ('ttmr catalog info {args.out}' lists them)"
        )
    if run.missing:
        print(
            f"{run.missing} rows point at files that are gone: 'ttmr catalog prune "
            f"{args.out}' removes them"
        )
    if run.failures:
        print(f"could not read {files(len(run.failures))}:")
        for path, why in run.failures:
            print(f"  {readable(path)}: {why}")
        return SOME_FILES_FAILED
    return 0


def files(count: int, kind: str = "") -> str:
    return f"{count} {kind}file{'' if count == 1 else 's'}"


def search(args: argparse.Namespace) -> None:
    queries = [("text", query) for query in args.queries] + [
        ("like", like) for like in args.like or []
    ]
    if not queries:
        raise InputError("give a text query, or --like FILE")
    for kind, query in queries:
        if kind == "text" and not query.strip():
            raise InputError("the text query is empty")
    if args.k < 1:
        raise InputError(f"-k must be at least 1, got {args.k}")
    catalog = Catalog.open(args.catalog)
    if args.model_dir or args.precision:
        query_model(args, catalog)  # checked against the catalog before any query
    results = []
    for kind, query in queries:
        if kind == "like":
            vector, leave_out = like_vector(args, catalog, query)
        else:
            vector, leave_out = query_model(args, catalog).embed_text([query])[0], None
        results.append((query, catalog.nearest(vector, args.k, leave_out)))
    show_results(results, args.format)
    if random_weights(catalog):
        print(RANDOM_WEIGHTS_NOTE, file=sys.stderr)


def query_model(args: argparse.Namespace, catalog: Catalog) -> Embedder:
    """The model that embeds queries: ``--model-dir``, else the one the catalog records
    (loaded with the command's engine options), else ``$TTMR_MODEL_DIR`` when that folder
    has gone."""
    if catalog.model is None:
        folder = args.model_dir
        recorded = catalog.identity.name
        if folder is None and (Path(recorded) / "manifest.json").is_file():
            folder = recorded
        elif folder is None and not os.environ.get("TTMR_MODEL_DIR"):
            raise InputError(
                f"{args.catalog} was made by the model in {readable(recorded)!r}, which is "
                "gone: give that model's folder with --model-dir"
            )
        catalog.use(embedder_from(args, folder, catalog.identity.precision))
    return catalog.model


def like_vector(
    args: argparse.Namespace, catalog: Catalog, like: str
) -> tuple[np.ndarray, str | None]:
    """``--like``'s query vector and the id to leave out: a catalog track (by path, or by
    its id) gives its stored vector and is left out of its own results; any other file is
    embedded."""
    if os.path.isfile(like):
        row = catalog.row_of(os.path.realpath(like))
        if row is None:
            return query_model(args, catalog).embed_audio([like])[0], None
    elif len(like) == 16 and all(c in "0123456789abcdef" for c in like):
        row = catalog.track(like)
    else:
        raise InputError(f"--like {like!r}: no such file (nor a track id of the catalog)")
    return row.vector, row.id


def random_weights(catalog: Catalog) -> bool:
    """Whether the catalog's model is a demo export with random weights."""
    if catalog.model is not None:
        return catalog.model.manifest.random_weights
    try:
        return read_manifest(catalog.identity.name).random_weights
    except InputError:
        return False


def show_results(results: list[tuple[str, list[Hit]]], form: str) -> None:
    """Each query's hits as a table (a heading per query when there are several), one JSON
    list of objects, or CSV rows; paths readable (``path_bytes``: the exact bytes in hex,
    where a name is not UTF-8)."""
    records = [
        {
            "query": readable(query),
            "rank": rank,
            "score": round(hit.score, 6),
            "duration": round(hit.duration, 3),
            "id": hit.id,
            "path": readable(hit.path),
            **({} if is_utf8(hit.path) else {"path_bytes": os.fsencode(hit.path).hex()}),
        }
        for query, hits in results
        for rank, hit in enumerate(hits, start=1)
    ]
    if form == "json":
        print(json.dumps(records, ensure_ascii=False, indent=1))
    elif form == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        names = ["query", "rank", "score", "duration", "id", "path"]
        writer.writerow(names)
        writer.writerows([record[name] for name in names] for record in records)
    else:
        for number, (query, hits) in enumerate(results):
            if len(results) > 1:
                print(f"{chr(10) if number else ''}{readable(query)}")
            # The path is the last column: a name of any width leaves the others aligned.
            print(f"{'rank':>4}  {'score':>7}  {'duration':>8}  path")
            for rank, hit in enumerate(hits, start=1):
                print(f"{rank:>4}  {hit.score:>7.4f}  {hit.duration:>7.1f}s  {readable(hit.path)}")


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
    sub.add_argument(
        "--windows",
        type=at_least_one,
        metavar="N",
        help="embed at most N evenly spaced 10-s windows per track (faster on long tracks; "
        "default: every window, the reference's whole-track mean)",
    )
    sub.set_defaults(run=index)
    sub = commands.add_parser(
        "search", parents=[model_options(catalog=True)], help="search a catalog"
    )
    sub.add_argument("catalog", type=Path, help="catalog folder")
    sub.add_argument("queries", nargs="*", metavar="QUERY", help="text queries")
    sub.add_argument(
        "--like",
        action="append",
        metavar="FILE",
        help="an audio file (or a catalog track's id): find tracks like it; repeatable",
    )
    sub.add_argument("-k", type=int, default=10, help="how many results per query")
    sub.add_argument("--format", choices=("table", "json", "csv"), default="table")
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
    for stream in (sys.stdout, sys.stderr):
        # A path that is not UTF-8 (a catalog or music folder named on the command line)
        # is written as its own bytes, as ``ls`` writes it, never an encoding error.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help(sys.stderr)  # no command: what the commands are
        return 2
    try:
        args = parser.parse_args(argv)
        return args.run(args) or 0
    except TtmrError as err:  # bad input, a model folder, a missing extra: one line
        print(f"ttmr: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ttmr: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
