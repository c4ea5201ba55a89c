"""A real tritonserver for the tests (``scripts/serve.sh``, the CPU server of the
nvidia-pytriton wheel): starting and stopping it, the processes and shared memory it leaves,
and checks of the configurations ``export/to_triton.py`` writes. The ``server`` fixture in
conftest.py serves a module's ``repository`` fixture with it."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

ROOT = Path(__file__).resolve().parents[1]
ONNX_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.INT64: "TYPE_INT64"}
DATA_TYPES = model_config_pb2.DataType


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


STUB = "triton_python_backend_stub"
REGION = "triton_python_backend_shm_region_"
# The restricted APIs' key: HTTP checks this header, gRPC the metadata Triton prefixes.
ADMIN_HEADERS = {"http": "admin-key", "grpc": "triton-grpc-protocol-admin-key"}


def processes() -> dict[int, tuple[int, str, list[str]]]:
    """pid → (parent pid, state, argv) of every process."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            found[int(entry)] = (int(stat[1]), stat[0], [a.decode(errors="replace") for a in argv])
    return found


def stubs_of(server_pid: int) -> dict[int, str]:
    """The Python-backend stubs a tritonserver started (its pid is their fifth argument),
    alive or orphaned: pid → their shared-memory region."""
    return {
        pid: argv[2]
        for pid, (_, _, argv) in processes().items()
        if len(argv) > 5 and argv[0].endswith(STUB) and argv[5] == str(server_pid)
    }


