"""The catalog that ``ttmr index`` writes and ``ttmr search`` reads: a LanceDB folder (embedded,
no server) holding one table, ``tracks``, of one model's joint space. Each row is a file:
``path`` (resolved), ``duration`` (seconds), ``size`` and ``mtime_ns`` (so a changed file is
embedded again) and ``vector`` (the joint embedding as the model gives it, not normalised).
The table's schema metadata names the model (``ttmr.model``: the sha256 of manifest.json's
bytes and the precision), so a catalog never mixes two models.

Rows are appended per chunk, each append one Lance commit: a killed run leaves the catalog
at its last commit. Writers hold a lock file in the folder while they write, and re-read
which paths the table holds when another writer committed since, so several ``index`` runs
can share one catalog and every path keeps one row. LanceDB is the ``catalog`` extra,
imported only here."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from runtime.errors import InputError, first_line, missing_dependency
from runtime.manifest import manifest_bytes

if TYPE_CHECKING:
    from runtime.embedder import Embedder

TABLE = "tracks"
LOCK = ".ttmr.lock"
# Past this many rows, ``index`` builds an ANN index (IVF-PQ) at the end of a run; below it
# exact search answers in milliseconds anyway. ``index --ann`` builds one at any size.
ANN_AUTO_ROWS = 100_000
MIN_ANN_ROWS = 256  # IVF-PQ trains its codebooks on at least this many rows
# Search with the index: partitions probed, and the candidates re-ranked by exact distance
# (refine_factor × k): recall@10 1.000 at 1 M rows (scripts/bench.py's catalog section; with
# a refine factor of 50 it was 0.90).
NPROBES, REFINE_FACTOR = 32, 100
COLUMNS = ("path", "duration", "size", "mtime_ns")


def lancedb_module():
    """LanceDB, or one line naming the extra that installs it."""
    try:
        import lancedb
    except ImportError:
        raise missing_dependency("LanceDB", extra="catalog", needed_for="the catalog") from None
    return lancedb


@dataclass(frozen=True)
class ModelIdentity:
    """Which model (and precision) made a catalog's rows."""

    model: str  # sha256 of manifest.json's bytes and the precision
    precision: str
    name: str  # the model folder, to name it in messages
    width: int

    @classmethod
    def of(cls, model_dir: Path, precision: str, width: int) -> ModelIdentity:
        digest = hashlib.sha256(manifest_bytes(model_dir))
        digest.update(precision.encode())
        return cls(digest.hexdigest(), precision, str(model_dir), width)

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
        }

    def describe(self) -> str:
        return f"{self.name} at {self.precision} (model {self.model[:12]})"


@dataclass
class Row:
    path: str
    duration: float
    size: int
    mtime_ns: int
    vector: np.ndarray


@dataclass
class Hit:
    score: float  # cosine similarity
    duration: float
    path: str


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
    if folder.suffix.lower() == ".npz":
        raise InputError(
            f"{label(folder)}: a catalog is a LanceDB folder, not a .npz file: give a folder "
            f"name such as {str(target)!r}"
        )


