"""The bench's ``serve`` section: ``ttmr serve`` as its clients feel it, on loopback, in its own
process. Text: queries/s of one client sending one-query requests in sequence against 32
clients sending them at once (what cross-request batching buys). Audio: files/s of 8
concurrent uploads of 30-s MP3s (decoding included) against ``embed_audio`` of the same files
in this process. Rates are medians of rounds taken in turns, so a busy machine slows both."""

from __future__ import annotations

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

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(model_dir: Path, threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    """``python -m runtime serve`` on a free loopback port, once ``/healthz`` answers."""
    port = free_port()
    command = [sys.executable, "-m", "runtime", "serve", "--model-dir", str(model_dir)]
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*command, "--threads", str(threads), "--port", str(port)],
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

    def client(first: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            for index in range(first, len(texts), clients):
                body = http.post("/v1/embeddings", json={"input": texts[index]}).json()
                rows[index] = body["data"][0]["embedding"]

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


def serve_section(model_dir: Path, threads: int, texts: list[str], rounds: int = 3) -> dict:
    """The rates above (each client's queries drawn from ``texts``), and the cosine of the
    served rows to the in-process ones."""
    from runtime import Embedder
    from scripts.bench_index import write_mp3s

    model = Embedder(model_dir, threads=threads)
    with tempfile.TemporaryDirectory() as scratch:
        paths = write_mp3s(Path(scratch), 8, 30.0)
        process, url = start(model_dir, threads, Path(scratch) / "serve.log")
        try:
            query_rate(url, texts[:32], 32)  # warm-up: sessions, first-call allocations
            upload_rate(url, paths[:2])
            model.embed_audio(paths[:1])
            times: dict[str, list[float]] = {"1 client": [], "32 clients": []}
            times |= {"8 uploads": [], "in process": []}
            for _ in range(rounds):
                solo, solo_rows = query_rate(url, texts, 1)
                many, many_rows = query_rate(url, texts, 32)
                uploads, upload_rows = upload_rate(url, paths)
                started = time.perf_counter()
                in_process = model.embed_audio(paths)
                local = len(paths) / (time.perf_counter() - started)
                for name, rate in zip(times, (solo, many, uploads, local), strict=True):
                    times[name].append(rate)
        finally:
            stop(process)
    rates = {name: statistics.median(values) for name, values in times.items()}
    expected = model.embed_text(texts)
    return {
        "queries": len(texts),
        "threads": threads,
        "rates": rates,
        "text_ratio": rates["32 clients"] / rates["1 client"],
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
            "| ttmr serve | rate | ratio |",
            "|---|---:|---:|",
            f"| text, 1 client in sequence | {rates['1 client']:.1f} q/s | 1.00x |",
            f"| text, 32 concurrent clients | {rates['32 clients']:.1f} q/s | "
            f"{result['text_ratio']:.2f}x |",
            f"| audio, embed_audio in process (8 × 30-s MP3) | {rates['in process']:.2f} "
            "files/s | 1.00x |",
            f"| audio, 8 concurrent uploads | {rates['8 uploads']:.2f} files/s | "
            f"{result['audio_ratio']:.2f}x |",
            f"(cosine to in-process rows: text min {result['cosine_min']:.6f}, audio min "
            f"{result['audio_cosine_min']:.6f})",
        ]
    )
