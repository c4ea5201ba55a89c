"""The catalog that ``ttmr index`` writes and ``ttmr search`` reads: a LanceDB folder (embedded,
no server) of one model's joint space, opened in Python as ``runtime.Catalog``.

Table ``tracks`` holds a row per file: ``id`` (``track_id``), ``path`` (the resolved path's
exact bytes, so any name the OS gives is stored and can be opened again), ``duration``
(seconds), ``size`` and ``mtime_ns`` (so a changed file is embedded again), ``sha256`` of the
file's content (so a moved file takes over its row) and ``vector`` (the joint embedding as the
model gives it, not normalised). Table ``failures`` remembers the files that could not be
embedded, with their size and mtime, so a re-run tries one again only once it changed. The
``tracks`` schema's metadata records what made the vectors (``ModelIdentity``): a catalog
never mixes two models, and commands that read one can load the model it records.

Rows are appended per chunk, each append one Lance commit: a killed run leaves the catalog at
its last commit. Writers hold a lock file in the folder while they write, and re-read which
paths the table holds when another writer committed since, so several ``index`` runs can
share one catalog and every path keeps one row. LanceDB is the ``catalog`` extra, imported
only here."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import time
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from runtime.errors import InputError, first_line, missing_dependency
from runtime.manifest import read_manifest

if TYPE_CHECKING:
    from runtime.embedder import Embedder

TABLE = "tracks"
FAILURES = "failures"
LOCK = ".ttmr.lock"
# Past this many rows, ``index`` builds an ANN index (IVF-PQ) at the end of a run; below it
# exact search answers in milliseconds anyway. ``index --ann`` builds one at any size.
ANN_AUTO_ROWS = 100_000
MIN_ANN_ROWS = 256  # IVF-PQ trains its codebooks on at least this many rows
# Search with the index: partitions probed, and the candidates re-ranked by exact distance
# (refine_factor × k): recall@10 1.000 at 1 M rows (scripts/bench.py's catalog section; with
# a refine factor of 50 it was 0.90).
NPROBES, REFINE_FACTOR = 32, 100
COLUMNS = ("id", "path", "duration", "size", "mtime_ns", "sha256")
# The graphs whose outputs are a catalog's vectors (the text tower only embeds queries).
AUDIO_GRAPHS = ("audio", "floor")
DELETE_CHUNK = 500  # ids per delete filter


def lancedb_module():
    """LanceDB, or one line naming the extra that installs it. Its warning in a forked
    child (a native library forking to run a helper) is about LanceDB's own use there,
    which the runtime never makes: kept from users."""
    warnings.filterwarnings("ignore", "lancedb fork support is experimental", RuntimeWarning)
    try:
        import lancedb
    except ImportError:
        raise missing_dependency("LanceDB", extra="catalog", needed_for="the catalog") from None
    return lancedb


def track_id(path: str) -> str:
    """A track's id: the first 16 hex digits of the sha256 of its path's bytes."""
    return hashlib.sha256(os.fsencode(path)).hexdigest()[:16]


def readable(path: str) -> str:
    """``path`` for display: bytes that are not UTF-8 shown as U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")