class TrackCatalog:
    """One catalog folder, open; use ``open`` or ``create``."""

    def __init__(self, folder: Path, table, identity: ModelIdentity):
        self.folder = folder
        self.table = table
        self.identity = identity
        self.version = table.version
        self.known = self.read_known()

    @classmethod
    def open(cls, folder: Path, model: ModelIdentity | None = None) -> TrackCatalog:
        """An existing catalog; ``model`` (when given) must be the one that made it."""
        refuse_file(folder)
        if not folder.is_dir():
            raise InputError(f"{label(folder)} does not exist: build it with 'ttmr index'")
        return cls.opened(folder, model)

    @classmethod
    def create(cls, folder: Path, model: ModelIdentity) -> TrackCatalog:
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
            if not table_folder(folder).exists():
                db = lancedb.connect(folder)
                db.create_table(TABLE, schema=schema(model.width).with_metadata(model.metadata()))
        return cls.opened(folder, model)

    @classmethod
    def opened(cls, folder: Path, model: ModelIdentity | None) -> TrackCatalog:
        lancedb = lancedb_module()
        if not table_folder(folder).exists():
            raise InputError(f"{label(folder)} is not a catalog (it has no {TABLE!r} table)")
        try:
            table = lancedb.connect(folder).open_table(TABLE)
            found = identity_of(table.schema.metadata or {})
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            raise InputError(
                f"{label(folder)} is damaged or not a catalog ({first_line(err)})"
            ) from None
        if found is None:
            raise InputError(f"{label(folder)} is not a ttmr catalog (its table names no model)")
        if model is not None and found.model != model.model:
            raise InputError(
                f"{label(folder)} was made by {found.describe()}, not by {model.describe()}: "
                "a catalog holds one model's space (use another --out, or that model)"
            )
        try:
            return cls(folder, table, found)
        except (OSError, ValueError, RuntimeError) as err:
            raise InputError(f"{label(folder)} is damaged ({first_line(err)})") from None

    def read_known(self) -> dict[str, tuple[int, int]]:
        """``path → (size, mtime_ns)`` of every row."""
        data = self.table.search().select(["path", "size", "mtime_ns"]).limit(None).to_arrow()
        return dict(
            zip(
                data["path"].to_pylist(),
                zip(data["size"].to_pylist(), data["mtime_ns"].to_pylist(), strict=True),
                strict=True,
            )
        )

    def __len__(self) -> int:
        return len(self.known)

    def needs(self, path: Path) -> bool:
        """Whether ``path`` has no row yet, or one of an earlier version of the file."""
        try:
            return self.known.get(str(path)) != file_stat(path)
        except OSError:
            return True  # decoding reports the problem

    def refresh(self) -> None:
        """See what other writers committed (under the lock)."""
        self.table.checkout_latest()
        if self.table.version != self.version:
            self.known = self.read_known()
            self.version = self.table.version

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
                    self.table.merge_insert("path")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(self.arrow(changed))
                )
            self.known.update({r.path: (r.size, r.mtime_ns) for r in fresh})
            self.version = self.table.version
        return len(fresh)

    def arrow(self, rows: list[Row]):
        import pyarrow as pa

        vectors = np.stack([r.vector for r in rows]).astype(np.float32).ravel()
        return pa.table(
            {
                "path": [r.path for r in rows],
                "duration": [r.duration for r in rows],
                "size": [r.size for r in rows],
                "mtime_ns": [r.mtime_ns for r in rows],
                "vector": pa.FixedSizeListArray.from_arrays(vectors, self.identity.width),
            },
            schema=self.table.schema,
        )

    def prune(self) -> list[str]:
        """Delete the rows of files that no longer exist; their paths."""
        with locked(self.folder):
            self.refresh()
            gone = [path for path in self.known if not Path(path).is_file()]
            for start in range(0, len(gone), 500):
                quoted = ", ".join(
                    "'" + p.replace("'", "''") + "'" for p in gone[start : start + 500]
                )
                self.table.delete(f"path IN ({quoted})")
            for path in gone:
                del self.known[path]
            self.version = self.table.version
        return gone

    def has_ann(self) -> bool:
        return any("vector" in index.columns for index in self.table.list_indices())

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

    def search(self, query: np.ndarray, k: int) -> list[Hit]:
        """Cosine top-k, best first; through the ANN index where there is one."""
        if not self.known:
            return []
        builder = (
            self.table.search(np.asarray(query, np.float32), vector_column_name="vector")
            .distance_type("cosine")
            .select(["path", "duration", "_distance"])
            .limit(k)
        )
        if self.has_ann():
            builder = builder.nprobes(NPROBES).refine_factor(REFINE_FACTOR)
        found = builder.to_arrow()
        return [
            Hit(1.0 - distance, duration, path)
            for distance, duration, path in zip(
                found["_distance"].to_pylist(),
                found["duration"].to_pylist(),
                found["path"].to_pylist(),
                strict=True,
            )
        ]

    def batches(self, columns: list[str] | None = None) -> Iterator:
        """The table as Arrow record batches, in row order."""
        query = self.table.search().limit(None)
        if columns is not None:
            query = query.select(columns)
        yield from query.to_batches(batch_size=65_536)


def schema(width: int):
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("path", pa.string(), nullable=False),
            pa.field("duration", pa.float64(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("mtime_ns", pa.int64(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), width), nullable=False),
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
        )
    except (KeyError, ValueError):
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
