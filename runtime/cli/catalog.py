"""``ttmr catalog export|import|prune|info``: a catalog folder to Parquet or ``.npz`` for other
tools, an earlier version's ``.npz`` catalog into a folder (once), the rows of deleted files
out of a catalog (never because a drive is not mounted), and what a catalog holds."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from runtime.catalog.npz import NpzCatalog, vectors_of
from runtime.catalog.store import (
    TABLE,
    Catalog,
    ModelIdentity,
    Row,
    file_digest,
    file_stat,
    label,
    lancedb_module,
    readable,
)
from runtime.cli.arguments import Parser, embedder_from
from runtime.errors import InputError, first_line
from runtime.files import write_atomically

EXPORT_FORMATS = (".parquet", ".npz")
IMPORT_CHUNK = 10_000  # rows per commit when importing
FAILURES_SHOWN = 20  # by ``info``; the rest are counted


def export(args: argparse.Namespace) -> None:
    suffix = args.out.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise InputError(
            f"--out {str(args.out)!r}: unknown format {suffix or '(no extension)'!r}; "
            f"use one of {', '.join(EXPORT_FORMATS)}"
        )
    catalog = Catalog.open(args.catalog)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        def write(fh) -> None:
            with pq.ParquetWriter(fh, catalog.table.schema) as writer:
                for batch in catalog.batches():
                    writer.write_batch(batch)

        write_atomically(args.out, write)
    else:
        NpzCatalog.from_folder(args.catalog).save(args.out)
    print(f"wrote {len(catalog)} rows of {args.catalog} → {args.out}")


def import_npz(args: argparse.Namespace) -> None:
    """An earlier version's catalog (a ``.npz`` file, or a folder of the layout before
    track ids) into a catalog folder. Rows of files that exist keep their embedding and
    get the file's size, mtime and digest now; rows of missing files get size -1, so the
    file is embedded again if it comes back."""
    if args.npz.is_dir():
        old = earlier_folder(args.npz)
    elif args.npz.suffix.lower() != ".npz" or not args.npz.is_file():
        raise InputError(f"{str(args.npz)!r} is neither a .npz catalog nor a catalog folder")
    else:
        old = NpzCatalog.load(args.npz)
    model = embedder_from(args)
    identity = ModelIdentity.of_model(model)
    width = old.matrix().shape[1] if old.paths else identity.width
    if width != identity.width:
        raise InputError(
            f"{str(args.npz)!r} holds {width}-d embeddings, but {identity.describe()} makes "
            f"{identity.width}-d ones: import it with the model that made it"
        )
    catalog = Catalog.create(args.out, identity)
    rows = []
    for path, duration, vector in zip(old.paths, old.durations, old.embeddings, strict=True):
        size, mtime_ns, digest = stat_or_missing(Path(path))
        rows.append(Row(path, duration, size, mtime_ns, vector, digest))
    added = sum(
        catalog.append(rows[start : start + IMPORT_CHUNK])
        for start in range(0, len(rows), IMPORT_CHUNK)
    )
    catalog.finish(ann=False)
    print(f"imported {added} rows of {args.npz}; {len(catalog)} in {args.out}")


def earlier_folder(folder: Path) -> NpzCatalog:
    """The rows of a catalog folder of the layout before track ids (paths as text)."""
    lancedb = lancedb_module()
    try:
        table = lancedb.connect(folder).open_table(TABLE)
        if "id" in table.schema.names:
            raise InputError(f"{label(folder)} is a current catalog: nothing to import")
        data = table.to_arrow()
        return NpzCatalog(
            data["path"].to_pylist(),
            data["duration"].to_pylist(),
            list(vectors_of(data["vector"].combine_chunks())),
        )
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{label(folder)} is not a catalog ({first_line(err)})") from None


def stat_or_missing(path: Path) -> tuple[int, int, str]:
    """``(size, mtime_ns)`` and the content digest; ``(-1, 0, '')`` for a missing file."""
    try:
        return *file_stat(path), file_digest(path)
    except OSError:
        return -1, 0, ""


def top_folder(paths: list[str]) -> str:
    """The deepest folder holding every one of ``paths``."""
    return os.path.commonpath([os.path.dirname(path) for path in paths])


def prune(args: argparse.Namespace) -> None:
    """Rows go only when their files are gone and the files' folder is there (a drive that
    is not mounted, or a folder renamed, takes every file away at once) and at most half
    the catalog would go; ``--force`` prunes anyway."""
    catalog = Catalog.open(args.catalog)
    gone = catalog.missing()
    if args.dry_run:
        print(f"would prune {len(gone)} rows of files that are gone:")
        for path in gone:
            print(f"  {readable(path)}")
        return
    if gone and not args.force:
        top = top_folder(list(catalog.known))
        rows = f"{len(gone)} of {len(catalog)} rows' files are gone"
        if not os.path.isdir(top):
            raise InputError(
                f"nothing pruned: {rows}, and so is the folder holding them, "
                f"{readable(top)!r} (a drive not mounted, or a folder renamed? a file that "
                "moved keeps its row when you index its new place); --dry-run lists them, "
                "--force prunes them"
            )
        if 2 * len(gone) > len(catalog):
            raise InputError(
                f"nothing pruned: {rows}, most of the catalog (a folder not mounted or "
                "moved?); --dry-run lists them, --force prunes them"
            )
    removed = catalog.prune(gone)
    for path in removed:
        print(f"removed {readable(path)}")
    print(f"pruned {len(removed)} rows of files that are gone; {len(catalog)} in {args.catalog}")


def info(args: argparse.Namespace) -> None:
    catalog = Catalog.open(args.catalog)
    model = catalog.identity
    there = "" if (Path(model.name) / "manifest.json").is_file() else " (folder gone)"
    seconds = catalog.total_duration()
    print(f"catalog    {args.catalog}")
    print(f"model      {readable(model.name)}{there}")
    print(f"           {model.family}, {model.precision}, {model.width}-d (id {model.model[:16]})")
    print(f"rows       {len(catalog)}, {duration_words(seconds)} of audio")
    print(f"missing    {len(catalog.missing())} rows point at files that are gone")
    print(f"failures   {len(catalog.failed)} files that could not be embedded")
    for failure in sorted(catalog.failed.values(), key=lambda f: f.path)[:FAILURES_SHOWN]:
        tried = time.strftime("%Y-%m-%d %H:%M", time.localtime(failure.tried_ns / 1e9))
        print(f"  {readable(failure.path)}: {failure.reason} (tried {tried})")
    if len(catalog.failed) > FAILURES_SHOWN:
        print(f"  … and {len(catalog.failed) - FAILURES_SHOWN} more")
    print(f"ANN index  {catalog.ann_state()}")


def duration_words(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def add_catalog_commands(commands, common: Parser) -> None:
    """``ttmr catalog …`` under the main parser's ``commands``."""
    group = commands.add_parser("catalog", help="export, import, prune or describe a catalog")
    actions = group.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=Parser
    )
    sub = actions.add_parser("export", help="a catalog folder → .parquet (every column) or .npz")
    sub.add_argument("catalog", type=Path, help="catalog folder")
    sub.add_argument("--out", type=Path, required=True, help=".parquet or .npz")
    sub.set_defaults(run=export)
    sub = actions.add_parser(
        "import", parents=[common], help="an earlier version's catalog → a catalog folder"
    )
    sub.add_argument("npz", type=Path, help="the .npz catalog, or an earlier catalog folder")
    sub.add_argument("--out", type=Path, required=True, help="catalog folder to create")
    sub.set_defaults(run=import_npz)
    sub = actions.add_parser("prune", help="delete the rows of files that no longer exist")
    sub.add_argument("catalog", type=Path, help="catalog folder")
    sub.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    sub.add_argument(
        "--force",
        action="store_true",
        help="prune even when the files' folder is gone or most rows would go",
    )
    sub.set_defaults(run=prune)
    sub = actions.add_parser("info", help="model, rows, duration, known failures, ANN index")
    sub.add_argument("catalog", type=Path, help="catalog folder")
    sub.set_defaults(run=info)
