"""The bench's ``index`` section: ``ttmr index`` as a user feels it, on a folder of synthetic
MP3 files (decoding, resampling and the catalog included, decoding in background threads
while the model runs), in a fresh process, against the same profile's graphs alone on the
same, already decoded windows. Its sustained rate leaves out the start-up (imports, loading
the graphs, opening the catalog), timed as ``ttmr index`` of one of the files alone. It
prints what decoding and resampling cost one core per file beside the rates, since they
compete with the model for the same cores. With ``--index-windows N``, it also times
``ttmr index --windows N`` against the whole-track default on long mixes, with the cosine
of the two embeddings (``windows_section``)."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

MP3_RATE = 44100  # what music files have; the model's rate is reached by resampling


def write_mp3s(folder: Path, count: int, seconds: float) -> list[Path]:
    from export.synthetic import random_track

    paths = []
    for seed in range(count):
        path = folder / f"track{seed:03d}.mp3"
        sf.write(path, 0.5 * random_track(seed, seconds, MP3_RATE), MP3_RATE, format="MP3")
        paths.append(path)
    return paths


def index_section(
    model_dir: Path, threads: int, precision: str, backend: str, files: int, seconds: float
) -> dict:
    """Windows per second of ``ttmr index`` (whole command, model loading included) and of
    the graphs alone, and the decode + resample cost of one file on one core."""
    from runtime import Embedder
    from runtime.audio.reading import load_track

    model = Embedder(model_dir, threads=threads, precision=precision, backend=backend)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "music"
        folder.mkdir()
        paths = write_mp3s(folder, files, seconds)
        decode = []
        tracks = []
        for index, path in enumerate(paths):
            started = time.perf_counter()
            tracks.append(load_track(index, path, None, model.manifest.audio.preprocessing))
            decode.append(time.perf_counter() - started)
        windows = sum(len(track.windows) for track in tracks)
        model.embed_tracks(tracks[:1])  # warm-up: sessions loaded, first-call allocations
        started = time.perf_counter()
        model.embed_tracks(tracks)
        graph_seconds = time.perf_counter() - started
        profile = (model_dir, threads, precision, backend)
        whole = timed_index(folder, Path(scratch) / "catalog", *profile)
        one = Path(scratch) / "one"
        one.mkdir()
        paths[0].rename(one / paths[0].name)
        alone = timed_index(one, Path(scratch) / "catalog1", *profile)
    first = len(tracks[0].windows)
    result = {
        "profile": model.describe(),
        "files": files,
        "seconds_per_file": seconds,
        "windows": windows,
        "graph_windows_per_s": windows / graph_seconds,
        "index_windows_per_s": windows / whole,
        # The rate of the other files: start-up (imports, loading the graphs, the catalog)
        # is what indexing one file alone took.
        # None where noise outweighs the other files' time (a tiny model, a few files).
        "index_sustained_windows_per_s": (windows - first) / (whole - alone)
        if whole > alone
        else None,
        "index_startup_seconds": alone,
        "decode_ms_per_file_one_core": 1e3 * statistics.median(decode),
    }
    for key in ("", "_sustained"):
        rate = result[f"index{key}_windows_per_s"]
        result[f"index{key}_share_of_graph"] = rate and rate / result["graph_windows_per_s"]
    return result


def timed_index(
    folder: Path,
    out: Path,
    model_dir: Path,
    threads: int,
    precision: str,
    backend: str,
    *options: str,
) -> float:
    """Seconds of ``ttmr index`` on ``folder`` in a fresh process, as a user runs it
    (imports and loading the graphs included); ``options`` go on its command line."""
    command = [sys.executable, "-m", "runtime", "index", str(folder), "--out", str(out)]
    command += ["--model-dir", str(model_dir), "--threads", str(threads)]
    command += ["--precision", precision, "--backend", backend, *options]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ttmr index exited {done.returncode}: {done.stderr[-500:]}")
    return time.perf_counter() - started


def index_lines(result: dict) -> str:
    sustained = result["index_sustained_windows_per_s"]
    after = (
        f"{sustained:.2f} windows/s, {100 * result['index_sustained_share_of_graph']:.0f}%"
        if sustained
        else "– (start-up outweighs the rest)"
    )
    return (
        f"ttmr index on {result['files']} synthetic {result['seconds_per_file']:g}-s MP3s "
        f"({result['profile']}): {result['index_windows_per_s']:.2f} windows/s, "
        f"{100 * result['index_share_of_graph']:.0f}% of the graphs alone "
        f"({result['graph_windows_per_s']:.2f} windows/s); after "
        f"{result['index_startup_seconds']:.1f} s of start-up (one file alone): {after}; "
        f"decoding + resampling one file: {result['decode_ms_per_file_one_core']:.0f} ms of "
        "one core"
    )


def write_mix(path: Path, minutes: float, rate: int) -> None:
    """An MP3 of ``minutes`` of distinct one-minute synthetic pieces (a DJ mix: no two
    minutes alike, so a sample of windows is not the whole by construction)."""
    from export.synthetic import random_track

    with sf.SoundFile(path, "w", rate, 1, format="MP3") as out:
        for minute in range(math.ceil(minutes)):
            seconds = min(60.0, minutes * 60 - 60 * minute)
            out.write(0.5 * random_track(100 + minute, seconds, rate))


def windows_section(
    model_dir: Path,
    threads: int,
    precision: str,
    backend: str,
    most: int,
    minutes: tuple[float, ...] = (10, 60),
) -> dict:
    """``ttmr index --windows most`` against ``ttmr index`` (every window) on one mix of
    each length: seconds of each command (a fresh process each) and the cosine between the
    two embeddings of the mix."""
    from runtime.catalog.npz import NpzCatalog

    rows = {}
    profile = (model_dir, threads, precision, backend)
    with tempfile.TemporaryDirectory() as scratch:
        for length in minutes:
            folder = Path(scratch) / f"mix {length:g}"
            folder.mkdir()
            write_mix(folder / "mix.mp3", length, MP3_RATE)
            whole, sampled = Path(scratch) / f"whole {length:g}", Path(scratch) / f"n {length:g}"
            whole_s = timed_index(folder, whole, *profile)
            sampled_s = timed_index(folder, sampled, *profile, "--windows", str(most))
            (a,), (b,) = NpzCatalog.load(whole).embeddings, NpzCatalog.load(sampled).embeddings
            rows[f"{length:g}"] = {
                "whole_s": whole_s,
                "windows_s": sampled_s,
                "speedup": whole_s / sampled_s,
                "cosine": float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))),
            }
    return {"windows": most, "mixes": rows}


def windows_lines(result: dict) -> str:
    return "\n".join(
        f"ttmr index --windows {result['windows']} on a {minutes}-minute mix: "
        f"{row['windows_s']:.1f} s against {row['whole_s']:.1f} s for every window "
        f"({row['speedup']:.2f}x), cosine to the whole-track embedding {row['cosine']:.5f}"
        for minutes, row in result["mixes"].items()
    )