def is_utf8(path: str) -> bool:
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def file_digest(path: Path | str) -> str:
    """The sha256 of a file's content, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


_graph_digests: dict[tuple[str, int, int], str] = {}


def graph_digest(path: Path) -> str:
    """``file_digest`` of a graph, remembered per (path, size, mtime) in this process."""
    info = path.stat()
    key = (str(path.resolve()), info.st_size, info.st_mtime_ns)
    if key not in _graph_digests:
        _graph_digests[key] = file_digest(path)
    return _graph_digests[key]


@dataclass(frozen=True)
class ModelIdentity:
    """What made a catalog's vectors: the family, the audio graphs' content at that precision
    and the audio preprocessing. ``model`` is their digest, the identity compared; a
    manifest rewritten (INT8 or FP16 graphs added, TensorRT engines built) keeps it."""

    model: str
    precision: str
    name: str  # the model folder, resolved: to load it again and to name it in messages
    width: int
    family: str = ""
    graphs: tuple[tuple[str, str], ...] = ()  # (graph, sha256 of its file)
    preprocessing: str = ""  # the manifest's audio preprocessing, as JSON

    @classmethod
    def of(cls, model_dir: Path, precision: str, width: int) -> ModelIdentity:
        manifest = read_manifest(model_dir)
        files = manifest.graph_files("fp32" if precision == "bf16" else precision)
        if files is None:
            raise InputError(f"{model_dir}: no {precision} graphs")
        graphs = tuple(
            (graph, graph_digest(Path(model_dir) / files[graph]))
            for graph in AUDIO_GRAPHS
            if graph in files
        )
        steps = json.dumps(dataclasses.asdict(manifest.audio.preprocessing), sort_keys=True)
        digest = hashlib.sha256(
            json.dumps([manifest.family, precision, steps, graphs]).encode()
        ).hexdigest()
        folder = str(Path(model_dir).resolve())
        return cls(digest, precision, folder, width, manifest.family, graphs, steps)

    @classmethod
    def of_model(cls, model: Embedder) -> ModelIdentity:
        """The identity of an ``Embedder``'s model, precision and joint width."""
        return cls.of(model.model_dir, model.precision, model.width("audio", "joint"))

    def metadata(self) -> dict[str, str]:
        return {
            "ttmr.model": self.model,
            "ttmr.precision": self.precision,
            "ttmr.model_dir": self.name,
            "ttmr.width": str(self.width),
            "ttmr.family": self.family,
            "ttmr.graphs": json.dumps(dict(self.graphs)),
            "ttmr.preprocessing": self.preprocessing,
        }

    def describe(self) -> str:
        return f"{self.name} at {self.precision}"

    def differences(self, other: ModelIdentity) -> list[str]:
        """What differs between the model that made a catalog (``self``) and ``other``."""
        found = []
        if self.family != other.family:
            found.append(f"it is a {self.family} model, not {other.family}")
        if self.precision != other.precision:
            found.append(
                f"its vectors are {self.precision}, not {other.precision} "
                f"(use --precision {self.precision})"
            )
        if self.width != other.width:
            found.append(f"its vectors have {self.width} dimensions, not {other.width}")
        if self.preprocessing != other.preprocessing:
            found.append("its audio preprocessing differs")
        ours, theirs = dict(self.graphs), dict(other.graphs)
        for graph in sorted(set(ours) | set(theirs)):
            if ours.get(graph) != theirs.get(graph):
                found.append(f"its {graph} graph's content differs (re-exported or another model)")
        return found or [f"model id {self.model[:12]} against {other.model[:12]}"]


@dataclass
class Row:
    """One track of a catalog. ``path`` is ``os.fsdecode`` of the stored bytes: a name that
    is not UTF-8 holds surrogate escapes, so ``Path(row.path)`` opens the file."""

    path: str
    duration: float
    size: int
    mtime_ns: int
    vector: np.ndarray
    sha256: str = ""

    @property
    def id(self) -> str:
        return track_id(self.path)


@dataclass
class Hit:
    """A search result, best first: ``path`` as in ``Row``."""

    score: float  # cosine similarity
    duration: float
    path: str
    id: str = ""


@dataclass(frozen=True)
class Failure:
    """A file that could not be embedded, as it was when it was tried."""

    path: str
    size: int
    mtime_ns: int
    reason: str
    tried_ns: int  # when (ns since the epoch)


def file_stat(path: Path) -> tuple[int, int]:
    """``(size, mtime_ns)``: what tells a changed file from the one that was embedded."""
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def label(folder: Path) -> str:
    return f"catalog {str(folder)!r}"


