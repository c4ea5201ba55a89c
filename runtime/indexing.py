"""``ttmr index``: every audio file of a folder into a catalog, resumable, with progress in
seconds of audio. One file's failure, whatever it is, costs that file only; the catalog is
saved after every chunk, so Ctrl-C (or a crash) loses at most the chunk in flight."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar

import numpy as np
import soundfile
from tqdm import tqdm

from runtime.audio import scan_folder
from runtime.catalog import Catalog
from runtime.embedder import Embedder
from runtime.errors import InputError

FILES_PER_CALL = 8  # files embedded together: windows of several tracks share graph calls
Result = TypeVar("Result")


@dataclass
class IndexRun:
    """What one ``index`` run did, for its summary."""

    added: int = 0
    total: int = 0
    failures: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


class Interrupted(Exception):
    """Ctrl-C during ``index``; the catalog holds every chunk finished before it."""

    def __init__(self, run: IndexRun):
        super().__init__("interrupted")
        self.run = run


def index_folder(model: Embedder, music_dir: Path, out: Path) -> IndexRun:
    """Embed the files of ``music_dir`` that ``out`` does not hold yet into it."""
    catalog = Catalog.load(out, missing_ok=True)
    catalog.check_width(model.width("audio", "joint"), out)
    scan = scan_folder(music_dir)
    known = set(catalog.paths)
    todo = [path for path in scan.files if str(path) not in known]
    run = IndexRun(total=len(catalog.paths), skipped=scan.skipped)
    seconds = {path: header_seconds(path) for path in todo}
    with native_stderr_silenced() as stderr, progress(sum(seconds.values()), stderr) as bar:

        def bar_update(decoded: Path) -> None:
            bar.update(seconds[decoded])

        try:
            for start in range(0, len(todo), FILES_PER_CALL):
                chunk = todo[start : start + FILES_PER_CALL]
                done = interruptible(
                    lambda chunk=chunk: embed_chunk(model, chunk, run.failures, bar_update)
                )
                for path, duration, row in done:
                    catalog.add(str(path), duration, row)
                catalog.save(out)  # after every chunk, so an interrupted run resumes
                run.added += len(done)
                run.total = len(catalog.paths)
        except KeyboardInterrupt:
            raise Interrupted(run) from None
    return run


def header_seconds(path: Path) -> float:
    """The duration a file's header gives (for the progress bar); 0 where it gives none."""
    try:
        with open(path, "rb") as fh:
            return soundfile.info(fh).duration
    except Exception:  # decoding reports the problem properly, later
        return 0.0


def progress(seconds: float, stream: TextIO) -> tqdm:
    return tqdm(
        total=round(seconds),
        unit="s",
        unit_scale=True,
        desc="indexing (seconds of audio)",
        file=stream,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
        "[{elapsed}<{remaining}, {rate_fmt}] {postfix}",
    )


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[TextIO]:
    """Decoders written in C (libmpg123's "Illegal Audio-MPEG-Header" notes) write to file
    descriptor 2 and break the progress bar: while indexing, descriptor 2 goes to
    /dev/null and the bar gets a stream of its own on the real stderr. Problems with a file
    are reported in the summary instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    stream = os.fdopen(os.dup(saved), "w", buffering=1)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield stream
    finally:
        stream.flush()
        os.dup2(saved, 2)
        os.close(saved)
        stream.close()


def interruptible(work: Callable[[], Result]) -> Result:
    """``work()`` in a daemon thread: a graph call cannot be interrupted from Python, but
    waiting for it can, so Ctrl-C ends ``index`` at once (the call's result is dropped)."""
    outcome: Future = Future()

    def run() -> None:
        try:
            outcome.set_result(work())
        except BaseException as err:
            outcome.set_exception(err)

    threading.Thread(target=run, daemon=True).start()
    return outcome.result()


def embed_chunk(
    model: Embedder,
    chunk: list[Path],
    failures: list[str],
    decoded: Callable[[Path], object] = lambda path: None,
) -> list[tuple[Path, float, np.ndarray]]:
    """``(path, duration, joint row)`` of each file of ``chunk`` that embeds; whatever makes
    one file fail (a decoder's crash, a graph error, a non-finite row) is added to
    ``failures`` and the rest go on. A failing chunk is retried file by file. ``decoded``
    hears of each file as it is read, so that progress moves file by file."""
    tracks = []
    for path in chunk:
        try:
            tracks.append((path, model.load_tracks([path], None)[0]))
        except Exception as err:  # one file must never end the run
            failures.append(f"{path}: {reason(err)}")
        decoded(path)
    try:
        rows = model.embed_tracks([track for _, track in tracks])
    except Exception as err:  # e.g. a graph error: find the file that causes it
        if len(tracks) == 1:
            failures.append(f"{tracks[0][0]}: {reason(err)}")
            return []
        return [done for one in tracks for done in embed_chunk(model, [one[0]], failures)]
    embedded = []
    for (path, track), row in zip(tracks, rows, strict=True):
        if np.isfinite(row).all():
            embedded.append((path, track.duration, row))
        else:
            failures.append(f"{path}: the model produced a non-finite embedding")
    return embedded


def reason(err: Exception) -> str:
    """An error without the item label that the one-item calls put before it."""
    if isinstance(err, InputError):
        return str(err).split(": ", 1)[-1]
    return f"{type(err).__name__}: {err}"
