"""``python -m runtime`` / ``ttmr``: embed files and sentences, index a music folder, search it,
evaluate a model.

Exit code 0 on success, 2 on bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runtime import model_dir_from
from runtime.audio import find_audio_files
from runtime.catalog import Catalog
from runtime.embedder import BACKENDS, BATCH_SIZE, PRECISIONS, SPACES, Embedder
from runtime.errors import InputError

FILES_PER_CALL = 8  # files embedded together: windows of several tracks share graph calls


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and go through the same exit path."""

    def error(self, message: str) -> None:
        raise InputError(message)


def embedder_from(args: argparse.Namespace) -> Embedder:
    return Embedder(
        model_dir_from(args.model_dir),
        threads=args.threads,
        batch_size=args.batch_size,
        precision=args.precision,
        backend=args.backend,
    )


def save_rows(rows: np.ndarray, out: Path) -> None:
    np.save(out, rows)
    print(f"wrote {rows.shape[0]} × {rows.shape[1]} embeddings → {out}")


def embed_audio(args: argparse.Namespace) -> None:
    model = embedder_from(args)
    save_rows(model.embed_audio(args.files, space=args.space, normalize=args.normalize), args.out)


def embed_text(args: argparse.Namespace) -> None:
    model = embedder_from(args)
    save_rows(model.embed_text(args.texts, space=args.space, normalize=args.normalize), args.out)


def index(args: argparse.Namespace) -> None:
    model = embedder_from(args)
    catalog = Catalog.load(args.out, missing_ok=True)
    known = set(catalog.paths)
    todo = [p for p in find_audio_files(args.music_dir) if str(p) not in known]
    failures: list[str] = []
    with tqdm(total=len(todo), unit="file", desc="indexing", file=sys.stderr) as bar:
        for start in range(0, len(todo), FILES_PER_CALL):
            chunk = todo[start : start + FILES_PER_CALL]
            for path, duration, row in embed_chunk(model, chunk, failures):
                catalog.add(str(path), duration, row)
            catalog.save(args.out)  # after every chunk, so an interrupted run resumes
            bar.update(len(chunk))
    print(f"indexed {len(todo) - len(failures)} new files; {len(catalog.paths)} in {args.out}")
    if failures:
        print(f"could not read {len(failures)} files:")
        for failure in failures:
            print(f"  {failure}")


def embed_chunk(
    model: Embedder, chunk: list[Path], failures: list[str]
) -> list[tuple[Path, float, np.ndarray]]:
    """``(path, duration, joint row)`` of each file of ``chunk`` that embeds; whatever makes
    one file fail (a decoder's crash, a graph error, a non-finite row) is added to
    ``failures`` and the rest go on. A failing chunk is retried file by file."""
    tracks = []
    for path in chunk:
        try:
            tracks.append((path, model.load_tracks([path], None)[0]))
        except Exception as err:  # one file must never end the run
            failures.append(f"{path}: {reason(err)}")
    try:
        rows = model.embed_tracks([track for _, track in tracks])
    except Exception as err:  # e.g. a graph error: find the file that causes it
        if len(tracks) == 1:
            failures.append(f"{tracks[0][0]}: {reason(err)}")
            return []
        return [done for one in tracks for done in embed_chunk(model, [one[0]], failures)]
    embedded = []
    for (path, track), row in zip(tracks, rows, strict=True):
        if np.isfinite(row).all():
            embedded.append((path, track.duration, row))
        else:
            failures.append(f"{path}: the model produced a non-finite embedding")
    return embedded


def reason(err: Exception) -> str:
    """An error without the item label that the one-item calls put before it."""
    if isinstance(err, InputError):
        return str(err).split(": ", 1)[-1]
    return f"{type(err).__name__}: {err}"


def search(args: argparse.Namespace) -> None:
    if (args.query is None) == (args.like is None):
        raise InputError("give either a text query or --like FILE")
    if args.k < 1:
        raise InputError(f"-k must be at least 1, got {args.k}")
    catalog = Catalog.load(args.catalog)
    model = embedder_from(args)
    if args.like is not None:
        query = model.embed_audio([args.like])[0]
    else:
        query = model.embed_text([args.query])[0]
    hits = catalog.top(query, args.k)
    width = max([len("path"), *(len(path) for _, _, path in hits)])
    print(f"{'rank':>4}  {'score':>7}  {'duration':>8}  {'path':<{width}}")
    for rank, (score, duration, path) in enumerate(hits, start=1):
        print(f"{rank:>4}  {score:>7.4f}  {duration:>7.1f}s  {path:<{width}}")
    if model.manifest.get("random_weights"):
        print("(demo model with random weights: these scores are meaningless)")


def build_parser() -> Parser:
    common = Parser(add_help=False)
    common.add_argument("--model-dir", help="exported model folder (default: $TTMR_MODEL_DIR)")
    common.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores)")
    common.add_argument(
        "--batch-size", type=int, default=BATCH_SIZE, help="windows / sentences per call"
    )
    common.add_argument("--precision", choices=list(PRECISIONS), default="fp32")
    common.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="auto: TensorRT engines if built"
    )
    embed = Parser(add_help=False)
    embed.add_argument("--out", type=Path, required=True, help="output .npy file")
    embed.add_argument("--space", choices=SPACES, default="joint")
    embed.add_argument("--normalize", action="store_true", help="L2-normalise the rows")

    parser = Parser(prog="ttmr", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
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
    from runtime.evaluate.commands import add_eval_commands  # here: it imports this module

    add_eval_commands(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.run(args)
    except InputError as err:
        print(f"ttmr: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
