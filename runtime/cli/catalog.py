"""``ttmr catalog export|import|prune``: a catalog folder to Parquet or ``.npz`` for other
tools, an earlier version's ``.npz`` catalog into a folder (once), and the rows of deleted
files out of a catalog."""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.catalog.npz import Catalog
from runtime.catalog.store import ModelIdentity, Row, TrackCatalog, file_stat
from runtime.cli.arguments import Parser, embedder_from
from runtime.errors import InputError
from runtime.files import write_atomically

EXPORT_FORMATS = (".parquet", ".npz")
IMPORT_CHUNK = 10_000  # rows per commit when importing


def export(args: argparse.Namespace) -> None:
    suffix = args.out.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise InputError(
            f"--out {str(args.out)!r}: unknown format {suffix or '(no extension)'!r}; "
            f"use one of {', '.join(EXPORT_FORMATS)}"
        )
    catalog = TrackCatalog.open(args.catalog)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        def write(fh) -> None:
            with pq.ParquetWriter(fh, catalog.table.schema) as writer:
                for batch in catalog.batches():
                    writer.write_batch(batch)

        write_atomically(args.out, write)
    else:
        Catalog.from_folder(args.catalog).save(args.out)
    print(f"wrote {len(catalog)} rows of {args.catalog} → {args.out}")


def import_npz(args: argparse.Namespace) -> None:
    """Rows of files that exist keep their embedding and get the file's size and mtime now;
    rows of missing files get size -1, so the file is embedded again if it comes back."""
    if args.npz.suffix.lower() != ".npz" or not args.npz.is_file():
        raise InputError(f"{str(args.npz)!r} is not a .npz catalog file")
    old = Catalog.load(args.npz)
    model = embedder_from(args)
    identity = ModelIdentity.of_model(model)
    width = old.matrix().shape[1] if old.paths else identity.width
    if width != identity.width:
        raise InputError(
            f"{str(args.npz)!r} holds {width}-d embeddings, but {identity.describe()} makes "
            f"{identity.width}-d ones: import it with the model that made it"
        )
    catalog = TrackCatalog.create(args.out, identity)
    rows = [
        Row(path, duration, *stat_or_missing(Path(path)), vector)
        for path, duration, vector in zip(old.paths, old.durations, old.embeddings, strict=True)
    ]
    added = sum(
        catalog.append(rows[start : start + IMPORT_CHUNK])
        for start in range(0, len(rows), IMPORT_CHUNK)
    )
    catalog.finish(ann=False)
    print(f"imported {added} rows of {args.npz}; {len(catalog)} in {args.out}")


def stat_or_missing(path: Path) -> tuple[int, int]:
    try:
        return file_stat(path)
    except OSError:
        return -1, 0


def prune(args: argparse.Namespace) -> None:
    catalog = TrackCatalog.open(args.catalog)
    gone = catalog.prune()
    print(f"pruned {len(gone)} rows of files that are gone; {len(catalog)} in {args.catalog}")


def add_catalog_commands(commands, common: Parser) -> None:
    """``ttmr catalog …`` under the main parser's ``commands``."""
    group = commands.add_parser("catalog", help="export, import or prune a catalog")
    actions = group.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=Parser
    )
    sub = actions.add_parser("export", help="a catalog folder → .parquet (every column) or .npz")
    sub.add_argument("catalog", type=Path, help="catalog folder")
    sub.add_argument("--out", type=Path, required=True, help=".parquet or .npz")
    sub.set_defaults(run=export)
    sub = actions.add_parser(
        "import", parents=[common], help="an earlier version's .npz catalog → a catalog folder"
    )
    sub.add_argument("npz", type=Path, help="the .npz catalog")
    sub.add_argument("--out", type=Path, required=True, help="catalog folder to create")
    sub.set_defaults(run=import_npz)
    sub = actions.add_parser("prune", help="delete the rows of files that no longer exist")
    sub.add_argument("catalog", type=Path, help="catalog folder")
    sub.set_defaults(run=prune)
