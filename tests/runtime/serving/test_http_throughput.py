"""Cross-request batching on the full-size demo, against a real ``ttmr serve`` process: 32
concurrent one-query clients get the solo results at a multiple of one client's queries/s,
and 8 concurrent uploads embed about as fast as ``embed_audio`` of the same files in process.
The margins here are generous (a shared machine); scripts/bench.py's serve section reports
the real ratios."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.helpers import cosines
from tests.serve_server import start_server, stop_server

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
# scripts/ is not a package
from bench_index import write_mp3s
from bench_serve import query_rate, upload_rate

pytestmark = pytest.mark.slow
THREADS = 2
TEXT_SPEEDUP = 1.5  # 32 clients against 1 (the bar is 2x; the bench row says what it is)
AUDIO_SHARE = 0.75  # 8 uploads against in-process (the bar is within 10 %)


@pytest.fixture(scope="module")
def served(demo_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("throughput") / "serve.log"
    running = start_server(demo_model_dir, log, "--threads", str(THREADS))
    yield running
    assert stop_server(running) == 0


@pytest.fixture(scope="module")
def model(demo_model_dir):
    from runtime import Embedder

    return Embedder(demo_model_dir, threads=THREADS)


def test_32_concurrent_clients_get_the_solo_results_faster_than_one_client(served, model):
    words = "calm dark bright piano guitar drums strings synth jazz rock techno folk slow fast"
    texts = [" ".join(words.split()[i % 7 : i % 7 + 3 + i % 5]) for i in range(96)]
    query_rate(served.url, texts[:32], 32)  # warm-up
    solo_rate, solo_rows = query_rate(served.url, texts, 1)
    many_rate, many_rows = query_rate(served.url, texts, 32)
    alone = [model.embed_text([text])[0] for text in texts]
    assert cosines(solo_rows, alone).min() >= 0.99999
    assert cosines(many_rows, alone).min() >= 0.99999
    assert many_rate >= TEXT_SPEEDUP * solo_rate, (solo_rate, many_rate)


def test_8_concurrent_uploads_embed_about_as_fast_as_embed_audio_in_process(
    served, model, tmp_path
):
    paths = write_mp3s(tmp_path, 8, 30.0)
    upload_rate(served.url, paths[:2])  # warm-up
    model.embed_audio(paths[:1])
    served_rate, rows = upload_rate(served.url, paths)
    started = time.perf_counter()
    expected = model.embed_audio(paths)
    local_rate = len(paths) / (time.perf_counter() - started)
    assert cosines(rows, expected).min() >= 0.99999
    assert served_rate >= AUDIO_SHARE * local_rate, (served_rate, local_rate)
