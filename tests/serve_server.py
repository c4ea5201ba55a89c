"""A real ``ttmr serve`` process for the tests: started with ``python -m runtime serve`` on a
free loopback port, waited for until ``/healthz`` answers, stopped with SIGTERM; and the
small music library and catalog that its tests search."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import soundfile as sf

from export.synthetic import random_track

RATE = 22_050


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    url: str
    process: subprocess.Popen
    log: Path

    def client(self, **options) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **options)

    def rss_mb(self) -> float:
        """The server's resident memory."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")


def start_server(model_dir: Path, log: Path, *args: str | Path, timeout: float = 180) -> Served:
    port = free_port()
    command = [sys.executable, "-m", "runtime", "serve", "--model-dir", str(model_dir)]
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port), *map(str, args)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    served = Served(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ttmr serve exited {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{served.url}/healthz", timeout=2).status_code == 200:
                return served
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(served)
    raise AssertionError(f"ttmr serve did not answer in {timeout} s: {log.read_text()}")


def stop_server(served: Served, timeout: float = 60) -> int:
    """SIGTERM, then the exit status (killed, and the test failed, if it hangs)."""
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
    try:
        return served.process.wait(timeout)
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.wait()
        raise AssertionError(f"ttmr serve ignored SIGTERM: {served.log.read_text()}") from None


def write_library(folder: Path, count: int, seconds: float) -> list[Path]:
    """``count`` FLAC tracks of synthetic music, varied names."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        path = folder / f"track {number:02d} – take {number % 3}.flac"
        sf.write(path, random_track(100 + number, seconds, RATE), RATE)
        paths.append(path)
    return paths


def build_catalog(model_dir: Path, music: Path, catalog: Path) -> Path:
    from runtime import Embedder
    from runtime.catalog.indexing import index_folder

    run = index_folder(Embedder(model_dir), music, catalog, False, None)
    assert not run.failures, run.failures
    return catalog
