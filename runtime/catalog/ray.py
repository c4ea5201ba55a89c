"""``ttmr index --ray``: the same indexing with Ray Data on a Ray cluster. The driver scans the
folder and skips what the catalog holds, as without Ray; Ray Data sends the remaining paths
to a pool of actors, each with its own ``Embedder`` (one per GPU, else one per
``--ray-cpus`` cores), which decode and embed chunks of files with the code a single
process runs; the driver appends each chunk's rows to the catalog as they come back, so a
run is resumable the same way. Ray is the ``ray`` extra, imported only here."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from runtime.catalog.indexing import FILES_PER_CALL, EmbedFiles, Failure, Progress, embed_chunk
from runtime.catalog.store import Row
from runtime.embedder import Embedder
from runtime.errors import InputError, missing_dependency


def ray_module():
    """Ray, or one line naming the extra that installs it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise missing_dependency("Ray", extra="ray", needed_for="--ray") from None
    return ray


class RayEmbedder:
    """A Ray Data actor: one Embedder, loaded once, embedding chunk after chunk. Every path
    comes back as one row; ``error`` is empty, or says why the file has no embedding."""

    def __init__(self, options: dict, windows: int | None):
        self.model = Embedder(**options)
        self.windows = windows
        self.width = self.model.width("audio", "joint")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(path) for path in batch["path"]]
        failures: list[Failure] = []
        rows = {
            row.path: row
            for row in embed_chunk(self.model, [Path(p) for p in paths], failures, self.windows)
        }
        errors = dict(failures)
        missing = Row("", 0.0, -1, 0, np.zeros(self.width, np.float32))
        done = [rows.get(path, missing) for path in paths]
        return {
            "path": np.array(paths, dtype=object),
            "duration": np.array([row.duration for row in done], np.float64),
            "size": np.array([row.size for row in done], np.int64),
            "mtime_ns": np.array([row.mtime_ns for row in done], np.int64),
            "sha256": np.array([row.sha256 for row in done], dtype=object),
            "vector": np.stack([row.vector for row in done]).astype(np.float32),
            "error": np.array([errors.get(path, "") for path in paths], dtype=object),
        }


def ray_embed_files(
    model: Embedder, address: str | None, cpus_per_worker: int, windows: int | None = None
) -> EmbedFiles:
    """``index_folder``'s ``embed_files`` on Ray at ``address`` (None: the Ray this process
    has already started, else a new local one); ``windows`` as ``index --windows``."""
    ray = ray_module()
    options = {
        "model_dir": str(Path(model.model_dir).resolve()),
        "precision": model.precision,
        "batch_size": model.batch_size,
        "backend": model.backend,
    }

    def embed(paths: list[Path], failures: list[Failure], done: Progress) -> Iterator[list[Row]]:
        if not paths:
            return
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise InputError(f"--ray {address or ''}: cannot reach Ray ({err})") from None
        try:
            yield from run_on_ray(ray, options, windows, cpus_per_worker, paths, failures, done)
        finally:
            if started:
                with contextlib.suppress(Exception):
                    ray.shutdown()

    return embed


def run_on_ray(
    ray,
    options: dict,
    windows: int | None,
    cpus_per_worker: int,
    paths: list[Path],
    failures: list[Failure],
    done: Progress,
) -> Iterator[list[Row]]:
    ray.data.DataContext.get_current().enable_progress_bars = False
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        actors, per_actor = gpus, {"num_gpus": 1}
    else:
        actors = max(1, int(resources.get("CPU", 1)) // cpus_per_worker)
        per_actor = {"num_cpus": cpus_per_worker}
        options = {**options, "threads": cpus_per_worker}
    files = ray.data.from_items([{"path": str(path)} for path in paths])
    rows = files.map_batches(
        RayEmbedder,
        fn_constructor_kwargs={"options": options, "windows": windows},
        batch_size=FILES_PER_CALL,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        **per_actor,
    )
    for batch in rows.iter_batches(batch_size=FILES_PER_CALL, batch_format="numpy"):
        chunk = []
        for i, path in enumerate(batch["path"]):
            done(Path(path))
            if batch["error"][i]:
                failures.append((str(path), str(batch["error"][i])))
                continue
            size, mtime_ns = int(batch["size"][i]), int(batch["mtime_ns"][i])
            duration = float(batch["duration"][i])
            digest = str(batch["sha256"][i])
            chunk.append(Row(str(path), duration, size, mtime_ns, batch["vector"][i], digest))
        yield chunk
