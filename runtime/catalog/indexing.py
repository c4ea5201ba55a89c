"""``ttmr index``: every audio file of a folder into a catalog (``runtime.catalog.store``),
resumable, with progress in seconds of audio. Files decode in background threads while the
model embeds the chunk before; each chunk's rows are appended to the catalog as one commit,
so Ctrl-C, a crash or SIGKILL loses at most the chunks in flight. One file's failure,
whatever it is, costs that file only."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import queue
import signal
import sys
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar

import numpy as np
import soundfile
from tqdm import tqdm

from runtime.audio.ffmpeg import ffmpeg_seconds
from runtime.audio.folders import scan_folder
from runtime.audio.reading import Track
from runtime.catalog.store import (
    Catalog,
    ModelIdentity,
    Row,
    file_digest,
    file_stat,
    refuse_file,
    track_id,
)
from runtime.embedder import Embedder
from runtime.errors import InputError

FILES_PER_CALL = 8  # files embedded together: windows of several tracks share graph calls
DECODERS = 2  # background decoding threads
DECODE_AHEAD = 2 * FILES_PER_CALL  # decoded (or decoding) files waiting for the model, at most
Item = TypeVar("Item")
Result = TypeVar("Result")
Progress = Callable[[Path], object]  # told of each file once it is embedded (or failed)
Failure = tuple[str, str]  # (path, why it has no embedding)


@dataclass
class IndexRun:
    """What one ``index`` run did, for its summary."""

    added: int = 0
    total: int = 0
    failures: list[Failure] = field(default_factory=list)  # new ones, this run
    known_failures: int = 0  # files that failed before, unchanged since: not tried again
    moved: int = 0  # rows taken over by the file they moved to
    missing: int = 0  # rows whose file is gone, after the run
    skipped: Counter[str] = field(default_factory=Counter)
    ann_built: bool = False


class Interrupted(Exception):
    """Ctrl-C during ``index``; the catalog holds every chunk finished before it."""

    def __init__(self, run: IndexRun):
        super().__init__("interrupted")
        self.run = run


@dataclass
class Decoded:
    """One file, stat'ed (before it was read) and decoded."""

    path: Path
    size: int
    mtime_ns: int
    sha256: str  # of the file's content: a file that moves later takes its row along
    track: Track


EmbedFiles = Callable[[list[Path], list[Failure], Progress], Iterator[list[Row]]]


def index_folder(
    model: Embedder,
    music_dir: Path,
    out: Path,
    ann: bool = False,
    embed_files: EmbedFiles | None = None,
    windows: int | None = None,
) -> IndexRun:
    """Embed the files of ``music_dir`` that ``out`` holds no current row of into it;
    ``embed_files`` (default: in this process) turns paths into rows chunk by chunk
    (``runtime.catalog.ray`` on a Ray cluster). ``ann``: build an ANN index at the end.
    ``windows``: embed at most that many evenly spaced windows of each track
    (``spaced_windows``). Files that failed before and have not changed since are not
    tried again; files that moved take their rows along."""
    identity = ModelIdentity.of_model(model)
    refuse_file(out)  # before any graph loads: a wrong --out is one line
    scan = scan_folder(music_dir)  # first: a wrong folder creates no catalog
    # Here, the graphs load while LanceDB imports (about a second each).
    with loading_ahead(model) if embed_files is None else contextlib.nullcontext():
        catalog = Catalog.create(out, identity)
    todo = [path for path in scan.files if catalog.needs(path)]
    run = IndexRun(total=len(catalog), skipped=scan.skipped)
    retry = [path for path in todo if not catalog.failed_before(path)]
    run.known_failures, todo = len(todo) - len(retry), retry
    run.moved = catalog.move(moved_files(catalog, todo))
    todo = [path for path in todo if catalog.needs(path)]
    seconds = {path: header_seconds(path) for path in todo}
    embed = embed_files or (
        lambda paths, failures, done: embed_here(model, paths, failures, done, windows)
    )
    # Native code (libmpg123, FFmpeg, Lance) writes notes to descriptor 2: kept off the bar.
    with native_stderr_silenced() as stderr, ctrl_c_remembered() as pressed:
        with progress(sum(seconds.values()), stderr) as bar:
            remembered = 0
            try:
                for rows in embed(todo, run.failures, lambda path: bar.update(seconds[path])):
                    run.added += catalog.append(rows)  # after every chunk: a re-run resumes
                    catalog.remember_failures(run.failures[remembered:])
                    remembered = len(run.failures)
                    run.total = len(catalog)
                    if pressed.is_set():  # a Ctrl-C that a native call swallowed
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                # It may have landed inside an append, after its commit: count the disk.
                catalog.refresh()
                run.added = sum(not catalog.needs(path) for path in todo)
                run.total = len(catalog)
                raise Interrupted(run) from None
        run.ann_built = catalog.finish(ann)
    run.total = len(catalog)
    run.missing = len(catalog.missing())
    return run


