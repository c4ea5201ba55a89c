"""Cross-request batching for ``ttmr serve``: the sentences and decoded tracks of concurrent
requests are gathered into the Embedder calls it already makes (sentences of many requests
in one ``embed_text``, windows of many uploads in one ``embed_windows``), so concurrency
raises throughput instead of queueing one small graph call behind another.

One worker thread runs every graph call (the graphs use all cores themselves). It takes the
oldest waiting job and every other waiting job of the same kind and space, up to the batch
size in windows, or ``TEXT_CALLS`` times it in sentences. While fewer rows are waiting, and
requests that announced themselves are still decoding or the last call served several
requests (whose clients are sending their next), it waits for more: at most ``wait``
seconds, and for the next requests at most half as long as the last call of their kind
took. A lone client's requests never wait."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from runtime.audio.reading import Track
from runtime.batching import means
from runtime.embedder import Embedder, check_space

# Sentences are gathered for up to this many graph calls of the batch size: embed_text sorts
# them by length first, so each call pads less than a call of the first sentences to arrive.
TEXT_CALLS = 4


class Busy(Exception):
    """More requests are waiting than the server takes (the client should retry later)."""


@dataclass
class AudioRows:
    """One request's tracks: the mean row of each, and (when asked) every window's row."""

    tracks: np.ndarray  # [tracks, D]
    windows: list[np.ndarray] | None  # per track, [its windows, D]


@dataclass
class Job:
    kind: str  # "text" or "audio"
    space: str
    items: Sequence  # sentences, or Tracks
    rows: int  # sentences, or windows
    with_windows: bool = False
    future: Future = field(default_factory=Future)

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.space


class Gatherer:
    """Runs the graph calls of all requests of one ``Embedder`` in one thread, gathered.

    ``on_batch(kind, jobs, rows)`` is told each gathered call (the server's metrics)."""

    def __init__(
        self,
        model: Embedder,
        wait: float = 0.05,
        max_pending: int = 256,
        on_batch: Callable[[str, int, int], None] | None = None,
    ):
        self.model = model
        self.wait = wait
        self.max_pending = max_pending
        self.on_batch = on_batch
        self.jobs: deque[Job] = deque()
        self.coming = 0  # requests decoding their uploads, whose windows will follow
        self.gathered = 0  # requests in the last call: more than one, and more will follow
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)  # the last call's, by key
        self.closing = False
        self.ready = threading.Condition()
        self.thread = threading.Thread(target=self.work, name="ttmr-gather", daemon=True)
        self.thread.start()

    def pending(self) -> int:
        """Jobs waiting for the worker (the queue depth)."""
        return len(self.jobs)

    def text(self, texts: list[str], space: str) -> Future:
        """Future of ``[len(texts), D]``, not normalised."""
        check_space(space)
        return self.submit(Job("text", space, texts, len(texts)))

    def audio(self, tracks: list[Track], space: str, with_windows: bool = False) -> Future:
        """Future of the tracks' ``AudioRows``, not normalised."""
        check_space(space)
        windows = sum(len(track.windows) for track in tracks)
        return self.submit(Job("audio", space, tracks, windows, with_windows))

    @contextlib.contextmanager
    def announced(self) -> Iterator[None]:
        """Around the decoding of a request's uploads: the worker may wait for its windows."""
        with self.ready:
            self.coming += 1
        try:
            yield
        finally:
            with self.ready:
                self.coming -= 1
                self.ready.notify()

    def submit(self, job: Job) -> Future:
        with self.ready:
            if self.closing:
                raise Busy("the server is shutting down")
            if len(self.jobs) >= self.max_pending:
                raise Busy(f"{len(self.jobs)} requests are waiting already; retry shortly")
            self.jobs.append(job)
            self.ready.notify()
        return job.future

    def close(self) -> None:
        """Finish every waiting job, then stop the worker."""
        with self.ready:
            self.closing = True
            self.ready.notify()
        self.thread.join()

    def take(self) -> list[Job] | None:
        """The next gathered jobs (oldest first), or None once closed and drained."""
        with self.ready:
            while not self.jobs and not self.closing:
                self.ready.wait()
            if not self.jobs:
                return None
            key = self.jobs[0].key
            most = self.model.batch_size * (TEXT_CALLS if key[0] == "text" else 1)
            # For clients sending their next request, at most half a call of this kind.
            patience = self.wait if self.coming else min(self.wait, self.seconds[key] / 2)
            deadline = time.monotonic() + patience
            while (
                (self.coming or self.gathered > 1)
                and not self.closing
                and sum(job.rows for job in self.jobs if job.key == key) < most
                and (left := deadline - time.monotonic()) > 0
            ):
                self.ready.wait(left)
            chosen, rows = [], 0
            for job in list(self.jobs):
                if job.key == key and (not chosen or rows + job.rows <= most):
                    chosen.append(job)
                    rows += job.rows
                    self.jobs.remove(job)
            self.gathered = len(chosen)
            return chosen

    def work(self) -> None:
        while (jobs := self.take()) is not None:
            jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if not jobs:
                continue
            started = time.monotonic()
            try:
                results = self.run(jobs)
            except Exception as err:  # every request of the call learns why
                for job in jobs:
                    job.future.set_exception(err)
                continue
            self.seconds[jobs[0].key] = time.monotonic() - started
            for job, result in zip(jobs, results, strict=True):
                job.future.set_result(result)

    def run(self, jobs: list[Job]) -> list:
        kind, space = jobs[0].key
        rows = sum(job.rows for job in jobs)
        if self.on_batch:
            self.on_batch(kind, len(jobs), rows)
        if kind == "text":
            texts = [text for job in jobs for text in job.items]
            found = self.model.embed_text(texts, space=space)
            return np.split(found, np.cumsum([job.rows for job in jobs])[:-1])
        tracks = [track for job in jobs for track in job.items]
        windows = self.model.embed_windows(tracks, space)
        results, first_track, first_window = [], 0, 0
        for job in jobs:
            mine = tracks[first_track : first_track + len(job.items)]
            rows_of_job = windows[first_window : first_window + job.rows]
            per_track = None
            if job.with_windows:
                ends = np.cumsum([len(track.windows) for track in mine])[:-1]
                per_track = np.split(rows_of_job, ends)
            results.append(AudioRows(means(rows_of_job, mine), per_track))
            first_track += len(job.items)
            first_window += job.rows
        return results
