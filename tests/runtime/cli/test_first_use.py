"""What a new user tripped over on the command line: sidecar files, tracebacks where one
line belongs, a quiet or noisy index, output files, usage and argument checks."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from export.synthetic import random_track
from runtime.audio.folders import scan_folder
from runtime.catalog.npz import NpzCatalog
from runtime.cli.main import main
from tests.helpers import one_error_line


@pytest.fixture
def model_env(small_model_dir, monkeypatch):
    monkeypatch.setenv("TTMR_MODEL_DIR", str(small_model_dir))
    return small_model_dir


@pytest.fixture
def music(tmp_path) -> Path:
    folder = tmp_path / "music"
    folder.mkdir()
    sf.write(folder / "a.wav", random_track(1, 3.0), 22050)
    sf.write(folder / "b.flac", random_track(2, 2.0), 22050)
    return folder


def apple_double(path: Path) -> None:
    """What macOS writes beside a file on a non-Apple disk: ``._name``, an AppleDouble
    header (magic 0x00051607, version 2) with a bogus resource-fork entry."""
    header = (0x00051607).to_bytes(4, "big") + (0x00020000).to_bytes(4, "big") + bytes(16)
    entry = (2).to_bytes(4, "big") + (4096).to_bytes(4, "big") + (10**6).to_bytes(4, "big")
    (path.parent / f"._{path.name}").write_bytes(header + (1).to_bytes(2, "big") + entry)


def test_a_macos_sidecar_neither_breaks_the_real_file_nor_is_indexed(
    music, model_env, tmp_path, capsys
):
    song = music / "Pop" / "song.mp3"
    song.parent.mkdir()
    sf.write(song, random_track(3, 3.0), 22050)
    apple_double(song)
    (music / ".hidden.wav").write_bytes((music / "a.wav").read_bytes())
    assert sorted(p.name for p in scan_folder(music).files) == ["a.wav", "b.flac", "song.mp3"]
    catalog = tmp_path / "catalog"
    assert main(["index", str(music), "--out", str(catalog)]) == 0
    assert "indexed 3 new files; 3 in" in capsys.readouterr().out


def test_fifos_link_loops_and_links_to_the_same_file_neither_hang_nor_repeat(music):
    os.mkfifo(music / "pipe.wav")  # opening it for reading would wait for a writer
    (music / "loop.wav").symlink_to(music / "loop.wav")
    (music / "dangling.flac").symlink_to(music / "gone.flac")
    (music / "again.wav").symlink_to(music / "a.wav")
    (music / "sub").mkdir()
    (music / "sub" / "up").symlink_to(music)  # a folder loop
    scan = scan_folder(music)
    assert [p.name for p in scan.files] == ["a.wav", "b.flac"]
    assert scan.skipped == {".wav": 2, ".flac": 1}


def test_index_scans_every_extension_libsndfile_decodes(model_env, tmp_path, capsys):
    folder = tmp_path / "formats"
    folder.mkdir()
    for name, kind in [("x.caf", "CAF"), ("y.W64", "W64"), ("z.au", "AU"), ("w.AIFF", "AIFF")]:
        sf.write(folder / name, random_track(4, 1.0), 22050, format=kind)
    (folder / "cover.jpg").write_bytes(b"\xff\xd8")
    (folder / "notes.txt").write_text("x")
    (folder / "more.txt").write_text("y")
    assert main(["index", str(folder), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "indexed 4 new files; 4 in" in out
    assert "passed over, not audio files: 3 (.txt 2, .jpg 1)" in out


def test_index_progress_counts_seconds_of_audio_and_decoder_notes_stay_off_it(
    model_env, tmp_path, capfd
):
    folder = tmp_path / "music"
    folder.mkdir()
    sf.write(folder / "clean.mp3", random_track(5, 12.0, 44100), 44100)
    data = bytearray((folder / "clean.mp3").read_bytes())
    for offset in range(20000, 40000, 997):  # damage that makes libmpg123 resync, noisily
        data[offset : offset + 4] = b"\xff\xfb\xff\xff"
    (folder / "damaged.mp3").write_bytes(bytes(data))
    assert main(["index", str(folder), "--out", str(tmp_path / "c")]) == 0
    captured = capfd.readouterr()
    assert "Illegal Audio-MPEG-Header" not in captured.err + captured.out
    assert "indexing (seconds of audio)" in captured.err and "/24.0" in captured.err


def test_an_earlier_npz_catalog_is_refused_with_the_command_that_converts_it(
    music, model_env, tmp_path, capsys
):
    catalog = tmp_path / "old.npz"
    np.savez(catalog, paths=np.array(["x.wav"]), durations=np.ones(1), embeddings=np.ones((1, 16)))
    assert main(["index", str(music), "--out", str(catalog)]) == 2
    assert f"convert it once with 'ttmr catalog import {catalog} --out" in one_error_line(capsys)
    assert main(["search", str(catalog), "piano"]) == 2
    assert "ttmr catalog import" in one_error_line(capsys)


def test_index_into_a_folder_of_other_files_is_one_line_and_adds_nothing(
    music, model_env, tmp_path, capsys
):
    target = tmp_path / "documents"
    target.mkdir()
    (target / "letter.txt").write_text("not a catalog")
    assert main(["index", str(music), "--out", str(target)]) == 2
    assert "holds other files and no catalog" in one_error_line(capsys)
    assert [p.name for p in target.iterdir()] == ["letter.txt"]


def test_a_catalog_that_cannot_be_created_or_written_is_one_line(
    music, model_env, tmp_path, capsys, monkeypatch
):
    (tmp_path / "file").write_text("x")
    assert main(["index", str(music), "--out", str(tmp_path / "file" / "c")]) == 2
    assert "cannot create catalog" in one_error_line(capsys)

    from lancedb.table import LanceTable

    def refuse(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(LanceTable, "add", refuse)
    assert main(["index", str(music), "--out", str(tmp_path / "c")]) == 2
    assert os.strerror(errno.ENOSPC) in one_error_line(capsys)


def test_outputs_in_a_missing_folder_are_written_with_the_usual_permissions(
    music, model_env, tmp_path, capsys
):
    out = tmp_path / "new" / "folder" / "rows.npy"
    assert main(["embed-audio", str(music / "a.wav"), "--out", str(out)]) == 0
    assert np.load(out).shape == (1, 16)
    catalog = tmp_path / "other" / "catalog"
    assert main(["index", str(music), "--out", str(catalog)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(catalog.stat().st_mode) == 0o777 & ~umask


def test_embed_outputs_keep_which_row_is_which_item(music, model_env, tmp_path):
    files = [str(music / "b.flac"), str(music / "a.wav")]
    assert main(["embed-audio", *files, "--out", str(tmp_path / "a.npz")]) == 0
    with np.load(tmp_path / "a.npz") as saved:
        assert saved["items"].tolist() == files and saved["embeddings"].shape == (2, 16)
    assert main(["embed-text", "piano", "drums", "--out", str(tmp_path / "t.json")]) == 0
    listed = json.loads((tmp_path / "t.json").read_text())
    assert [row["item"] for row in listed] == ["piano", "drums"]
    assert len(listed[0]["embedding"]) == 16


def test_an_unknown_output_format_is_refused_before_any_work(model_env, tmp_path, capsys):
    assert main(["embed-text", "piano", "--out", str(tmp_path / "x.txt")]) == 2
    assert "unknown format '.txt'; use one of .npy, .npz, .json" in one_error_line(capsys)
    assert not list(tmp_path.iterdir())


def test_no_command_prints_the_usage_and_the_commands(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ttmr")
    for command in ("embed-audio", "embed-text", "index", "search", "eval"):
        assert command in err


def test_version_is_printed(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("ttmr 0.")


@pytest.mark.parametrize("flag", ["--threads", "--batch-size"])
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_threads_and_batch_size_below_one_are_refused(model_env, tmp_path, capsys, flag, value):
    assert main(["embed-text", "x", "--out", str(tmp_path / "x.npy"), flag, value]) == 2
    assert f"argument {flag}:" in one_error_line(capsys)


@pytest.mark.parametrize("query", ["", "   "])
def test_an_empty_search_query_is_refused(music, model_env, tmp_path, capsys, query):
    assert main(["search", str(tmp_path / "c"), query]) == 2
    assert "the text query is empty" in one_error_line(capsys)


def test_embed_audio_of_a_folder_points_to_index(music, model_env, tmp_path, capsys):
    assert main(["embed-audio", str(music), "--out", str(tmp_path / "x.npy")]) == 2
    assert "is a folder: pass audio files, or use 'ttmr index" in one_error_line(capsys)


def test_ctrl_c_during_index_exits_130_saying_what_was_saved(model_env, tmp_path):
    folder = tmp_path / "music"
    folder.mkdir()
    for number in range(40):
        sf.write(folder / f"{number:02d}.wav", random_track(number, 25.0), 22050)
    catalog = tmp_path / "c"
    command = [sys.executable, "-m", "runtime", "index", str(folder), "--out", str(catalog)]
    env = {**os.environ, "TTMR_MODEL_DIR": str(model_env)}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    versions = catalog / "tracks.lance" / "_versions"
    while time.monotonic() < deadline:  # until the first chunk is saved (version 2)
        if len(list(versions.glob("*.manifest")) if versions.is_dir() else []) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "ttmr: interrupted;" in err and "re-run to resume" in err
    saved_rows = len(NpzCatalog.load(catalog).paths)  # whole, and what it says it holds
    assert f"({saved_rows} in {catalog})" in err
    assert saved_rows % 8 == 0 and 8 <= saved_rows < 40
