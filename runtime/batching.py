"""Windows of any tracks → audio-graph calls of exactly ``batch_size`` rows → the mean of
each track's window embeddings. ``runtime.Embedder`` and the Triton audio model both embed
through ``window_rows`` and ``means``, so the server computes what the runtime does.

Rows never affect each other: where a family floors a track's log-mel at a level set by the
whole track (TTMR++), that level is computed first (``track_floors``, by the exported floor
graph) and given to every row, so a long track is split across calls like any other rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from runtime.audio.reading import Track


@dataclass
class Batch:
    """One graph call's feed and, for each of its rows, the track it comes from."""

    feed: dict[str, np.ndarray]
    owners: np.ndarray  # int64 [rows]
    rows: slice  # where these rows sit among all windows, in track order


def batches(
    tracks: Sequence[Track], batch_size: int, floors: Sequence[float] | None = None
) -> Iterator[Batch]:
    """The windows of all ``tracks``, in order, in feeds of ``batch_size`` rows (the last
    may hold fewer); with ``floors`` (one per track) each row also gets its track's floor."""
    counts = [len(track.windows) for track in tracks]
    owners = np.repeat(np.arange(len(tracks)), counts)
    starts = np.concatenate([[0], np.cumsum(counts)])
    for first in range(0, len(owners), batch_size):
        last = min(first + batch_size, len(owners))
        rows = [
            tracks[owner].windows[index - starts[owner]]
            for owner, index in zip(owners[first:last], range(first, last), strict=True)
        ]
        feed = {"waveform": np.stack(rows)}
        if floors is not None:
            feed["floor"] = np.asarray(floors, np.float32)[owners[first:last]]
        yield Batch(feed, owners[first:last], slice(first, last))


# One graph call: a batch → its outputs (one [rows, ...] array per requested output), or
# None where the caller has recorded a failure (Triton fails the rows' requests).
Run = Callable[[Batch], Sequence[np.ndarray] | None]


def window_rows(
    tracks: Sequence[Track],
    batch_size: int,
    run: Run,
    widths: Sequence[int],
    floors: Sequence[float] | None = None,
) -> list[np.ndarray]:
    """For each output (``widths`` gives their sizes), ``[windows of all tracks, D]``: each
    window's row, in track order. Rows of a call ``run`` gave up on are NaN."""
    total = sum(len(track.windows) for track in tracks)
    rows = [np.full((total, width), np.nan, np.float32) for width in widths]
    for batch in batches(tracks, batch_size, floors):
        outputs = run(batch)
        if outputs is not None:
            for where, output in zip(rows, outputs, strict=True):
                where[batch.rows] = output
    return rows


def means(rows: np.ndarray, tracks: Sequence[Track]) -> np.ndarray:
    """``[len(tracks), D]``: the mean of each track's rows of ``rows`` (``window_rows``)."""
    if not tracks:
        return np.zeros((0, rows.shape[1]), np.float32)
    ends = np.cumsum([len(track.windows) for track in tracks], dtype=np.int64)
    return np.stack(
        [
            rows[end - len(track.windows) : end].mean(axis=0)
            for track, end in zip(tracks, ends, strict=True)
        ]
    )


def track_floors(tracks: Sequence[Track], batch_size: int, run: Run) -> np.ndarray:
    """Each track's log-mel floor, ``[len(tracks)]``: the highest of its windows' floors,
    which the floor graph gives per row (the window's maximum − 8) in calls of
    ``batch_size`` rows. A track with rows of a call ``run`` gave up on gets NaN."""
    floors = np.full(len(tracks), -np.inf, np.float32)
    for batch in batches(tracks, batch_size):
        found = run(batch)
        # [rows], or [rows, 1] from a server that has one value per row as dims [1]
        rows = np.nan if found is None else found[0].reshape(len(batch.owners))
        np.maximum.at(floors, batch.owners, rows)
    return floors


def track_groups(tracks: Sequence[Track], most_windows: int | None) -> Iterator[list[Track]]:
    """Consecutive tracks, at most ``most_windows`` windows to a group (a longer track
    alone), so that what is kept per window stays bounded; all in one group for None.
    At least one group, empty for no tracks."""
    group: list[Track] = []
    windows = 0
    for track in tracks:
        if group and most_windows is not None and windows + len(track.windows) > most_windows:
            yield group
            group, windows = [], 0
        group.append(track)
        windows += len(track.windows)
    yield group


def whole_track_feed(windows: np.ndarray, floor: Run | None) -> dict[str, np.ndarray]:
    """The audio graph's feed for the windows of one track in one call, for tools that run
    the graph directly (INT8 calibration, benchmarks); ``floor`` runs the floor graph, None
    for a family without one."""
    feed = {"waveform": windows}
    if floor is not None:
        (track_floor,) = track_floors([Track(windows, 0.0)], len(windows), floor)
        feed["floor"] = np.full(len(windows), track_floor, np.float32)
    return feed
