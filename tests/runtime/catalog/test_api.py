"""The Python catalog API: ``runtime.Catalog.open(folder)``, its rows, ``track(id)`` and
``search`` of a text, a vector or an audio file with the model the catalog records."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import runtime
import runtime.catalog
from export.synthetic import random_track
from runtime.catalog.store import Catalog, Row
from runtime.cli.main import main
from runtime.errors import InputError


@pytest.fixture
def indexed(small_model_dir, tmp_path, monkeypatch) -> tuple[Path, list[Path]]:
    monkeypatch.setenv("TTMR_MODEL_DIR", str(small_model_dir))
    music = tmp_path / "music"
    music.mkdir()
    files = [music / f"track {n}.wav" for n in range(4)]
    for number, path in enumerate(files):
        sf.write(path, random_track(number, 3.0 + number), 22_050)
    assert main(["index", str(music), "--out", str(tmp_path / "catalog")]) == 0
    monkeypatch.delenv("TTMR_MODEL_DIR")  # the catalog's own record is enough from here on
    return tmp_path / "catalog", files


def test_import_runtime_stays_light_and_catalog_is_one_class():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, runtime; print('lancedb' in sys.modules)"],
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "False", done.stderr
    assert runtime.Catalog is runtime.catalog.Catalog is Catalog


def test_rows_ids_and_lookup(indexed):
    folder, files = indexed
    catalog = runtime.Catalog.open(folder)
    rows = list(catalog)
    assert len(catalog) == len(rows) == 4
    assert sorted(row.path for row in rows) == sorted(str(f.resolve()) for f in files)
    for row in rows:
        assert isinstance(row, Row) and row.vector.shape == (16,)
        assert row.id == hashlib.sha256(os.fsencode(row.path)).hexdigest()[:16]
        found = catalog.track(row.id)
        assert found.path == row.path
        np.testing.assert_array_equal(found.vector, row.vector)
    with pytest.raises(InputError, match="not a track id"):
        catalog.track("nope")
    with pytest.raises(InputError, match="holds no track"):
        catalog.track("0" * 16)


def test_search_by_text_vector_and_audio_with_the_recorded_model(
    indexed, small_model_dir, tmp_path
):
    folder, _ = indexed
    catalog = Catalog.open(folder)
    rows = list(catalog)
    matrix = np.stack([row.vector for row in rows])
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    query = runtime.Embedder(small_model_dir).embed_text(["a calm piano piece"], normalize=True)[0]
    expected = np.argsort(-(unit @ query))

    hits = catalog.search("a calm piano piece", k=3)
    assert [hit.path for hit in hits] == [rows[i].path for i in expected[:3]]
    np.testing.assert_allclose([h.score for h in hits], (unit @ query)[expected[:3]], atol=1e-5)
    assert catalog.model is not None and catalog.model.model_dir == small_model_dir.resolve()

    best = catalog.search(rows[2].vector, k=1)[0]  # a vector: itself first
    assert best.id == rows[2].id and best.score == pytest.approx(1.0, abs=1e-5)

    others = catalog.search(Path(rows[2].path), k=10)  # a catalog track: the others
    assert sorted(h.id for h in others) == sorted(r.id for r in rows if r.id != rows[2].id)
    copy = shutil.copy(rows[2].path, tmp_path / "copy.wav")  # not in the catalog: embedded
    embedded = catalog.search(copy, k=1)[0]
    assert embedded.id == rows[2].id and embedded.score == pytest.approx(1.0, abs=1e-5)

    for bad, message in [("  ", "empty"), (np.ones(3), "16 finite numbers"), (5, "a query is")]:
        with pytest.raises(InputError, match=message):
            catalog.search(bad)
    with pytest.raises(InputError, match="k must be at least 1"):
        catalog.search("piano", k=0)


def test_a_catalog_whose_model_folder_is_gone_asks_for_it(indexed, small_model_dir, tmp_path):
    folder, _ = indexed
    moved = tmp_path / "model"
    shutil.copytree(small_model_dir, moved)
    catalog = Catalog.open(folder)
    catalog.identity = type(catalog.identity)(
        **{**catalog.identity.__dict__, "name": str(tmp_path / "gone")}
    )
    with pytest.raises(InputError, match=r"which is gone: give that model's folder"):
        catalog.search("piano")
    catalog.use(runtime.Embedder(moved))  # the same graphs elsewhere: the same model
    assert len(catalog.search("piano", k=2)) == 2