def refuse_file(folder: Path) -> None:
    """A catalog is a folder; an earlier version's ``.npz`` gets the command that converts it."""
    target = folder.with_suffix("") if folder.suffix else folder.with_name(folder.name + "-db")
    if folder.is_file() and (folder.suffix.lower() == ".npz" or zipfile.is_zipfile(folder)):
        raise InputError(
            f"{label(folder)} is a .npz catalog of an earlier version (catalogs are LanceDB "
            f"folders now): convert it once with 'ttmr catalog import {folder} --out {target}' "
            "and the model that made it"
        )
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{label(folder)} is a file, not a catalog folder")
    if not is_utf8(str(folder.absolute())):
        raise InputError(
            f"catalog {readable(str(folder))!r}: LanceDB takes only folder names that are "
            "UTF-8; give the catalog another folder (the music may be named anyhow)"
        )
    if folder.suffix.lower() == ".npz":
        raise InputError(
            f"{label(folder)}: a catalog is a LanceDB folder, not a .npz file: give a folder "
            f"name such as {str(target)!r}"
        )


class Catalog:
    """One catalog folder, open: ``Catalog.open(folder)``, or ``create`` (``ttmr index``).

    ``len(catalog)`` rows; iterating gives every ``Row``; ``track(id)`` one;
    ``search(query, k)`` the top-k ``Hit``s of a text, a vector or an audio file, embedded
    with the model the catalog records (or the one given to ``use``)."""

    def __init__(self, folder: Path, db, table, identity: ModelIdentity):
        self.folder = folder
        self.db = db
        self.table = table
        self.identity = identity
        self.version = table.version
        self.known = self.read_known()
        self.failed = self.read_failures()
        self.model: Embedder | None = None

    @classmethod
    def open(cls, folder: str | os.PathLike, model: ModelIdentity | None = None) -> Catalog:
        """An existing catalog; ``model`` (when given) must be the one that made it."""
        folder = Path(folder)
        refuse_file(folder)
        if not folder.is_dir():
            raise InputError(f"{label(folder)} does not exist: build it with 'ttmr index'")
        return cls.opened(folder, model)

    @classmethod
    def create(cls, folder: Path, model: ModelIdentity) -> Catalog:
        """The catalog of ``model`` in ``folder``, made when the folder is new or empty."""
        refuse_file(folder)
        lancedb = lancedb_module()
        if folder.is_dir() and not table_folder(folder).exists():
            if any(p.name != LOCK for p in folder.iterdir()):
                raise InputError(
                    f"{str(folder)!r} holds other files and no catalog: give a new or empty "
                    "folder for the catalog"
                )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot create {label(folder)}: {err.strerror or err}") from None
        with locked(folder):  # two runs creating one catalog at once make one table
            db = lancedb.connect(folder)
            if not table_folder(folder).exists():
                db.create_table(FAILURES, schema=failure_schema())
                db.create_table(TABLE, schema=schema(model.width).with_metadata(model.metadata()))
        return cls.opened(folder, model)

    @classmethod
    def opened(cls, folder: Path, model: ModelIdentity | None) -> Catalog:
        lancedb = lancedb_module()
        if not table_folder(folder).exists():
            raise InputError(f"{label(folder)} is not a catalog (it has no {TABLE!r} table)")
        try:
            db = lancedb.connect(folder)
            table = db.open_table(TABLE)
            found = identity_of(table.schema.metadata or {})
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            raise InputError(
                f"{label(folder)} is damaged or not a catalog ({first_line(err)})"
            ) from None
        if found is None:
            raise InputError(f"{label(folder)} is not a ttmr catalog (its table names no model)")
        if "id" not in table.schema.names:
            raise InputError(
                f"{label(folder)} was written by an earlier version of ttmr: convert it once "
                f"with 'ttmr catalog import {folder} --out NEW --model-dir MODEL' (the model "
                "that made it), or index the music again"
            )
        if model is not None and found.model != model.model:
            raise InputError(
                f"{label(folder)} was made by {found.describe()}, not by {model.describe()}: "
                f"{'; '.join(found.differences(model))}. A catalog holds one model's space: "
                "index into another --out, or use that model"
            )
        try:
            return cls(folder, db, table, found)
        except (OSError, ValueError, RuntimeError) as err:
            raise InputError(f"{label(folder)} is damaged ({first_line(err)})") from None

    # Reading -------------------------------------------------------------------------------

    def read_known(self) -> dict[str, tuple[int, int]]:
        """``path → (size, mtime_ns)`` of every row."""
        data = self.table.search().select(["path", "size", "mtime_ns"]).limit(None).to_arrow()
        return dict(
            zip(
                map(os.fsdecode, data["path"].to_pylist()),
                zip(data["size"].to_pylist(), data["mtime_ns"].to_pylist(), strict=True),
                strict=True,
            )
        )

    def failures_table(self):
        return self.db.open_table(FAILURES)

    def read_failures(self) -> dict[str, Failure]:
        """``path → Failure`` of every file remembered as failed."""
        data = self.failures_table().search().limit(None).to_arrow().to_pylist()
        failures = (
            Failure(os.fsdecode(r["path"]), r["size"], r["mtime_ns"], r["reason"], r["tried_ns"])
            for r in data
        )
        return {failure.path: failure for failure in failures}

    def __len__(self) -> int:
        return len(self.known)

    def __iter__(self) -> Iterator[Row]:
        for batch in self.batches():
            yield from rows_of(batch)

    def track(self, id: str) -> Row:
        """The row of track ``id`` (``Row.id``, ``Hit.id``)."""
        if not (len(id) == 16 and all(c in "0123456789abcdef" for c in id)):
            raise InputError(f"{id!r} is not a track id (16 hex digits)")
        found = self.table.search().where(f"id = '{id}'").limit(1).to_arrow()
        if not found.num_rows:
            raise InputError(f"{label(self.folder)} holds no track {id!r}")
        return next(rows_of(found))

    def row_of(self, path: str) -> Row | None:
        """The row of ``path`` when the file is unchanged since it was embedded."""
        try:
            current = file_stat(Path(path))
        except OSError:
            return None
        if self.known.get(path) != current:
            return None
        return self.track(track_id(path))

    def batches(self, columns: list[str] | None = None) -> Iterator:
        """The table as Arrow record batches, in row order."""
        query = self.table.search().limit(None)
        if columns is not None:
            query = query.select(columns)
        yield from query.to_batches(batch_size=65_536)

    def needs(self, path: Path) -> bool:
        """Whether ``path`` has no row yet, or one of an earlier version of the file."""
        try:
            return self.known.get(str(path)) != file_stat(path)
        except OSError:
            return True  # decoding reports the problem

    def failed_before(self, path: Path) -> bool:
        """Whether ``path`` failed before, as it is now (same size and mtime)."""
        failure = self.failed.get(str(path))
        try:
            return failure is not None and (failure.size, failure.mtime_ns) == file_stat(path)
        except OSError:
            return False

    def missing(self) -> list[str]:
        """The paths of rows whose file is gone."""
        return [path for path in self.known if not os.path.isfile(path)]

    def total_duration(self) -> float:
        total = 0.0
        for batch in self.batches(["duration"]):
            total += float(np.sum(batch["duration"].to_numpy()))
        return total

    # Writing -------------------------------------------------------------------------------

    def refresh(self) -> None:
        """See what other writers committed (under the lock)."""
        self.table.checkout_latest()
        if self.table.version != self.version:
            self.known = self.read_known()
            self.version = self.table.version
        self.failed = self.read_failures()

    def append(self, rows: list[Row]) -> int:
        """Add ``rows`` (replacing the rows of changed files); rows another writer has
        already added for the same file are dropped. Returns how many were written."""
        if not rows:
            return 0
        with locked(self.folder):
            self.refresh()
            fresh = [r for r in rows if self.known.get(r.path) != (r.size, r.mtime_ns)]
            new = [r for r in fresh if r.path not in self.known]
            changed = [r for r in fresh if r.path in self.known]
            if new:
                self.table.add(self.arrow(new))
            if changed:
                (
                    self.table.merge_insert("id")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(self.arrow(changed))
                )
            self.known.update({r.path: (r.size, r.mtime_ns) for r in fresh})
            self.version = self.table.version
            self.forget_failures([r.path for r in rows if r.path in self.failed])
        return len(fresh)

    def move(self, moves: dict[str, str]) -> int:
        """Give each old path's row (a file that is gone) to the new path it moved to: the
        new row is committed before the old one is deleted, so a crash between the two
        leaves both, never neither. Returns how many rows moved."""
        if not moves:
            return 0
        with locked(self.folder):
            self.refresh()
            moved = []
            for old, new in moves.items():
                if old not in self.known or new in self.known:
                    continue
                row = self.track(track_id(old))
                size, mtime_ns = file_stat(Path(new))
                moved.append((old, Row(new, row.duration, size, mtime_ns, row.vector, row.sha256)))
            if moved:
                self.table.add(self.arrow([row for _, row in moved]))
                self.delete_rows([old for old, _ in moved])
                for old, row in moved:
                    del self.known[old]
                    self.known[row.path] = (row.size, row.mtime_ns)
            self.version = self.table.version
        return len(moved)

    def remember_failures(self, failures: list[tuple[str, str]]) -> None:
        """Record ``(path, why)`` failures with each file's size and mtime now."""
        if not failures:
            return
        import pyarrow as pa

        now = time.time_ns()
        records = []
        for path, why in failures:
            try:
                size, mtime_ns = file_stat(Path(path))
            except OSError:
                continue  # the file went: nothing to skip next time
            records.append(Failure(path, size, mtime_ns, why, now))
        with locked(self.folder):
            self.refresh()
            self.forget_failures([f.path for f in records if f.path in self.failed])
            if records:
                table = pa.table(
                    {
                        "id": [track_id(f.path) for f in records],
                        "path": [os.fsencode(f.path) for f in records],
                        "size": [f.size for f in records],
                        "mtime_ns": [f.mtime_ns for f in records],
                        "reason": [f.reason for f in records],
                        "tried_ns": [f.tried_ns for f in records],
                    },
                    schema=failure_schema(),
                )
                self.failures_table().add(table)
            self.failed.update({f.path: f for f in records})

    def forget_failures(self, paths: list[str]) -> None:
        """Drop the failure records of ``paths`` (under the lock)."""
        table = self.failures_table()
        for start in range(0, len(paths), DELETE_CHUNK):
            ids = ", ".join(f"'{track_id(p)}'" for p in paths[start : start + DELETE_CHUNK])
            table.delete(f"id IN ({ids})")
        for path in paths:
            self.failed.pop(path, None)

    def delete_rows(self, paths: list[str]) -> None:
        for start in range(0, len(paths), DELETE_CHUNK):
            ids = ", ".join(f"'{track_id(p)}'" for p in paths[start : start + DELETE_CHUNK])
            self.table.delete(f"id IN ({ids})")

    def arrow(self, rows: list[Row]):
        import pyarrow as pa

        vectors = np.stack([r.vector for r in rows]).astype(np.float32).ravel()
        return pa.table(
            {
                "id": [r.id for r in rows],
                "path": [os.fsencode(r.path) for r in rows],
                "duration": [r.duration for r in rows],
                "size": [r.size for r in rows],
                "mtime_ns": [r.mtime_ns for r in rows],
                "sha256": [r.sha256 for r in rows],
                "vector": pa.FixedSizeListArray.from_arrays(vectors, self.identity.width),
            },
            schema=self.table.schema,
        )

    def prune(self, paths: list[str] | None = None) -> list[str]:
        """Delete the rows of ``paths`` (default: every file that no longer exists) whose
        files are gone now; their paths. ``runtime.catalog.pruning`` decides whether to."""
        with locked(self.folder):
            self.refresh()
            gone = [p for p in (self.missing() if paths is None else paths) if p in self.known]
            gone = [p for p in gone if not os.path.isfile(p)]
            self.delete_rows(gone)
            for path in gone:
                del self.known[path]
            self.forget_failures([p for p in self.failed if not os.path.exists(p)])
            self.version = self.table.version
        return gone

    def has_ann(self) -> bool:
        return any("vector" in index.columns for index in self.table.list_indices())

    def ann_state(self) -> str:
        """The ANN index, in words."""
        for index in self.table.list_indices():
            if "vector" in index.columns:
                stats = self.table.index_stats(index.name)
                if stats is None:
                    return f"{index.index_type}"
                return (
                    f"{stats.index_type} over {stats.num_indexed_rows} rows, "
                    f"{stats.num_unindexed_rows} not yet in it (searched exactly)"
                )
        return f"none (exact search; built by 'index --ann', or past {ANN_AUTO_ROWS:,} rows)"

    def finish(self, ann: bool) -> bool:
        """After a run: compact the appended fragments, update an ANN index with the new
        rows, or build one when asked (``ann``) or past ``ANN_AUTO_ROWS``. Returns whether
        an index was built now."""
        with locked(self.folder):
            self.refresh()
            build = (ann or len(self.known) >= ANN_AUTO_ROWS) and not self.has_ann()
            if build and len(self.known) < MIN_ANN_ROWS:
                build = False  # too few rows to train on; exact search is instant anyway
            if build:
                self.build_ann()
            self.table.optimize()
            self.version = self.table.version
        return build

    def build_ann(self) -> None:
        from lancedb.index import IvfPq

        rows = len(self.known)
        config = IvfPq(
            distance_type="cosine",
            num_partitions=max(1, min(int(rows**0.5), rows // MIN_ANN_ROWS)),
            num_sub_vectors=max(1, self.identity.width // 8),
        )
        self.table.create_index("vector", config=config)

    # Searching -----------------------------------------------------------------------------

    def use(self, model: Embedder) -> None:
        """Embed queries with ``model`` (it must be the catalog's), not the recorded one."""
        self.check(ModelIdentity.of_model(model))
        self.model = model

    def check(self, identity: ModelIdentity) -> None:
        if identity.model != self.identity.model:
            raise InputError(
                f"{label(self.folder)} was made by {self.identity.describe()}, not by "
                f"{identity.describe()}: {'; '.join(self.identity.differences(identity))}"
            )

    def embedder(self) -> Embedder:
        """The model that made the catalog (loaded from the folder it records once), or the
        one given to ``use``."""
        if self.model is None:
            from runtime.embedder import Embedder

            folder = Path(self.identity.name)
            if not (folder / "manifest.json").is_file():
                raise InputError(
                    f"{label(self.folder)} was made by the model in {str(folder)!r}, which is "
                    "gone: give that model's folder (--model-dir)"
                )
            model = Embedder(folder, precision=self.identity.precision)
            self.check(ModelIdentity.of_model(model))
            self.model = model
        return self.model

    def search(self, query: str | os.PathLike | np.ndarray | list[float], k: int = 10) -> list[Hit]:
        """Cosine top-k, best first, through the ANN index where there is one. ``query``: a
        vector of the joint space; a ``Path``, or a ``str`` naming an existing file, is an
        audio file (a catalog track, unchanged, gives its stored vector and is left out of
        its own results); any other ``str`` is a text."""
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        leave_out = None
        if isinstance(query, (np.ndarray, list, tuple)):
            vector = np.asarray(query, np.float32)
        elif isinstance(query, os.PathLike) or (isinstance(query, str) and os.path.isfile(query)):
            path = os.path.realpath(query)
            row = self.row_of(path)
            if row is not None:
                vector, leave_out = row.vector, row.id
            else:
                vector = self.embedder().embed_audio([query])[0]
        elif isinstance(query, str):
            if not query.strip():
                raise InputError("the text query is empty")
            vector = self.embedder().embed_text([query])[0]
        else:
            raise InputError(f"a query is a text, a vector or an audio file, not {type(query)}")
        return self.nearest(vector, k, leave_out)

    def nearest(self, vector: np.ndarray, k: int, leave_out: str | None = None) -> list[Hit]:
        """The k rows nearest ``vector``, without the row ``leave_out`` (an id)."""
        vector = np.asarray(vector, np.float32).ravel()
        if vector.shape != (self.identity.width,) or not np.isfinite(vector).all():
            raise InputError(
                f"a query vector must be {self.identity.width} finite numbers, got "
                f"shape {vector.shape}"
            )
        if not self.known:
            return []
        builder = (
            self.table.search(vector, vector_column_name="vector")
            .distance_type("cosine")
            .select(["id", "path", "duration", "_distance"])
            .limit(k + (leave_out is not None))
        )
        if leave_out is not None:
            builder = builder.where(f"id != '{leave_out}'", prefilter=True)
        if self.has_ann():
            builder = builder.nprobes(NPROBES).refine_factor(REFINE_FACTOR)
        found = builder.to_arrow()
        hits = [
            Hit(1.0 - distance, duration, os.fsdecode(path), id)
            for distance, duration, path, id in zip(
                found["_distance"].to_pylist(),
                found["duration"].to_pylist(),
                found["path"].to_pylist(),
                found["id"].to_pylist(),
                strict=True,
            )
        ]
        return [hit for hit in hits if hit.id != leave_out][:k]


def rows_of(batch) -> Iterator[Row]:
    """The ``Row``s of an Arrow batch or table of every column."""
    column = batch["vector"]
    if hasattr(column, "combine_chunks"):  # a table's column: chunked
        column = column.combine_chunks()
    vectors = column.flatten().to_numpy().reshape(batch.num_rows, -1)
    names = ("path", "duration", "size", "mtime_ns", "sha256")
    columns = [batch[name].to_pylist() for name in names]
    for i, (path, duration, size, mtime_ns, digest) in enumerate(zip(*columns, strict=True)):
        yield Row(os.fsdecode(path), duration, size, mtime_ns, vectors[i], digest)


def schema(width: int):
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("path", pa.binary(), nullable=False),
            pa.field("duration", pa.float64(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("mtime_ns", pa.int64(), nullable=False),
            pa.field("sha256", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), width), nullable=False),
        ]
    )


def failure_schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("path", pa.binary(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("mtime_ns", pa.int64(), nullable=False),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("tried_ns", pa.int64(), nullable=False),
        ]
    )


def identity_of(metadata: dict) -> ModelIdentity | None:
    text = {key.decode(): value.decode() for key, value in metadata.items()}
    try:
        return ModelIdentity(
            text["ttmr.model"],
            text["ttmr.precision"],
            text["ttmr.model_dir"],
            int(text["ttmr.width"]),
            text.get("ttmr.family", ""),
            tuple(json.loads(text.get("ttmr.graphs", "{}")).items()),
            text.get("ttmr.preprocessing", ""),
        )
    except (KeyError, ValueError, AttributeError):
        return None


def table_folder(folder: Path) -> Path:
    return folder / f"{TABLE}.lance"


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """The catalog's write lock (``flock``: released by the kernel if the holder dies); a
    write that fails (a full disk) is one line, and leaves the catalog at its last commit."""
    try:
        handle = open(folder / LOCK, "a+b")
    except OSError as err:
        raise InputError(f"cannot write {label(folder)}: {err.strerror or err}") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        except OSError as err:
            raise InputError(f"cannot write {label(folder)}: {err.strerror or err}") from None
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
