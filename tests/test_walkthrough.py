"""A new user's first session, scripted: the README's command-line workflow run as a user
runs it (``python -m runtime …`` in a shell), on a library of generated files in every
format libsndfile reads, with odd names (two of them not UTF-8, one in CJK), rates and
channel counts, a truncated mp3, a broken file and a macOS sidecar; each command's output
and exit code checked. Then what a personal library does next: INT8 graphs added with
calibration on the user's own music, searches from another folder, a folder renamed while
the catalog points at it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from export.synthetic import random_track
from runtime.catalog.npz import NpzCatalog
from runtime.manifest import RANDOM_WEIGHTS_NOTE
from tests.runtime.audio.test_ffmpeg import encode

REPOSITORY = Path(__file__).resolve().parent.parent

# name, rate, channels, soundfile format
LIBRARY = [
    ("Jazz/Bill Evans – Peace Piece.flac", 96_000, 2, "FLAC"),
    ("Jazz/trio take 2.WAV", 8_000, 1, "WAV"),
    ("Électronique/Ça va.ogg", 48_000, 2, "OGG"),
    ("Électronique/deep/låt.mp3", 44_100, 2, "MP3"),
    ("Pop/song.mp3", 22_050, 1, "MP3"),
    ("Pop/Surround Mix.wav", 48_000, 5, "WAV"),
    ("Field/rain.aiff", 32_000, 1, "AIFF"),
    ("Field/wind.caf", 16_000, 2, "CAF"),
    ("Field/waves.w64", 11_025, 1, "W64"),
    ("Field/鳥の声.au", 24_000, 1, "AU"),
    # Names as old Windows or Samba tools wrote them: Latin-1 bytes, not UTF-8.
    (os.fsdecode(b"Pop/caf\xe9.wav"), 22_050, 1, "WAV"),
    (os.fsdecode(b"Old drive/Gr\xfc\xdfe.mp3"), 44_100, 2, "MP3"),
]
NOT_UTF8 = LIBRARY[-2:]


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("library")
    for number, (name, rate, channels, kind) in enumerate(LIBRARY):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        mono = random_track(number, 4.0 + number, rate)
        stacked = np.stack([mono * (0.5 + c / 10) for c in range(channels)], axis=1)
        with open(path, "wb") as fh:  # soundfile cannot take a path that is not UTF-8
            sf.write(fh, stacked, rate, format=kind)
    whole = (root / "Pop/song.mp3").read_bytes()
    (root / "Pop/cut short.mp3").write_bytes(whole[: len(whole) // 2])  # truncated: decodes
    (root / "Pop/broken.flac").write_bytes(b"fLaC" + bytes(100))  # does not
    (root / "Pop/._song.mp3").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # macOS sidecar
    (root / "Pop/cover.jpg").write_bytes(b"\xff\xd8\xff")
    return root


def ttmr(*args: str | Path, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runtime", *map(str, args)],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        env=env,
        cwd=cwd,
        timeout=600,
    )


@pytest.mark.slow  # end to end: kept out of the quick -m 'not slow' loop
def test_the_readme_workflow_on_a_library_of_every_format(library, small_model_dir, tmp_path):
    env = {**os.environ, "TTMR_MODEL_DIR": str(small_model_dir)}
    catalog = tmp_path / "catalog"

    first = ttmr("index", library, "--out", catalog, env=env)
    assert first.returncode == 3, first.stderr  # one broken file, listed
    assert "indexed 13 new files; 13 in" in first.stdout  # 11 good names + 2 not UTF-8
    assert "could not read 1 file:" in first.stdout and "broken.flac" in first.stdout
    assert "passed over, not audio files: 1 (.jpg 1)" in first.stdout
    assert "Traceback" not in first.stderr and "Illegal Audio-MPEG-Header" not in first.stderr
    saved = NpzCatalog.load(catalog)
    names = {Path(p).name for p in saved.paths}
    assert names == {Path(name).name for name, *_ in LIBRARY} | {"cut short.mp3"}
    assert np.isfinite(saved.matrix()).all()
    assert all(Path(p).is_file() for p in saved.paths)  # stored exactly: each opens again

    again = ttmr("index", library, "--out", catalog, env=env)
    assert again.returncode == 0, again.stdout  # the broken file is a known failure now
    assert "indexed 0 new files; 13 in" in again.stdout  # resumes: nothing embedded twice
    assert "skipped 1 known failures" in again.stdout

    info = ttmr("catalog", "info", catalog, env=env)
    assert info.returncode == 0, info.stderr
    assert f"model      {small_model_dir.resolve()}" in info.stdout
    assert "ttmrpp, fp32, 16-d" in info.stdout and "rows       13, " in info.stdout
    assert "failures   1 files" in info.stdout and "broken.flac: cannot decode" in info.stdout
    assert "ANN index  none" in info.stdout

    found = ttmr("search", catalog, "a calm solo piano piece in D", "-k", "3", env=env)
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0].split()[:4] == ["rank", "score", "duration", "path"]
    assert [line.split()[0] for line in lines[1:4]] == ["1", "2", "3"]
    assert RANDOM_WEIGHTS_NOTE in found.stderr and RANDOM_WEIGHTS_NOTE not in found.stdout
    assert len({line.index("s  ") for line in lines[1:]}) == 1  # columns aligned

    like = library / "Électronique/Ça va.ogg"
    similar = ttmr("search", catalog, "--like", like, "-k", "1", env=env)
    assert similar.returncode == 0 and "Ça va.ogg" not in similar.stdout  # itself left out

    # Every track, as JSON: the names that are not UTF-8 readable, and exact in path_bytes.
    listed = ttmr("search", catalog, "piano", "--format", "json", "-k", "20", env=env)
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert len(records) == 13 and {"path", "score", "duration", "id"} <= set(records[0])
    exact = {
        os.fsdecode(bytes.fromhex(r["path_bytes"])): r["path"] for r in records if "path_bytes" in r
    }
    assert sorted(exact) == sorted(str((library / name).resolve()) for name, *_ in NOT_UTF8)
    assert {Path(p).name for p in exact.values()} == {"caf\ufffd.wav", "Gr\ufffd\ufffde.mp3"}
    for path in exact:
        nearest = ttmr("search", catalog, "--like", path, "-k", "4", "--format", "json", env=env)
        assert nearest.returncode == 0, nearest.stderr
        hits = json.loads(nearest.stdout)
        assert len(hits) == 4 and all(
            hit.get("path_bytes") != os.fsencode(path).hex() for hit in hits
        )

    rows = tmp_path / "out" / "tracks.npz"
    files = [library / "Jazz/trio take 2.WAV", library / "Pop/Surround Mix.wav"]
    embedded = ttmr("embed-audio", *files, "--out", rows, env=env)
    assert embedded.returncode == 0 and f"wrote 2 × 16 embeddings → {rows}" in embedded.stdout
    with np.load(rows) as saved:
        assert saved["items"].tolist() == [str(f) for f in files]

    texts = tmp_path / "texts.json"
    assert ttmr("embed-text", "piano", "fast techno", "--out", texts, env=env).returncode == 0
    assert [row["item"] for row in json.loads(texts.read_text())] == ["piano", "fast techno"]

    usage = ttmr(env=env)
    assert usage.returncode == 2 and "embed-audio" in usage.stderr and "index" in usage.stderr
    version = ttmr("--version", env=env)
    assert version.returncode == 0 and version.stdout.startswith("ttmr ")
    mistake = ttmr("embed-audio", library, "--out", tmp_path / "x.npy", env=env)
    assert mistake.returncode == 2 and mistake.stderr.count("\n") == 1
    assert "is a folder" in mistake.stderr


@pytest.mark.slow  # quantises with calibration, then searches: half a minute
def test_int8_calibrated_on_the_library_keeps_the_fp32_catalog_searchable_from_anywhere(
    small_model_dir, tmp_path
):
    """``quantize.py`` rewrites manifest.json; the catalog is tied to the fp32 graphs, which
    it leaves alone. The calibration folder holds what a real one does: a 0-byte mp3 and an
    m4a, which the runtime's reader handles as ``index`` does."""
    model = tmp_path / "model"
    shutil.copytree(small_model_dir, model)
    music = tmp_path / "music"
    music.mkdir()
    for number in range(3):
        sf.write(music / f"track {number}.wav", random_track(number, 12.0), 22_050)
    encode(music / "phone recording.m4a", random_track(7, 11.0, 44_100), 44_100)
    (music / "empty.mp3").write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if k != "TTMR_MODEL_DIR"}
    catalog = tmp_path / "catalog"
    first = ttmr("index", music, "--out", catalog, "--model-dir", model, env=env)
    assert first.returncode == 3 and "indexed 4 new files" in first.stdout, first.stderr
    assert "empty.mp3: the file is empty (0 bytes)" in first.stdout

    options = ["--model-dir", model, "--calibration-dir", music, "--calibration-windows", "4"]
    quantize = subprocess.run(
        [sys.executable, "export/quantize.py", *map(str, options)],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        timeout=600,
    )
    assert quantize.returncode == 0, quantize.stderr
    assert "Traceback" not in quantize.stderr
    assert f"skipped {music / 'empty.mp3'}: the file is empty (0 bytes)" in quantize.stdout
    assert f"4 windows from 4 files of {music} (1 unreadable, skipped)" in quantize.stdout

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    relative = os.path.relpath(catalog, elsewhere)
    found = ttmr("search", relative, "a calm piano piece", "-k", "2", env=env, cwd=elsewhere)
    assert found.returncode == 0, found.stderr  # the model the catalog records
    assert len(found.stdout.splitlines()) == 3
    again = ttmr("index", music, "--out", catalog, "--model-dir", model, env=env)
    assert again.returncode == 0 and "indexed 0 new files; 4 in" in again.stdout, again.stdout
    int8 = ttmr("search", catalog, "piano", "--precision", "int8", env=env)
    assert int8.returncode == 2 and int8.stderr.count("\n") == 1
    assert "its vectors are fp32, not int8 (use --precision fp32)" in int8.stderr
    missing = ttmr("search", catalog, "piano", "--model-dir", tmp_path / "nope", env=env)
    assert missing.returncode == 2 and "no such folder" in missing.stderr