def moved_files(catalog: Catalog, todo: list[Path]) -> dict[str, str]:
    """``old path → new path`` for each new file whose size and content are those of a row
    whose file is gone (a folder renamed or moved); files are hashed only where a size
    matches."""
    gone_by_size: dict[int, list[str]] = defaultdict(list)
    for path in catalog.missing():
        gone_by_size[catalog.known[path][0]].append(path)
    moves: dict[str, str] = {}
    if not gone_by_size:
        return moves
    stored: dict[str, str] = {}
    for path in todo:
        if str(path) in catalog.known:
            continue  # a changed file, not a moved one
        try:
            candidates = [p for p in gone_by_size.get(file_stat(path)[0], []) if p not in moves]
            digest = file_digest(path) if candidates else ""
        except OSError:
            continue  # decoding reports the problem
        for old in candidates:
            if old not in stored:
                stored[old] = catalog.track(track_id(old)).sha256
            if stored[old] == digest:
                moves[old] = str(path)
                break
    return moves


def load_quietly(model: Embedder) -> None:
    """Open the model's audio graphs; a graph that fails to load fails again, with its
    message, where it is first used."""
    with contextlib.suppress(Exception):
        model.load_audio()


@contextlib.contextmanager
def loading_ahead(model: Embedder) -> Iterator[None]:
    """The model's audio graphs load in a thread while the body runs, and have loaded (or
    failed) when it ends: no load outlives the command."""
    thread = threading.Thread(target=load_quietly, args=(model,))
    thread.start()
    try:
        yield
    finally:
        thread.join()


def embed_here(
    model: Embedder,
    paths: list[Path],
    failures: list[Failure],
    done: Progress,
    windows: int | None = None,
) -> Iterator[list[Row]]:
    """Rows chunk by chunk in this process: the next files decode in background threads
    while the model embeds a chunk."""
    decode = functools.partial(decode_file, model, windows=windows)
    loads = in_background(decode, paths, DECODERS, DECODE_AHEAD)
    while chunk := list(itertools.islice(loads, FILES_PER_CALL)):
        tracks = []
        for path, future in chunk:
            try:
                tracks.append(future.result())
            except Exception as err:  # one file must never end the run
                failures.append((str(path), reason(err)))
        rows = interruptible(lambda tracks=tracks: embed_decoded(model, tracks, failures))
        for path, _ in chunk:
            done(path)
        yield rows


def in_background(
    work: Callable[[Item], Result], items: Iterable[Item], workers: int, ahead: int
) -> Iterator[tuple[Item, Future]]:
    """``(item, future of work(item))`` in order, computed by ``workers`` daemon threads at
    most ``ahead`` items before the consumer takes them (bounded memory). Daemon threads,
    so that Ctrl-C is not held up by a file still decoding."""
    jobs: queue.SimpleQueue = queue.SimpleQueue()

    def worker() -> None:
        while (job := jobs.get()) is not None:
            item, future = job
            try:
                future.set_result(work(item))
            except BaseException as err:
                future.set_exception(err)

    for _ in range(workers):
        threading.Thread(target=worker, daemon=True).start()
    pending: deque[tuple[Item, Future]] = deque()

    def submit(item: Item) -> None:
        pending.append((item, Future()))
        jobs.put(pending[-1])

    items = iter(items)
    try:
        for item in itertools.islice(items, ahead):
            submit(item)
        while pending:
            yield pending.popleft()
            for item in itertools.islice(items, 1):
                submit(item)
    finally:
        for _ in range(workers):
            jobs.put(None)


