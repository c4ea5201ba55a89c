"""A new user's first session, scripted: the README's command-line workflow run as a user
runs it (``python -m runtime …`` in a shell), on a library of generated files in every
format libsndfile reads, with odd names, rates and channel counts, a truncated mp3, a
broken file and a macOS sidecar; each command's output and exit code checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from export.synthetic import random_track
from runtime.catalog.npz import NpzCatalog

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
    ("Field/birds.au", 24_000, 1, "AU"),
]


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("library")
    for number, (name, rate, channels, kind) in enumerate(LIBRARY):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        mono = random_track(number, 4.0 + number, rate)
        stacked = np.stack([mono * (0.5 + c / 10) for c in range(channels)], axis=1)
        sf.write(path, stacked, rate, format=kind)
    whole = (root / "Pop/song.mp3").read_bytes()
    (root / "Pop/cut short.mp3").write_bytes(whole[: len(whole) // 2])  # truncated: decodes
    (root / "Pop/broken.flac").write_bytes(b"fLaC" + bytes(100))  # does not
    (root / "Pop/._song.mp3").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # macOS sidecar
    (root / "Pop/cover.jpg").write_bytes(b"\xff\xd8\xff")
    return root


def ttmr(*args: str | Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runtime", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_the_readme_workflow_on_a_library_of_every_format(library, small_model_dir, tmp_path):
    env = {**os.environ, "TTMR_MODEL_DIR": str(small_model_dir)}
    catalog = tmp_path / "catalog"

    first = ttmr("index", library, "--out", catalog, env=env)
    assert first.returncode == 3, first.stderr  # one broken file, listed
    assert "indexed 11 new files; 11 in" in first.stdout
    assert "could not read 1 file:" in first.stdout and "broken.flac" in first.stdout
    assert "passed over, not audio files: 1 (.jpg 1)" in first.stdout
    assert "Traceback" not in first.stderr and "Illegal Audio-MPEG-Header" not in first.stderr
    saved = NpzCatalog.load(catalog)
    names = {Path(p).name for p in saved.paths}
    assert names == {Path(name).name for name, *_ in LIBRARY} | {"cut short.mp3"}
    assert np.isfinite(saved.matrix()).all()

    again = ttmr("index", library, "--out", catalog, env=env)
    assert "indexed 0 new files; 11 in" in again.stdout  # resumes: nothing embedded twice

    found = ttmr("search", catalog, "a calm solo piano piece in D", "-k", "3", env=env)
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0].split()[:4] == ["rank", "score", "duration", "path"]
    assert [line.split()[0] for line in lines[1:4]] == ["1", "2", "3"]
    assert "random weights" in found.stdout

    like = library / "Électronique/Ça va.ogg"
    similar = ttmr("search", catalog, "--like", like, "-k", "1", env=env)
    assert similar.returncode == 0 and "Ça va.ogg" in similar.stdout.splitlines()[1]

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
