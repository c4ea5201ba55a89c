"""The LanceDB catalog: one row per file whatever kills or races ``index``, one model per
catalog, changed files embedded again and deleted ones pruned, clear errors for a damaged
catalog, ANN search, export and import."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pyarrow.parquet as pq
import pytest
import soundfile as sf

import runtime.catalog.store
import runtime.embedder
from export.synthetic import random_track
from runtime.catalog.npz import NpzCatalog
from runtime.catalog.store import Catalog, ModelIdentity, Row
from runtime.cli.main import main
from runtime.errors import InputError
from tests.helpers import one_error_line


@pytest.fixture
def model_env(small_model_dir, monkeypatch):
    monkeypatch.setenv("TTMR_MODEL_DIR", str(small_model_dir))
    return small_model_dir


def write_tracks(folder: Path, count: int, seconds: float = 1.0, first: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"track {number:03d}.wav" for number in range(first, first + count)]
    for number, path in enumerate(paths, start=first):
        sf.write(path, random_track(number, seconds), 22050)
    return paths


def assert_one_row_per_file(catalog: Path, files: list[Path]) -> list[str]:
    """The catalog opens, holds only these files, each at most once; its paths."""
    paths = NpzCatalog.load(catalog).paths
    assert len(paths) == len(set(paths)), "a file has two rows"
    assert set(paths) <= {str(path.resolve()) for path in files}
    return paths


def ttmr_index(folder: Path, catalog: Path, model_dir: Path, stderr=subprocess.PIPE):
    return subprocess.Popen(
        [sys.executable, "-m", "runtime", "index", str(folder), "--out", str(catalog)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "TTMR_MODEL_DIR": str(model_dir)},
    )


@pytest.mark.slow  # end to end: kept out of the quick -m 'not slow' loop
def test_sigkill_at_random_moments_leaves_one_row_per_file_and_a_rerun_completes_it(
    model_env, tmp_path
):
    """Each run is killed a random 0–1.5 s after its progress bar appears (so on a slow or
    busy machine too, the kill falls while it decodes, embeds or appends)."""
    files = write_tracks(tmp_path / "music", 80, seconds=0.5)
    catalog, log = tmp_path / "catalog", tmp_path / "stderr.txt"
    counts = []
    for delay in random.Random(20).sample([i / 10 for i in range(16)], 10):
        with open(log, "w") as stderr:
            process = ttmr_index(tmp_path / "music", catalog, model_env, stderr)
            deadline = time.monotonic() + 120
            while "indexing (seconds" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.communicate()
        counts.append(len(assert_one_row_per_file(catalog, files)))
    assert counts == sorted(counts)  # nothing indexed is ever lost
    assert counts[0] < len(files)  # the first kill fell before the end
    assert main(["index", str(tmp_path / "music"), "--out", str(catalog)]) == 0
    assert sorted(assert_one_row_per_file(catalog, files)) == sorted(
        str(f.resolve()) for f in files
    )


def test_three_index_runs_into_one_catalog_at_once_lose_nothing(model_env, tmp_path):
    """Two runs over folders A and B and one over their parent (A, B and C) at once: every
    file ends up with exactly one row."""
    files = (
        write_tracks(tmp_path / "all" / "A", 2)
        + write_tracks(tmp_path / "all" / "B", 3, first=2)
        + write_tracks(tmp_path / "all" / "C", 2, first=5)
    )
    catalog = tmp_path / "catalog"
    runs = [ttmr_index(tmp_path / "all" / name, catalog, model_env) for name in ("A", "B", "")]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    paths = assert_one_row_per_file(catalog, files)
    assert len(paths) == 7


def test_index_of_a_missing_folder_creates_no_catalog(model_env, tmp_path, capsys):
    assert main(["index", str(tmp_path / "missing"), "--out", str(tmp_path / "c")]) == 2
    assert "is not a folder" in one_error_line(capsys)
    assert not (tmp_path / "c").exists()


def test_a_link_to_a_file_in_the_same_folder_gives_one_row(model_env, tmp_path, capsys):
    (music,) = write_tracks(tmp_path / "music", 1)
    (music.parent / "link.wav").symlink_to(music)
    assert main(["index", str(music.parent), "--out", str(tmp_path / "c")]) == 0
    assert NpzCatalog.load(tmp_path / "c").paths == [str(music.resolve())]


def test_a_changed_file_is_embedded_again_and_a_deleted_one_pruned(model_env, tmp_path, capsys):
    first, second, third = write_tracks(tmp_path / "music", 3)
    catalog = tmp_path / "catalog"
    assert main(["index", str(tmp_path / "music"), "--out", str(catalog)]) == 0
    before = NpzCatalog.load(catalog)
    sf.write(second, random_track(99, 2.0), 22050)  # new content, size and mtime
    third.unlink()
    capsys.readouterr()
    assert main(["index", str(tmp_path / "music"), "--out", str(catalog)]) == 0
    assert "indexed 1 new file; 3 in" in capsys.readouterr().out
    after = NpzCatalog.load(catalog)
    assert sorted(after.paths) == sorted(before.paths)
    row = {path: i for i, path in enumerate(after.paths)}
    old = {path: i for i, path in enumerate(before.paths)}
    assert after.durations[row[str(second)]] == pytest.approx(2.0)
    assert not np.allclose(after.embeddings[row[str(second)]], before.embeddings[old[str(second)]])
    np.testing.assert_array_equal(
        after.embeddings[row[str(first)]], before.embeddings[old[str(first)]]
    )
    assert main(["catalog", "prune", str(catalog)]) == 0
    assert "pruned 1 rows of files that are gone; 2 in" in capsys.readouterr().out
    assert sorted(NpzCatalog.load(catalog).paths) == [str(first), str(second)]


def identity(name: str = "models/a", precision: str = "fp32", width: int = 16) -> ModelIdentity:
    return ModelIdentity(f"hash of {name} {precision}", precision, name, width)


def test_a_catalog_of_another_model_or_precision_is_refused_by_name(model_env, tmp_path, capsys):
    Catalog.create(tmp_path / "c", identity())
    for other in (identity("models/b"), identity(precision="int8")):
        with pytest.raises(InputError, match=r"made by models/a at fp32, not by models/"):
            Catalog.open(tmp_path / "c", other)
        with pytest.raises(InputError, match="made by models/a at fp32"):
            Catalog.create(tmp_path / "c", other)
    with pytest.raises(InputError, match=r"its vectors are fp32, not int8 \(use --precision fp32"):
        Catalog.open(tmp_path / "c", identity(precision="int8"))


def test_a_rewritten_manifest_keeps_the_catalog_and_a_changed_audio_graph_is_named(
    model_env, tmp_path, capsys
):
    """The identity is what made the vectors: the audio graph's content, the preprocessing,
    the family and the precision; not manifest.json's bytes."""
    copy = tmp_path / "copy"
    shutil.copytree(model_env, copy)
    music = write_tracks(tmp_path / "music", 2)[0].parent
    catalog = str(tmp_path / "real")
    assert main(["index", str(music), "--out", catalog, "--model-dir", str(copy)]) == 0
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["note"] += " (rewritten)"
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=4))
    capsys.readouterr()
    assert main(["search", catalog, "piano", "--model-dir", str(copy)]) == 0
    assert main(["index", str(music), "--out", catalog, "--model-dir", str(copy)]) == 0
    audio = copy / manifest["audio"]["file"]
    graph = onnx.load(audio)
    graph.doc_string = "re-exported"  # the same graph, other bytes
    onnx.save(graph, audio)
    capsys.readouterr()
    assert main(["search", catalog, "piano", "--model-dir", str(copy)]) == 2
    line = one_error_line(capsys)
    assert f"made by {copy.resolve()} at fp32" in line and "its audio graph's content" in line
    assert "precision" not in line and "preprocessing" not in line


