"""scripts/bench.py's catalog section: search in a synthetic catalog of ROWS 128-d vectors
(clustered, as embeddings of music are) with the ANN index that ``ttmr index`` builds, timed
per query, and its recall@10 against exact cosine search."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from runtime.catalog.store import Catalog, ModelIdentity, Row

WIDTH = 128
CLUSTERS = 1000
APPEND_ROWS = 100_000  # rows per commit while the catalog is written


def clustered(count: int, seed: int) -> np.ndarray:
    """Vectors around CLUSTERS fixed centres (the same centres for every seed)."""
    centres = np.random.default_rng(0).standard_normal((CLUSTERS, WIDTH)).astype(np.float32)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((count, WIDTH)).astype(np.float32)
    return centres[rng.integers(0, CLUSTERS, count)] + 0.6 * noise


def catalog_section(rows: int, queries: int) -> dict:
    vectors = clustered(rows, seed=1)
    identity = ModelIdentity("synthetic", "fp32", "synthetic", WIDTH)
    with tempfile.TemporaryDirectory() as folder:
        catalog = Catalog.create(Path(folder) / "catalog", identity)
        started = time.perf_counter()
        for start in range(0, rows, APPEND_ROWS):
            block = vectors[start : start + APPEND_ROWS]
            catalog.append(
                [Row(f"/music/{start + i}.m4a", 30.0, 1, 1, v) for i, v in enumerate(block)]
            )
        write_s = time.perf_counter() - started
        started = time.perf_counter()
        catalog.finish(ann=True)
        index_s = time.perf_counter() - started
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        seconds, recalls = [], []
        for query in clustered(queries, seed=2):
            started = time.perf_counter()
            hits = catalog.search(query, 10)
            seconds.append(time.perf_counter() - started)
            exact = {f"/music/{i}.m4a" for i in np.argsort(-(unit @ query))[:10]}
            recalls.append(len(exact & {hit.path for hit in hits}) / 10)
    seconds.sort()
    return {
        "rows": rows,
        "width": WIDTH,
        "write_s": write_s,
        "ann_build_s": index_s,
        "search_ms_p50": 1e3 * statistics.median(seconds),
        "search_ms_p99": 1e3 * seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))],
        "recall_at_10": float(np.mean(recalls)),
    }


def catalog_table(result: dict) -> str:
    return "\n".join(
        [
            "| rows × width | write s | ANN build s | search ms p50 | p99 | recall@10 |",
            "|---|---:|---:|---:|---:|---:|",
            f"| {result['rows']:,} × {result['width']} | {result['write_s']:.0f} "
            f"| {result['ann_build_s']:.0f} | {result['search_ms_p50']:.1f} "
            f"| {result['search_ms_p99']:.1f} | {result['recall_at_10']:.3f} |",
        ]
    )
