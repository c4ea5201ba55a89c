"""The bench's ``index`` section: ``ttmr index`` as a user feels it, on a folder of synthetic
MP3 files (decoding, resampling and the catalog included, decoding in background threads
while the model runs), against the same profile's graphs alone on the same, already
decoded windows. It prints what decoding and resampling cost one core per file beside the
rates, since they compete with the model for the same cores."""

from __future__ import annotations

import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

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
    from runtime.audio import load_track
    from runtime.cli import main

    model = Embedder(model_dir, threads=threads, precision=precision, backend=backend)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "music"
        folder.mkdir()
        paths = write_mp3s(folder, files, seconds)
        decode = []
        tracks = []
        for index, path in enumerate(paths):
            started = time.perf_counter()
            tracks.append(load_track(index, path, None, model.preprocessing))
            decode.append(time.perf_counter() - started)
        windows = sum(len(track.windows) for track in tracks)
        model.embed_tracks(tracks[:1])  # warm-up: sessions loaded, first-call allocations
        started = time.perf_counter()
        model.embed_tracks(tracks)
        graph_seconds = time.perf_counter() - started
        command = ["index", str(folder), "--out", str(Path(scratch) / "catalog")]
        command += ["--model-dir", str(model_dir), "--threads", str(threads)]
        command += ["--precision", precision, "--backend", backend]
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(command)
        index_seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"ttmr index exited {code}")
    result = {
        "profile": model.describe(),
        "files": files,
        "seconds_per_file": seconds,
        "windows": windows,
        "graph_windows_per_s": windows / graph_seconds,
        "index_windows_per_s": windows / index_seconds,
        "decode_ms_per_file_one_core": 1e3 * statistics.median(decode),
    }
    result["index_share_of_graph"] = result["index_windows_per_s"] / result["graph_windows_per_s"]
    return result


def index_lines(result: dict) -> str:
    return (
        f"ttmr index on {result['files']} synthetic {result['seconds_per_file']:g}-s MP3s "
        f"({result['profile']}): {result['index_windows_per_s']:.2f} windows/s, "
        f"{100 * result['index_share_of_graph']:.0f}% of the graphs alone "
        f"({result['graph_windows_per_s']:.2f} windows/s); decoding + resampling one file: "
        f"{result['decode_ms_per_file_one_core']:.0f} ms of one core"
    )