@pytest.mark.slow  # end to end: kept out of the quick -m 'not slow' loop
def test_a_renamed_music_folder_keeps_every_row_and_its_files_take_them_back(
    small_model_dir, tmp_path
):
    env = {**os.environ, "TTMR_MODEL_DIR": str(small_model_dir)}
    music, catalog = tmp_path / "music", tmp_path / "catalog"
    (music / "sub").mkdir(parents=True)
    for number, name in enumerate(["a.wav", "b.wav", "sub/c.wav"]):
        sf.write(music / name, random_track(number, 3.0), 22_050)
    assert ttmr("index", music, "--out", catalog, env=env).returncode == 0
    before = {Path(p).name: v for p, v in zip(*rows_of(catalog), strict=True)}

    moved = tmp_path / "music (renamed)"
    music.rename(moved)  # as a drive that is not mounted: every file gone at once
    refused = ttmr("catalog", "prune", catalog, env=env)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "nothing pruned: 3 of 3 rows' files are gone" in refused.stderr
    assert "--force" in refused.stderr and len(NpzCatalog.load(catalog).paths) == 3
    dry = ttmr("catalog", "prune", catalog, "--dry-run", env=env)
    assert dry.returncode == 0 and "would prune 3 rows" in dry.stdout and "sub/c.wav" in dry.stdout
    assert len(NpzCatalog.load(catalog).paths) == 3

    sf.write(moved / "b.wav", random_track(9, 3.0), 22_050)  # changed while away: no move
    index = ttmr("index", moved, "--out", catalog, env=env)
    assert index.returncode == 0, index.stderr
    assert "indexed 1 new file; 4 in" in index.stdout and "2 files moved" in index.stdout
    assert "1 rows point at files that are gone: 'ttmr catalog prune" in index.stdout
    paths, vectors = rows_of(catalog)
    after = {Path(p).name: v for p, v in zip(paths, vectors, strict=True) if str(moved) in p}
    assert sorted(after) == ["a.wav", "b.wav", "c.wav"]  # one row each, none doubled
    for name in ("a.wav", "c.wav"):  # moved rows keep their vectors: nothing embedded again
        np.testing.assert_array_equal(after[name], before[name])
    pruned = ttmr("catalog", "prune", catalog, env=env)  # 1 of 4 gone, the folder there
    assert pruned.returncode == 0 and f"removed {music / 'b.wav'}" in pruned.stdout
    assert "pruned 1 rows of files that are gone; 3 in" in pruned.stdout

    shutil.rmtree(moved)
    assert ttmr("catalog", "prune", catalog, env=env).returncode == 2
    forced = ttmr("catalog", "prune", catalog, "--force", env=env)
    assert forced.returncode == 0 and "pruned 3 rows of files that are gone; 0 in" in forced.stdout