def memory_mib(pids: list[int], entry: str) -> float:
    """The sum of a /proc/PID/status memory entry (VmRSS, VmHWM: its peak) over ``pids``."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in status if line.startswith(entry + ":"))
    return total / 1024


def regions() -> set[str]:
    return {name for name in os.listdir("/dev/shm") if name.startswith(REGION)}


def free_ports() -> dict[str, str]:
    return {name: str(free_port()) for name in ("HTTP_PORT", "GRPC_PORT", "METRICS_PORT")}


@dataclass
class Server:
    process: subprocess.Popen
    http: str
    grpc: str
    log: Path
    key: str
    clients: dict = field(default_factory=dict)

    def admin(self, protocol: str) -> dict[str, str]:
        """The header that opens the restricted APIs (statistics, logging, shared memory…)."""
        return {ADMIN_HEADERS[protocol]: self.key}

    def url(self, protocol: str) -> str:
        return self.http if protocol == "http" else self.grpc

    def client(self, protocol: str):
        """One client per protocol, closed before the server is stopped (an open HTTP
        connection holds a graceful shutdown back)."""
        if protocol not in self.clients:
            api = httpclient if protocol == "http" else grpcclient
            self.clients[protocol] = api.InferenceServerClient(self.url(protocol))
        return self.clients[protocol]

    def server_pid(self) -> int:
        """The tritonserver process: serve.sh's child (or serve.sh itself, had it exec'd)."""
        table = processes()
        children = [p for p, (ppid, _, argv) in table.items() if ppid == self.process.pid]
        for pid in [self.process.pid, *children]:
            if pid in table and table[pid][2] and table[pid][2][0].endswith("tritonserver"):
                return pid
        raise AssertionError(f"no tritonserver under serve.sh ({self.process.pid})")

    def rss_mib(self) -> float:
        """Resident memory of tritonserver and all its descendants (the Python stubs)."""
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in processes().items():
            children.setdefault(ppid, []).append(pid)
        family, todo = [], [self.process.pid]
        while todo:
            family.append(todo.pop())
            todo += children.get(family[-1], [])
        return memory_mib(family, "VmRSS")


def start_server(repository: Path, log: Path, **env: str) -> Server:
    """scripts/serve.sh with free ports and its default address, ready to answer."""
    ports = free_ports()
    key = secrets.token_hex(16)
    environment = {**os.environ, **ports, "TRITON_ADMIN_KEY": key, **env}
    environment.pop("BIND_ADDRESS", None)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "serve.sh"), str(repository)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    running = Server(
        process,
        f"127.0.0.1:{ports['HTTP_PORT']}",
        f"127.0.0.1:{ports['GRPC_PORT']}",
        log,
        key,
    )
    probe = running.client("http")
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited ({process.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if probe.is_server_ready():
                return running
        except Exception:  # not listening yet
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the server was not ready in 180 s:\n{log.read_text()[-4000:]}")
        time.sleep(0.3)


def stop_server(running: Server, sig: int = signal.SIGTERM) -> int:
    """Close the clients, signal serve.sh and wait for it; returns its exit status."""
    for client in running.clients.values():
        client.close()
    running.clients.clear()
    running.process.send_signal(sig)
    try:
        return running.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        running.process.kill()
        running.process.wait()
        pytest.fail(f"serve.sh did not stop within 60 s of signal {sig}")


def check_tensors(configured, graph_values, batched: bool) -> None:
    """Config inputs/outputs name graph values with the same dtype and shape."""
    graph = {value.name: value.type.tensor_type for value in graph_values}
    assert {tensor.name for tensor in configured} == set(graph)
    for tensor in configured:
        expected = [d.dim_value if d.dim_value else -1 for d in graph[tensor.name].shape.dim]
        if batched:
            assert expected[0] == -1, f"{tensor.name}: the graph's batch dimension is fixed"
            expected = expected[1:]
        # One value per row: [1] in Triton, reshaped to the graph's scalar.
        dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
        assert dims == expected, tensor.name
        assert tensor.dims, f"{tensor.name}: Triton needs at least one dim per row"
        assert DATA_TYPES.Name(tensor.data_type) == ONNX_TYPES[graph[tensor.name].elem_type]


def statistics(server: Server, model: str) -> tuple[int, int]:
    client = server.client("http")
    (stats,) = client.get_inference_statistics(model, headers=server.admin("http"))["model_stats"]
    return int(stats["inference_count"]), int(stats["execution_count"])


def run_at_once(count: int, work) -> None:
    """``work(number)`` in ``count`` threads started together; each must finish within
    150 s and none may fail."""
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def run(number: int) -> None:
        try:
            start.wait(timeout=60)
            work(number)
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=150)
    assert not any(thread.is_alive() for thread in threads), "clients still running"
    assert not failures, failures


def concurrent_solo_errors(
    server: Server, tracks: list[tuple[object, dict]], texts: list[str], steps: int, per_step: int
) -> tuple[list[float], list[float]]:
    """16 clients, half HTTP and half gRPC, each send ``steps`` rounds of one track (an item
    and ``embed_audio``'s keyword arguments) and ``per_step`` sentences at once. Returns each
    answer's max |Δ| (audio) or cosine (text) to the one the same request got alone; fails
    unless the server batched requests of both towers."""
    from export.quantize import cosines
    from export.to_triton import TEXT_TOWER
    from runtime.serving.triton import AUDIO_MODEL, TritonEmbedder

    with TritonEmbedder(server.http, "http") as alone:
        solo_audio = [alone.embed_audio([item], **options)[0] for item, options in tracks]
        solo_text = [alone.embed_text([text])[0] for text in texts]
    before = {m: statistics(server, m) for m in (AUDIO_MODEL, TEXT_TOWER)}
    audio_errors: list[float] = []
    text_cosines: list[float] = []

    def client(number: int) -> None:
        protocol = "http" if number % 2 else "grpc"
        with TritonEmbedder(server.url(protocol), protocol) as mine:
            for step in range(steps):
                track = (number + step) % len(tracks)
                item, options = tracks[track]
                got = mine.embed_audio([item], **options)[0]
                audio_errors.append(float(abs(got - solo_audio[track]).max()))
                for text in range(number + step, number + step + per_step):
                    got = mine.embed_text([texts[text % len(texts)]])
                    expected = solo_text[text % len(texts)][None]
                    text_cosines.append(float(cosines(got, expected)[0]))

    run_at_once(16, client)
    assert len(audio_errors) == 16 * steps and len(text_cosines) == 16 * steps * per_step
    print(f"concurrency: audio max |Δ| {max(audio_errors):.2e}, text min cos {min(text_cosines)}")
    for model, (inferences, executions) in before.items():
        now_inferences, now_executions = statistics(server, model)
        served, runs = now_inferences - inferences, now_executions - executions
        print(f"{model}: {served} requests in {runs} executions")
        assert runs < served, f"{model}: no batching"
    return audio_errors, text_cosines
