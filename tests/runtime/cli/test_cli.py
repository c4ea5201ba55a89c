"""The command line: embed, index (resuming, reporting unreadable files), search, exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import runtime.audio.reading
import runtime.embedder
from export.synthetic import random_track
from runtime.catalog.npz import NpzCatalog
from runtime.cli.main import main
from runtime.manifest import RANDOM_WEIGHTS_NOTE
from tests.helpers import one_error_line


@pytest.fixture
def music(tmp_path):
    folder = tmp_path / "music"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "a.wav", random_track(1, 12.0), 22050)
    sf.write(folder / "b.flac", random_track(2, 4.0, 44100), 44100)
    sf.write(folder / "sub" / "c.ogg", random_track(3, 21.0), 22050)
    (folder / "sub" / "broken.wav").write_bytes(b"RIFF....WAVEnot really audio")
    (folder / "notes.txt").write_text("not audio, not an audio extension either")
    return folder


@pytest.fixture
def model_env(small_model_dir, monkeypatch):
    monkeypatch.setenv("TTMR_MODEL_DIR", str(small_model_dir))
    return small_model_dir


def test_index_reports_the_corrupt_file_and_resumes(music, model_env, tmp_path, capsys):
    catalog = tmp_path / "catalog"
    assert main(["index", str(music), "--out", str(catalog)]) == 3  # one file unreadable
    out = capsys.readouterr().out
    assert "indexed 3 new files; 3 in" in out
    assert "could not read 1 file:" in out and "broken.wav" in out
    assert "passed over, not audio files: 1 (.txt 1)" in out
    rows = NpzCatalog.load(catalog)
    assert sorted(os.path.basename(p) for p in rows.paths) == ["a.wav", "b.flac", "c.ogg"]
    assert rows.matrix().shape == (3, 16)
    np.testing.assert_allclose(sorted(rows.durations), [4.0, 12.0, 21.0], atol=1e-3)
    assert main(["index", str(music), "--out", str(catalog)]) == 0  # nothing new failed
    out = capsys.readouterr().out
    assert "indexed 0 new files; 3 in" in out and "skipped 1 known failures" in out
    shutil.copy(music / "a.wav", music / "sub" / "d.wav")
    assert main(["index", str(music), "--out", str(catalog)]) == 0
    assert "indexed 1 new file; 4 in" in capsys.readouterr().out
    (music / "sub" / "broken.wav").write_bytes(b"RIFF....WAVEstill not audio, and longer")
    assert main(["index", str(music), "--out", str(catalog)]) == 3  # changed: tried again
    assert "could not read 1 file:" in capsys.readouterr().out


def test_search_by_text_and_by_example_prints_a_table(music, model_env, tmp_path, capsys):
    catalog = tmp_path / "catalog"
    main(["index", str(music), "--out", str(catalog)])
    capsys.readouterr()
    assert main(["search", str(catalog), "a calm piano piece", "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["rank", "score", "duration", "path"]
    assert [line.split()[0] for line in lines[1:3]] == ["1", "2"]
    assert main(["search", str(catalog), "--like", str(music / "a.wav"), "-k", "3"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert sorted(Path(row.split()[3]).name for row in rows) == ["b.flac", "c.ogg"]  # not itself
    outside = shutil.copy(music / "a.wav", tmp_path / "a copy.wav")  # not in the catalog
    assert main(["search", str(catalog), "--like", str(outside), "-k", "3"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:4]
    assert rows[0].split()[3].endswith("a.wav")  # embedded: a track is most like itself
    assert float(rows[0].split()[1]) == pytest.approx(1.0, abs=1e-5)


def test_embed_commands_write_npy(music, model_env, tmp_path, capsys):
    out = tmp_path / "audio.npy"
    assert (
        main(["embed-audio", str(music / "a.wav"), str(music / "b.flac"), "--out", str(out)]) == 0
    )
    assert np.load(out).shape == (2, 16)
    out = tmp_path / "text.npy"
    assert main(["embed-text", "piano", "drums", "--space", "encoder", "--out", str(out)]) == 0
    assert np.load(out).shape == (2, 32)


@pytest.mark.parametrize(
    "args",
    [
        ["embed-audio", "/nonexistent.wav", "--out", "x.npy"],
        ["search", "/nonexistent", "piano"],
        ["index", "/nonexistent-folder", "--out", "x"],
        ["no-such-command"],
        ["search"],
        ["search", "/nonexistent", "piano", "-k", "0"],
    ],
)
def test_bad_input_exits_2_with_one_line(model_env, args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ttmr: error:") and err.count("\n") == 1


def test_missing_model_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TTMR_MODEL_DIR", raising=False)
    assert main(["embed-text", "x", "--out", str(tmp_path / "x.npy")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_python_dash_m_runtime_is_the_entry_point(model_env, tmp_path):
    env = {**os.environ, "TTMR_MODEL_DIR": str(model_env)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime",
            "embed-audio",
            str(tmp_path / "missing.wav"),
            "--out",
            "x.npy",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("ttmr: error: item 0")


def catalog_names(catalog: Path) -> list[str]:
    """The file names a catalog holds, sorted; its rows must all be finite."""
    rows = NpzCatalog.load(catalog)
    assert np.isfinite(rows.matrix()).all()
    return sorted(os.path.basename(p) for p in rows.paths)


def test_index_lists_a_file_that_crashes_its_decoder_and_goes_on(
    music, model_env, tmp_path, capsys, monkeypatch
):
    """Not only InputErrors: any failure of one file (here a decoder that raises
    MemoryError, as a crafted header once made libsndfile do) is listed, never fatal."""
    real_read = sf.SoundFile.read

    def read(self, *args, **kwargs):
        if str(getattr(self.name, "name", self.name)).endswith("b.flac"):  # a path or a file
            raise MemoryError("Unable to allocate 256. GiB")
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", read)
    catalog = tmp_path / "catalog"
    assert main(["index", str(music), "--out", str(catalog)]) == 3
    out = capsys.readouterr().out
    assert "indexed 2 new files; 2 in" in out
    assert "b.flac: MemoryError: Unable to allocate 256. GiB" in out
    assert catalog_names(catalog) == ["a.wav", "c.ogg"]


def test_index_isolates_a_file_whose_graph_call_fails_or_gives_nan(
    music, model_env, tmp_path, capsys, monkeypatch
):
    """A failing graph call is retried file by file, so only the file that causes it is
    listed; a non-finite row is never written to the catalog."""
    from runtime.embedder import Embedder

    real_embed = Embedder.embed_tracks

    def embed_tracks(self, tracks, space="joint"):
        durations = [round(track.duration) for track in tracks]
        if 12 in durations:  # a.wav
            raise RuntimeError("graph failed")
        rows = real_embed(self, tracks, space)
        if 21 in durations:  # c.ogg
            rows[durations.index(21)] = np.nan
        return rows

    monkeypatch.setattr(Embedder, "embed_tracks", embed_tracks)
    catalog = tmp_path / "catalog"
    assert main(["index", str(music), "--out", str(catalog)]) == 3
    out = capsys.readouterr().out
    assert "a.wav: RuntimeError: graph failed" in out
    assert "c.ogg: the model produced a non-finite embedding" in out
    assert catalog_names(catalog) == ["b.flac"]


def test_non_utf8_command_line_text_is_one_line_exit_2(model_env, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "embed-text", b"caf\xe9", "--out", tmp_path / "x.npy"],
        capture_output=True,
        text=True,
        env={**os.environ, "TTMR_MODEL_DIR": str(model_env)},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("ttmr: error: item 0: the text is not valid Unicode")
    assert done.stderr.count("\n") == 1


def test_search_formats_and_several_queries_in_one_run(music, model_env, tmp_path, capsys):
    catalog = tmp_path / "catalog"
    main(["index", str(music), "--out", str(catalog)])
    capsys.readouterr()
    queries = ["a calm piano piece", "fast techno"]
    assert main(["search", str(catalog), *queries, "-k", "2", "--format", "json"]) == 0
    printed = capsys.readouterr()
    records = json.loads(printed.out)  # the random-weights note went to stderr
    assert RANDOM_WEIGHTS_NOTE in printed.err
    assert [(r["query"], r["rank"]) for r in records] == [(q, n) for q in queries for n in (1, 2)]
    assert all({"path", "score", "duration", "id"} <= set(r) for r in records)
    assert main(["search", str(catalog), *queries, "-k", "3", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 6 and rows[0].keys() == {"query", "rank", "score", "duration", "id", "path"}
    assert {Path(r["path"]).name for r in rows} == {"a.wav", "b.flac", "c.ogg"}
    assert main(["search", str(catalog), *queries, "-k", "1"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == queries[0] and table[3] == "" and table[4] == queries[1]


def test_like_a_catalog_track_uses_its_stored_vector_and_loads_no_model(
    music, model_env, tmp_path, capsys, monkeypatch
):
    """No file decoded, no graph loaded: the query is the row's vector, so it is no slower
    than a text search (which loads the text graph and embeds the text)."""
    catalog = tmp_path / "catalog"
    main(["index", str(music), "--out", str(catalog)])
    track = str(music / "sub" / "c.ogg")
    capsys.readouterr()

    def timed(args: list[str]) -> tuple[float, str]:
        started = time.perf_counter()
        assert main(args) == 0
        return time.perf_counter() - started, capsys.readouterr().out

    text_s = min(timed(["search", str(catalog), "piano", "--format", "json"])[0] for _ in "ab")

    def never(*args, **kwargs):
        raise AssertionError("the query file was decoded or a model loaded")

    monkeypatch.setattr(runtime.embedder.Embedder, "__init__", never)
    monkeypatch.setattr(runtime.audio.reading, "load_track", never)
    like_s, out = min(
        timed(["search", str(catalog), "--like", track, "--format", "json"]) for _ in "ab"
    )
    hits = json.loads(out)
    assert sorted(Path(h["path"]).name for h in hits) == ["a.wav", "b.flac"]  # k others
    assert like_s <= text_s
    by_id = ["search", str(catalog), "--like", hits[0]["id"], "-k", "1", "--format", "json"]
    assert json.loads(timed(by_id)[1])[0]["path"] != hits[0]["path"]


def test_messages_speak_the_command_line(model_env, tmp_path, monkeypatch, capsys):
    assert main(["serach", "x"]) == 2
    assert "unknown command 'serach': did you mean 'search'?" in one_error_line(capsys)
    assert main(["eval"]) == 2
    line = one_error_line(capsys)
    assert "retrieval" in line and "study" in line
    args = ["embed-text", "x", "--out", str(tmp_path / "x.npy")]
    assert main([*args, "--model-dir", str(tmp_path / "no such model")]) == 2
    assert f"--model-dir {str(tmp_path / 'no such model')!r}: no such folder" in one_error_line(
        capsys
    )
    monkeypatch.delenv("TTMR_MODEL_DIR")
    assert main(args) == 2
    assert one_error_line(capsys).endswith("give --model-dir DIR or set TTMR_MODEL_DIR")


def test_lancedb_says_nothing_about_a_forked_child(tmp_path):
    script = (
        "import os, sys\n"
        "from runtime.catalog.store import lancedb_module\n"
        f"lancedb_module().connect({str(tmp_path)!r}).table_names()\n"
        "pid = os.fork()\n"
        "os._exit(0) if pid == 0 else os.waitpid(pid, 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and "fork" not in done.stderr, done.stderr


def test_folders_named_in_bytes_that_are_not_utf8_are_indexed_and_said(model_env, tmp_path):
    music = tmp_path / os.fsdecode(b"m\xfasica")
    music.mkdir()
    with open(music / os.fsdecode(b"caf\xe9.wav"), "wb") as fh:
        sf.write(fh, random_track(1, 2.0), 22050, format="WAV")
    env = {**os.environ, "TTMR_MODEL_DIR": str(model_env)}

    def index(catalog: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "runtime", "index", music, "--out", catalog]
        return subprocess.run(command, capture_output=True, env=env)

    done = index(tmp_path / "catalog")
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
    assert b"indexed 1 new file; 1 in " in done.stdout
    refused = index(tmp_path / os.fsdecode(b"cat\xe1logo"))  # LanceDB needs UTF-8 there
    assert refused.returncode == 2 and refused.stderr.count(b"\n") == 1, refused.stderr
    assert "catalog '" + str(tmp_path) + "/cat\ufffdlogo': LanceDB takes only" in (
        refused.stderr.decode()
    )