@pytest.mark.parametrize("damage", ["garbage manifest", "no table", "no model", "a file"])
def test_a_malformed_catalog_is_one_clear_error(model_env, tmp_path, capsys, damage):
    catalog = tmp_path / "c"
    Catalog.create(catalog, identity())
    if damage == "garbage manifest":
        for manifest in (catalog / "tracks.lance" / "_versions").iterdir():
            manifest.write_bytes(b"not a lance manifest" * 10)
    elif damage == "no table":
        shutil.rmtree(catalog / "tracks.lance")
        (catalog / "other.txt").write_text("x")
    elif damage == "no model":
        shutil.rmtree(catalog)
        import lancedb

        lancedb.connect(catalog).create_table("tracks", schema=runtime.catalog.store.schema(16))
    else:
        shutil.rmtree(catalog)
        catalog.write_text("not a folder")
    assert main(["search", str(catalog), "piano"]) == 2
    assert f"catalog {str(catalog)!r}" in one_error_line(capsys)


def clustered(count: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((40, width))
    return (centres[rng.integers(0, 40, count)] + 0.6 * rng.standard_normal((count, width))).astype(
        np.float32
    )


def test_ann_search_has_recall_at_10_of_at_least_095_against_exact_search(tmp_path, monkeypatch):
    """Built by itself past ANN_AUTO_ROWS (lowered here to 3000 rows); queries go through
    the index, and find what exact cosine search finds."""
    monkeypatch.setattr(runtime.catalog.store, "ANN_AUTO_ROWS", 3000)
    vectors = clustered(3000, 16, seed=1)
    catalog = Catalog.create(tmp_path / "c", identity())
    catalog.append([Row(f"/m/{i}.wav", 1.0, 1, 1, vectors[i]) for i in range(2999)])
    assert catalog.finish(ann=False) is False and not catalog.has_ann()
    catalog.append([Row("/m/2999.wav", 1.0, 1, 1, vectors[2999])])
    assert catalog.finish(ann=False) is True and catalog.has_ann()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    recalls = []
    for query in clustered(20, 16, seed=2):
        exact = {f"/m/{i}.wav" for i in np.argsort(-(unit @ query))[:10]}
        found = {hit.path for hit in catalog.search(query, 10)}
        recalls.append(len(found & exact) / 10)
    assert np.mean(recalls) >= 0.95
    best = catalog.search(vectors[5], 1)[0]
    assert best.path == "/m/5.wav" and best.score == pytest.approx(1.0, abs=1e-3)


def test_export_to_parquet_and_npz_and_import_back(model_env, tmp_path, capsys):
    write_tracks(tmp_path / "music", 3)
    catalog = tmp_path / "catalog"
    assert main(["index", str(tmp_path / "music"), "--out", str(catalog)]) == 0
    rows = NpzCatalog.load(catalog)
    assert main(["catalog", "export", str(catalog), "--out", str(tmp_path / "c.parquet")]) == 0
    table = pq.read_table(tmp_path / "c.parquet")
    assert table.column_names == ["id", "path", "duration", "size", "mtime_ns", "sha256", "vector"]
    assert table["path"].to_pylist() == [os.fsencode(path) for path in rows.paths]
    np.testing.assert_array_equal(
        np.stack(table["vector"].to_numpy(zero_copy_only=False)), rows.matrix()
    )
    assert main(["catalog", "export", str(catalog), "--out", str(tmp_path / "c.npz")]) == 0
    with np.load(tmp_path / "c.npz") as data:
        assert data["paths"].tolist() == rows.paths
        np.testing.assert_array_equal(data["embeddings"], rows.matrix())
    capsys.readouterr()
    back = tmp_path / "back"
    assert main(["catalog", "import", str(tmp_path / "c.npz"), "--out", str(back)]) == 0
    assert f"imported 3 rows of {tmp_path / 'c.npz'}; 3 in {back}" in capsys.readouterr().out
    np.testing.assert_array_equal(NpzCatalog.load(back).matrix(), rows.matrix())
    assert main(["index", str(tmp_path / "music"), "--out", str(back)]) == 0
    assert "indexed 0 new files; 3 in" in capsys.readouterr().out  # sizes and mtimes kept
    assert main(["catalog", "export", str(catalog), "--out", str(tmp_path / "c.csv")]) == 2
    assert "unknown format '.csv'" in one_error_line(capsys)


def test_without_lancedb_index_names_the_extra_to_install(model_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lancedb", None)
    write_tracks(tmp_path / "music", 1)
    assert main(["index", str(tmp_path / "music"), "--out", str(tmp_path / "c")]) == 2
    assert "LanceDB is not installed (the catalog needs it): pip install -e '.[catalog]'" in (
        one_error_line(capsys)
    )


def test_decoding_runs_ahead_of_the_consumer_in_order_and_bounded():
    from runtime.catalog.indexing import in_background

    started = {i: threading.Event() for i in range(10)}

    def work(item: int) -> int:
        started[item].set()
        return item * item

    results = in_background(work, range(10), workers=2, ahead=3)
    item, future = next(results)
    assert (item, future.result()) == (0, 0)
    assert started[1].wait(10) and started[2].wait(10)  # decoded while the model works
    time.sleep(0.2)
    assert not started[3].is_set()  # no more than `ahead` items at once
    assert [(i, f.result()) for i, f in results] == [(i, i * i) for i in range(1, 10)]


def test_progress_counts_embedded_seconds_and_ends_at_its_total(model_env, tmp_path, monkeypatch):
    """The bar moves when a chunk's files are embedded, not when they are decoded (files
    decode ahead of the model), and ends exactly at its total."""
    import runtime.catalog.indexing as indexing

    write_tracks(tmp_path / "music", indexing.FILES_PER_CALL + 3, seconds=1.5)
    bars, seen = [], []

    class Bar:
        def __init__(self, total: float, stream):
            self.total, self.n = total, 0.0
            bars.append(self)

        def update(self, seconds: float) -> None:
            self.n += seconds

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    embed_tracks = runtime.embedder.Embedder.embed_tracks

    def counted(model, tracks, *args, **kwargs):
        seen.append(bars[-1].n)
        return embed_tracks(model, tracks, *args, **kwargs)

    monkeypatch.setattr(indexing, "progress", Bar)
    monkeypatch.setattr(runtime.embedder.Embedder, "embed_tracks", counted)
    assert main(["index", str(tmp_path / "music"), "--out", str(tmp_path / "c")]) == 0
    (bar,) = bars
    assert bar.total == pytest.approx(1.5 * (indexing.FILES_PER_CALL + 3))
    assert seen == [0.0, pytest.approx(1.5 * indexing.FILES_PER_CALL)]
    assert bar.n == pytest.approx(bar.total)


def test_windows_embeds_evenly_spaced_windows_of_long_tracks(model_env, tmp_path):
    from runtime.catalog.indexing import spaced_windows

    windows = np.arange(36)[:, None] * np.ones((1, 4))
    assert spaced_windows(windows, 4)[:, 0].tolist() == [0, 12, 23, 35]
    assert spaced_windows(windows[:3], 4) is not None and len(spaced_windows(windows[:3], 4)) == 3
    music = tmp_path / "music"
    write_tracks(music, 1, seconds=45.0)  # four windows
    write_tracks(music, 1, seconds=5.0, first=1)  # one, shorter than a window
    assert main(["index", str(music), "--out", str(tmp_path / "all")]) == 0
    assert main(["index", str(music), "--out", str(tmp_path / "two"), "--windows", "2"]) == 0
    every, two = NpzCatalog.load(tmp_path / "all"), NpzCatalog.load(tmp_path / "two")
    assert every.paths == two.paths and every.durations == two.durations
    model = runtime.Embedder(model_env)
    (track,) = model.load_tracks([every.paths[0]], None)
    track.windows = track.windows[[0, 3]]
    np.testing.assert_allclose(two.embeddings[0], model.embed_tracks([track])[0], rtol=1e-5)
    assert not np.allclose(two.embeddings[0], every.embeddings[0])
    np.testing.assert_array_equal(two.embeddings[1], every.embeddings[1])  # one window: the same


def test_a_catalog_of_the_earlier_layout_is_refused_and_imported_on_request(
    model_env, tmp_path, capsys
):
    """Before track ids, paths were text: such a catalog is left as it is, named with the
    command that converts it, and ``catalog import`` keeps its rows."""
    import lancedb
    import pyarrow as pa

    folder = tmp_path / "old"
    earlier = pa.schema(
        [
            pa.field("path", pa.string()),
            pa.field("duration", pa.float64()),
            pa.field("size", pa.int64()),
            pa.field("mtime_ns", pa.int64()),
            pa.field("vector", pa.list_(pa.float32(), 16)),
        ]
    ).with_metadata(identity().metadata())
    music = write_tracks(tmp_path / "music", 2)
    vectors = clustered(2, 16, seed=3)
    rows = {
        "path": [str(music[0]), str(tmp_path / "gone.wav")],
        "duration": [1.0, 2.0],
        "size": [1, 1],
        "mtime_ns": [1, 1],
        "vector": pa.FixedSizeListArray.from_arrays(vectors.ravel(), 16),
    }
    lancedb.connect(folder).create_table("tracks", pa.table(rows, schema=earlier))
    assert main(["search", str(folder), "piano"]) == 2
    line = one_error_line(capsys)
    assert (
        f"written by an earlier version of ttmr: convert it once with 'ttmr catalog import {folder}"
        in line
    )
    assert (folder / "tracks.lance").is_dir()
    new = tmp_path / "new"
    assert main(["catalog", "import", str(folder), "--out", str(new)]) == 0
    assert f"imported 2 rows of {folder}; 2 in {new}" in capsys.readouterr().out
    converted = {row.path: row for row in Catalog.open(new)}
    np.testing.assert_array_equal(converted[str(music[0])].vector, vectors[0])
    assert converted[str(tmp_path / "gone.wav")].size == -1  # embedded again if it comes back
    assert main(["index", str(tmp_path / "music"), "--out", str(new)]) == 0
    assert "indexed 1 new file; 3 in" in capsys.readouterr().out  # the first kept its row
