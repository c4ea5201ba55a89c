"""The bench's ``serve`` section: ``ttmr serve`` as its clients feel it, on loopback, in its own
process, at the bench's profile (precision and backend). Text: queries/s of one client sending
one-query requests in sequence against 32 clients sending them at once (what cross-request
batching buys), beside the text graph's own ceiling (in process, 32 sentences in one call
against one at a time): batching can raise a server's rate no further than that, plus the
per-request work it overlaps. Audio: files/s of 8 concurrent uploads of 30-s MP3s (decoding
included) against ``embed_audio`` of the same files in this process. Rates are medians of
rounds taken in turns, so a busy machine slows both.

The text clients are the standard library's ``http.client``, one keep-alive connection per
client thread: on loopback they share the server's cores, and 32 threads of a heavier client
(httpx) took a quarter of a 2-core machine, which real clients on other machines do not."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(model_dir: Path, profile: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """``python -m runtime serve`` with the ``profile`` options (threads, precision,
    backend) on a free loopback port, once ``/healthz`` answers."""
    port = free_port()
    command = [sys.executable, "-m", "runtime", "serve", "--model-dir", str(model_dir)]
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*command, *profile, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"ttmr serve did not start: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(60)


def query_rate(url: str, texts: list[str], clients: int) -> tuple[float, np.ndarray]:
    """Queries/s of ``clients`` each sending its share of ``texts``, one per request, in
    sequence; and each text's row, in order."""
    rows: list = [None] * len(texts)

    where = urlsplit(url)
    headers = {"Content-Type": "application/json"}

    def client(first: int) -> None:
        connection = http.client.HTTPConnection(where.hostname, where.port, timeout=300)
        try:
            for index in range(first, len(texts), clients):
                body = json.dumps({"input": texts[index]})
                connection.request("POST", "/v1/embeddings", body, headers)
                response = connection.getresponse()
                answer = json.loads(response.read())
                if response.status != 200:
                    raise RuntimeError(f"/v1/embeddings: {response.status} {answer}")
                rows[index] = answer["data"][0]["embedding"]
        finally:
            connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return len(texts) / (time.perf_counter() - started), np.asarray(rows, np.float32)


def upload_rate(url: str, paths: list[Path]) -> tuple[float, np.ndarray]:
    """Files/s of one concurrent upload per file, and each file's row, in order."""

    def upload(path: Path) -> list[float]:
        with httpx.Client(base_url=url, timeout=600) as http, open(path, "rb") as fh:
            response = http.post("/v1/audio/embeddings", files={"file": (path.name, fh)})
            return response.json()["data"][0]["embedding"]

    started = time.perf_counter()
    with ThreadPoolExecutor(len(paths)) as pool:
        rows = list(pool.map(upload, paths))
    return len(paths) / (time.perf_counter() - started), np.asarray(rows, np.float32)


def graph_rates(model, texts: list[str]) -> tuple[float, float]:
    """Queries/s of the text graph in process: one sentence per ``embed_text`` call, and 32
    per call (batched as the server's gathered calls are, by the Embedder's batch size)."""
    started = time.perf_counter()
    for text in texts:
        model.embed_text([text])
    alone = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    for first in range(0, len(texts), 32):
        model.embed_text(texts[first : first + 32])
    return alone, len(texts) / (time.perf_counter() - started)


def serve_section(
    model_dir: Path,
    threads: int,
    texts: list[str],
    precision: str = "fp32",
    backend: str = "auto",
    rounds: int = 3,
) -> dict:
    """The rates above (each client's queries drawn from ``texts``), and the cosine of the
    served rows to the in-process ones."""
    from runtime import Embedder
    from scripts.bench_index import write_mp3s

    model = Embedder(model_dir, threads=threads, precision=precision, backend=backend)
    profile = ["--threads", str(threads), "--precision", precision, "--backend", backend]
    with tempfile.TemporaryDirectory() as scratch:
        paths = write_mp3s(Path(scratch), 8, 30.0)
        process, url = start(model_dir, profile, Path(scratch) / "serve.log")
        try:
            query_rate(url, texts[:32], 32)  # warm-up: sessions, first-call allocations
            upload_rate(url, paths[:2])
            model.embed_audio(paths[:1])
            times: dict[str, list[float]] = {"1 client": [], "32 clients": []}
            times |= {"graph, 1 a call": [], "graph, 32 a call": []}
            times |= {"8 uploads": [], "in process": []}
            for _ in range(rounds):
                solo, solo_rows = query_rate(url, texts, 1)
                many, many_rows = query_rate(url, texts, 32)
                alone, batched = graph_rates(model, texts)
                uploads, upload_rows = upload_rate(url, paths)
                started = time.perf_counter()
                in_process = model.embed_audio(paths)
                local = len(paths) / (time.perf_counter() - started)
                rates = (solo, many, alone, batched, uploads, local)
                for name, rate in zip(times, rates, strict=True):
                    times[name].append(rate)
        finally:
            stop(process)
    rates = {name: statistics.median(values) for name, values in times.items()}
    expected = model.embed_text(texts)
    return {
        "queries": len(texts),
        "threads": threads,
        "precision": model.precision,
        "backend": model.backend,
        "rates": rates,
        "text_ratio": rates["32 clients"] / rates["1 client"],
        "graph_ratio": rates["graph, 32 a call"] / rates["graph, 1 a call"],
        "audio_ratio": rates["8 uploads"] / rates["in process"],
        "cosine_min": float(
            min(cosine_min(solo_rows, expected), cosine_min(many_rows, expected)),
        ),
        "audio_cosine_min": cosine_min(upload_rows, in_process),
        "cores": os.cpu_count(),
    }


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    dots = (a * b).sum(axis=1)
    return float((dots / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def serve_lines(result: dict) -> str:
    rates = result["rates"]
    return "\n".join(
        [
            f"| ttmr serve, {result.get('backend', 'auto')} {result.get('precision', 'fp32')} "
            "| rate | ratio |",
            "|---|---:|---:|",
            f"| text, 1 client in sequence | {rates['1 client']:.1f} q/s | 1.00x |",
            f"| text, 32 concurrent clients | {rates['32 clients']:.1f} q/s | "
            f"{result['text_ratio']:.2f}x |",
            f"| text graph in process, 1 sentence a call | {rates['graph, 1 a call']:.1f} q/s "
            "| 1.00x |",
            f"| text graph in process, 32 sentences a call | {rates['graph, 32 a call']:.1f} "
            f"q/s | {result['graph_ratio']:.2f}x |",
            f"| audio, embed_audio in process (8 × 30-s MP3) | {rates['in process']:.2f} "
            "files/s | 1.00x |",
            f"| audio, 8 concurrent uploads | {rates['8 uploads']:.2f} files/s | "
            f"{result['audio_ratio']:.2f}x |",
            f"(cosine to in-process rows: text min {result['cosine_min']:.6f}, audio min "
            f"{result['audio_cosine_min']:.6f})",
        ]
    )