def decode_file(model: Embedder, path: Path, windows: int | None = None) -> Decoded:
    """Stat first: a file changed while it is read is embedded again next time."""
    size, mtime_ns = file_stat(path)
    digest = file_digest(path)
    track = model.load_tracks([path], None)[0]
    if windows is not None:
        track = dataclasses.replace(track, windows=spaced_windows(track.windows, windows))
    return Decoded(path, size, mtime_ns, digest, track)


def spaced_windows(windows: np.ndarray, most: int) -> np.ndarray:
    """At most ``most`` of a track's windows, evenly spaced from the first to the last
    (``index --windows``: a long track's mean from a sample of it)."""
    if len(windows) <= most:
        return windows
    return windows[np.linspace(0, len(windows) - 1, most).round().astype(int)]


def header_seconds(path: Path) -> float:
    """The duration a file's header gives (for the progress bar); 0 where it gives none."""
    try:
        with open(path, "rb") as fh:
            return soundfile.info(fh).duration
    except Exception:  # not libsndfile's format, or broken: decoding says which, later
        return ffmpeg_seconds(path)


def progress(seconds: float, stream: TextIO) -> tqdm:
    """Seconds of audio embedded, out of what the files' headers give."""
    return tqdm(
        total=seconds,
        unit="s",
        unit_scale=True,
        desc="indexing (seconds of audio)",
        file=stream,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
        "[{elapsed}<{remaining}, {rate_fmt}] {postfix}",
    )


@contextlib.contextmanager
def ctrl_c_remembered() -> Iterator[threading.Event]:
    """An event set by Ctrl-C, which still raises KeyboardInterrupt as usual. LanceDB runs
    Python's signal handlers while it waits on its own runtime and may drop the exception
    they raise (seen: an index run that went on to the end and exited 0); the event is not
    dropped. Only the main thread can set a handler: elsewhere the event is never set."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return

    def on_ctrl_c(signum: int, frame: object) -> None:
        pressed.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


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


def embed_decoded(model: Embedder, tracks: list[Decoded], failures: list[Failure]) -> list[Row]:
    """The rows of the decoded files that embed; whatever makes one file fail (a graph
    error, a non-finite row) is added to ``failures`` and the rest go on: a failing chunk
    is retried file by file."""
    try:
        vectors = model.embed_tracks([one.track for one in tracks])
    except Exception as err:  # e.g. a graph error: find the file that causes it
        if len(tracks) == 1:
            failures.append((str(tracks[0].path), reason(err)))
            return []
        return [row for one in tracks for row in embed_decoded(model, [one], failures)]
    rows = []
    for one, vector in zip(tracks, vectors, strict=True):
        if np.isfinite(vector).all():
            rows.append(
                Row(str(one.path), one.track.duration, one.size, one.mtime_ns, vector, one.sha256)
            )
        else:
            failures.append((str(one.path), "the model produced a non-finite embedding"))
    return rows


def embed_chunk(
    model: Embedder, paths: list[Path], failures: list[Failure], windows: int | None = None
) -> list[Row]:
    """Decode and embed ``paths`` in this thread (a Ray worker's chunk)."""
    tracks = []
    for path in paths:
        try:
            tracks.append(decode_file(model, path, windows))
        except Exception as err:  # one file must never end the run
            failures.append((str(path), reason(err)))
    return embed_decoded(model, tracks, failures)


def reason(err: Exception) -> str:
    """What went wrong with one file, for a list that names the file already."""
    if isinstance(err, InputError):
        return err.reason
    return f"{type(err).__name__}: {err}"