def rows_of(catalog: Path) -> tuple[list[str], list[np.ndarray]]:
    saved = NpzCatalog.load(catalog)
    return saved.paths, saved.embeddings


# What the light install (pip install '.[catalog,formats]', docs/library.md) leaves out.
NOT_IN_THE_LIGHT_INSTALL = (
    "torch",
    "transformers",
    "onnx",
    "librosa",
    "tritonclient",
    "ray",
    "openvino",
    "tensorrt",
    "matplotlib",
)
WITHOUT = f"""
import importlib.abc, runpy, sys
class Absent(importlib.abc.MetaPathFinder):
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {NOT_IN_THE_LIGHT_INSTALL!r}:
            return None
        return self.finder.find_spec(name, path, target)
    def __getattr__(self, name):  # find_distributions: importlib.metadata asks too
        return getattr(self.finder, name)
sys.meta_path[:] = [Absent(finder) for finder in sys.meta_path]
runpy.run_module("runtime", run_name="__main__")
"""


def test_the_light_install_indexes_and_searches_with_an_exported_folder(small_model_dir, tmp_path):
    """The runtime, the catalog and the formats extra alone: no torch, no Triton, no Ray
    (every one of them made impossible to import)."""
    music = tmp_path / "music"
    music.mkdir()
    sf.write(music / "a.wav", random_track(1, 12.0), 22_050)
    encode(music / "b.m4a", random_track(2, 11.0, 44_100), 44_100)
    env = {**os.environ, "TTMR_MODEL_DIR": str(small_model_dir)}

    def light(*args: str | Path) -> subprocess.CompletedProcess:
        command = [sys.executable, "-c", WITHOUT, *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)

    blocked = light("--version")
    assert blocked.returncode == 0, blocked.stderr
    index = light("index", music, "--out", tmp_path / "catalog")
    assert index.returncode == 0 and "indexed 2 new files" in index.stdout, index.stderr
    found = light("search", tmp_path / "catalog", "piano", "--format", "json")
    assert found.returncode == 0, found.stderr
    assert {Path(hit["path"]).name for hit in json.loads(found.stdout)} == {"a.wav", "b.m4a"}
