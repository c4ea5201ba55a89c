"""Triton serving: a real tritonserver (scripts/serve.sh, the CPU server of the
nvidia-pytriton wheel) on a repository written by export/to_triton.py for the small model,
queried over HTTP and gRPC and compared with the in-process runtime."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

import runtime
from export.quantize import cosines
from export.synthetic import random_track
from export.to_tensorrt import plan_name, record_engines
from export.to_triton import (
    AUDIO_TOWER,
    BACKENDS,
    DEFAULT_MAX_AUDIO_SECONDS,
    DEFAULT_MAX_BATCH_WINDOWS,
    DEFAULT_REQUEST_SAMPLES,
    FLOOR_TOWER,
    TEXT_TOWER,
    TOKENIZER_MODEL,
    TOWERS,
    fill_repository,
    main,
)
from runtime.audio.reading import MAX_SAMPLE_RATE, load_track
from runtime.manifest import read_manifest, write_manifest
from runtime.serving.triton import AUDIO_MODEL, TEXT_MODEL, TritonEmbedder
from tests.helpers import one_loud_window
from tests.triton_server import (
    DATA_TYPES,
    REGION,
    Server,
    check_tensors,
    concurrent_solo_errors,
    free_port,
    memory_mib,
    parse_config,
    processes,
    regions,
    run_at_once,
    start_server,
    stop_server,
    stubs_of,
)

ROOT = Path(__file__).resolve().parents[3]
RATE = 22050
LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::ffff:127.0.0.1
# (seconds, sample rate, gain): 1–3 windows (one zero-padded, one with a dropped remainder),
# loudness from -100 dB to 0 dB, several sample rates.
TRACKS = [
    (4.0, 22050, 1e-3),
    (30.0, 22050, 1.0),
    (12.0, 44100, 1e-5),
    (25.0, 16000, 0.3),
    (10.0, 48000, 0.05),
    (21.0, 22050, 3e-2),
]
# The test server's limits: 15 minutes, and 15 minutes at 48 kHz per request (the defaults,
# 4 hours and 1 hour at 48 kHz, would make the over-limit requests gigabytes).
MAX_SECONDS = 15 * 60
REQUEST_SAMPLES = MAX_SECONDS * 48_000
WORDS = "a calm solo piano melody with soft strings, slow drums and a warm bass in D minor"


def texts_of_every_length() -> list[str]:
    """0 to 150 words (past the 128-token truncation), plus non-ASCII text."""
    words = WORDS.split()
    texts = [" ".join(words[i % len(words)] for i in range(n)) for n in range(151)]
    return [*texts, "héllo wörld ✓ 日本語の歌", "\t  spaced   out  "]


@pytest.fixture(scope="module")
def repository(small_model_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("triton_repo")
    args = ["--model-dir", str(small_model_dir), "--repository", str(folder)]
    limits = [
        "--max-audio-seconds",
        str(MAX_SECONDS),
        "--max-request-samples",
        str(REQUEST_SAMPLES),
    ]
    assert main([*args, *limits, "--backend", "python"]) == 0
    return folder


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("triton_audio")
    paths = []
    for seed, (seconds, rate, gain) in enumerate(TRACKS):
        path = folder / f"track{seed}.wav"
        soundfile.write(path, gain * random_track(seed, seconds, rate), rate, subtype="FLOAT")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def embedder(small_model_dir) -> runtime.Embedder:
    return runtime.Embedder(small_model_dir)


# ---------------------------------------------------------------- configurations


KIND_GPU = model_config_pb2.ModelInstanceGroup.Kind.KIND_GPU
TOWER_FILES = {AUDIO_TOWER: "audio.onnx", TEXT_TOWER: "text.onnx", FLOOR_TOWER: "floor.onnx"}


def signature(tensors) -> dict:
    return {t.name: (DATA_TYPES.Name(t.data_type), list(t.dims)) for t in tensors}


@pytest.fixture
def engines_dir(small_model_dir, tmp_path) -> Path:
    """The small model's folder with stand-in fp32 TensorRT plans recorded in its manifest
    (TensorRT is not installed here: the configs, not the engines, are under test)."""
    folder = tmp_path / "model"
    folder.mkdir()
    for path in small_model_dir.iterdir():
        if path.is_file():
            (folder / path.name).symlink_to(path)
    (folder / "manifest.json").unlink()
    manifest = read_manifest(small_model_dir)
    for graph in manifest.graphs:
        (folder / plan_name(graph, "fp32")).write_bytes(f"stand-in {graph} plan".encode())
    recorded = record_engines(manifest, "fp32", 64, 128, "10.0", "a GPU")
    write_manifest(folder, recorded)
    return folder


@pytest.mark.parametrize("backend", BACKENDS)
def test_configs_parse_and_match_the_graphs(small_model_dir, engines_dir, tmp_path, backend):
    model_dir = engines_dir if backend == "tensorrt" else small_model_dir
    names = fill_repository(model_dir, tmp_path, backend)
    configs = {name: parse_config(tmp_path / name / "config.pbtxt") for name in names}
    towers = (AUDIO_TOWER, FLOOR_TOWER, TEXT_TOWER)
    assert set(configs) == {AUDIO_MODEL, TEXT_MODEL, TOKENIZER_MODEL, *towers}
    for name, config in configs.items():
        assert config.name == name
        assert (tmp_path / name / "1").is_dir()
    for tower in towers:
        config = configs[tower]
        graph = onnx.load(str(small_model_dir / TOWER_FILES[tower])).graph
        served = "model.plan" if backend == "tensorrt" else "model.onnx"
        assert (tmp_path / tower / "1" / served).is_file()
        check_tensors(config.input, graph.input, batched=config.max_batch_size > 0)
        check_tensors(config.output, graph.output, batched=config.max_batch_size > 0)
        if backend == "python":
            assert config.backend == "python" and (tmp_path / tower / "1" / "model.py").is_file()
        elif backend == "tensorrt":
            assert config.platform == "tensorrt_plan"
        else:
            assert config.platform == "onnxruntime_onnx"
        # TensorRT runs as its own backend, from the built plans, never as onnxruntime's
        # execution provider.
        assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    # Audio rows are independent windows: the audio towers batch them up to the size the
    # audio model packs them in.
    for tower in (AUDIO_TOWER, FLOOR_TOWER):
        assert configs[tower].max_batch_size == DEFAULT_MAX_BATCH_WINDOWS
        assert configs[tower].dynamic_batching.preferred_batch_size == [DEFAULT_MAX_BATCH_WINDOWS]
    for name in (AUDIO_MODEL, TEXT_MODEL, TOKENIZER_MODEL, *towers):
        assert configs[name].max_batch_size > 0
    for name in (AUDIO_MODEL, TOKENIZER_MODEL, *towers):
        assert configs[name].dynamic_batching.preferred_batch_size
        assert configs[name].instance_group
    for name in (AUDIO_MODEL, TOKENIZER_MODEL):
        assert configs[name].backend == "python"
        assert (tmp_path / name / "1" / "model.py").is_file()
    # What the client models answer is what the towers answer.
    assert signature(configs[AUDIO_MODEL].output) == signature(configs[AUDIO_TOWER].output)
    assert signature(configs[TEXT_MODEL].output) == signature(configs[TEXT_TOWER].output)
    assert signature(configs[TOKENIZER_MODEL].output) == signature(configs[TEXT_TOWER].input)
    # Tracks and (on the Python backend) token rows of different lengths batch together.
    ragged = {(m, t.name) for m, c in configs.items() for t in c.input if t.allow_ragged_batch}
    text_inputs = {(TEXT_TOWER, t.name) for t in configs[TEXT_TOWER].input}
    assert ragged == {(AUDIO_MODEL, "waveform")} | (text_inputs if backend == "python" else set())
    if backend == "python":
        pads = json.loads(configs[TEXT_TOWER].parameters["pad_values"].string_value)
        manifest = json.loads((small_model_dir / "manifest.json").read_text())
        assert pads == {"input_ids": manifest["text"]["pad_token_id"], "attention_mask": 0}
    parameters = configs[AUDIO_MODEL].parameters
    assert parameters["tower"].string_value == AUDIO_TOWER
    assert parameters["floor"].string_value == FLOOR_TOWER
    assert float(parameters["max_audio_seconds"].string_value) == DEFAULT_MAX_AUDIO_SECONDS
    assert DEFAULT_MAX_AUDIO_SECONDS == 4 * 3600  # the runtime's own limit per item
    assert int(parameters["max_request_samples"].string_value) == DEFAULT_REQUEST_SAMPLES
    assert DEFAULT_REQUEST_SAMPLES == 3600 * 48_000  # an hour at 48 kHz
    assert int(parameters["max_batch_windows"].string_value) == DEFAULT_MAX_BATCH_WINDOWS
    # Every ensemble step maps real inputs and outputs, and covers the ensemble's own.
    produced = {t.name for t in configs[TEXT_MODEL].input}
    for step in configs[TEXT_MODEL].ensemble_scheduling.step:
        inner = configs[step.model_name]
        assert set(step.input_map) == {t.name for t in inner.input}
        assert set(step.input_map.values()) <= produced
        assert set(step.output_map) <= {t.name for t in inner.output}
        produced |= set(step.output_map.values())
    assert {t.name for t in configs[TEXT_MODEL].output} <= produced


def test_tensorrt_backend_serves_the_built_plans_on_gpus(engines_dir, tmp_path):
    fill_repository(engines_dir, tmp_path, "tensorrt")
    manifest = read_manifest(engines_dir)
    for tower, graph in TOWERS.items():
        config = parse_config(tmp_path / tower / "config.pbtxt")
        assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
        assert [group.kind for group in config.instance_group] == [KIND_GPU]
        assert config.max_batch_size <= manifest.tensorrt["fp32"].max_batch
        plan = tmp_path / tower / "1" / "model.plan"
        assert plan.read_bytes() == f"stand-in {graph} plan".encode()
        assert not (tmp_path / tower / "1" / "model.onnx").exists()
        assert "ORT_TENSORRT" not in (tmp_path / tower / "config.pbtxt").read_text()


def test_tensorrt_backend_without_engines_names_the_builder(small_model_dir, tmp_path, capsys):
    args = ["--model-dir", str(small_model_dir), "--repository", str(tmp_path / "r")]
    assert main([*args, "--backend", "tensorrt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("to_triton.py: error: ") and err.count("\n") == 1
    assert "no fp32 TensorRT engines; build them with export/to_tensorrt.py" in err
    assert main([*args, "--backend", "tensorrt", "--precision", "fp16"]) == 2
    assert "export/to_tensorrt.py --model-dir" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_tensorrt_backend_refuses_a_missing_or_too_small_engine(engines_dir, tmp_path, capsys):
    args = ["--model-dir", str(engines_dir), "--backend", "tensorrt"]
    (engines_dir / plan_name("floor", "fp32")).unlink()
    assert main([*args, "--repository", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "floor engine floor.fp32.plan is missing" in err
    assert "export/to_tensorrt.py" in err
    (engines_dir / plan_name("floor", "fp32")).write_bytes(b"stand-in floor plan")
    manifest = read_manifest(engines_dir)
    write_manifest(engines_dir, record_engines(manifest, "fp32", 16, 128, "10.0", None))
    assert main([*args, "--repository", str(tmp_path / "r")]) == 2
    assert "at most 16 rows per call" in capsys.readouterr().err
    write_manifest(engines_dir, record_engines(manifest, "fp32", 64, 8, "10.0", None))
    assert main([*args, "--repository", str(tmp_path / "r")]) == 2
    assert "--max-tokens" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_to_triton_ends_a_malformed_manifest_in_one_line(small_model_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    content = json.loads((small_model_dir / "manifest.json").read_text())
    del content["audio"]
    (folder / "manifest.json").write_text(json.dumps(content))
    args = ["--model-dir", str(folder), "--repository", str(tmp_path / "r")]
    assert main([*args, "--backend", "python"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("to_triton.py: error: ") and err.count("\n") == 1
    assert "manifest.json" in err and "Traceback" not in err
    (folder / "manifest.json").write_text("{not json")
    assert main([*args, "--backend", "python"]) == 2
    assert "not a JSON manifest" in capsys.readouterr().err


def test_to_triton_refuses_bad_arguments(small_model_dir, tmp_path, capsys):
    assert main(["--model-dir", str(tmp_path), "--repository", str(tmp_path / "r")]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    args = ["--model-dir", str(small_model_dir), "--repository", str(tmp_path / "r")]
    for bad in (
        ["--max-audio-seconds", "0"],
        ["--max-batch-windows", "0"],
        ["--backend", "x"],
        ["--backend", "tensorrt", "--precision", "bf16"],
        ["--backend", "python", "--precision", "fp16"],
    ):
        with pytest.raises(SystemExit) as caught:
            main([*args, *bad])
        assert caught.value.code == 2
    assert not (tmp_path / "r").exists()


def test_serve_sh_refuses_what_cannot_work(repository, tmp_path):
    serve = ["bash", str(ROOT / "scripts" / "serve.sh")]
    missing = subprocess.run([*serve, str(tmp_path / "none")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no model repository" in missing.stderr
    # numpy 2 would let the bundled stub corrupt tensors: .venv (numpy 2) is refused.
    env = {**os.environ, "PYTHON": str(ROOT / ".venv" / "bin" / "python")}
    wrong = subprocess.run([*serve, str(repository)], capture_output=True, text=True, env=env)
    assert wrong.returncode == 2 and "numpy" in wrong.stderr


# ---------------------------------------------------------------- results


def assert_served_equals_local(served: np.ndarray, local: np.ndarray, rtol: float) -> float:
    """Same shape and dtype, cosine >= 0.99999 row by row, close elementwise; the lowest
    cosine is returned for the log."""
    assert served.shape == local.shape and served.dtype == np.float32
    lowest = cosines(served, local).min()
    assert lowest >= 0.99999
    np.testing.assert_allclose(served, local, rtol=rtol, atol=1e-5)
    return lowest


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_server_embeddings_equal_the_runtime(server, embedder, audio_files, protocol):
    texts = texts_of_every_length()
    with TritonEmbedder(server.url(protocol), protocol) as remote:
        for space, normalize in (("joint", False), ("encoder", False), ("joint", True)):
            options = {"space": space, "normalize": normalize}
            audio_min = assert_served_equals_local(
                remote.embed_audio(audio_files, **options),
                embedder.embed_audio(audio_files, **options),
                rtol=1e-4,
            )
            text_min = assert_served_equals_local(
                remote.embed_text(texts, **options),
                embedder.embed_text(texts, **options),
                rtol=1e-3,
            )
            print(
                f"{protocol} {space} {normalize}: min cos audio {audio_min:.8f} text {text_min:.8f}"
            )
        assert remote.embed_audio([]).shape == embedder.embed_audio([]).shape
        assert (
            remote.embed_text([], space="encoder").shape
            == embedder.embed_text([], space="encoder").shape
        )


def test_arrays_at_their_own_rate_equal_the_runtime(server, embedder):
    track = 0.2 * random_track(7, 23.0, 44100)
    with TritonEmbedder(server.http, "http") as remote:
        served = remote.embed_audio([track, track[::2].copy()], sample_rate=44100)
    local = embedder.embed_audio([track, track[::2].copy()], sample_rate=44100)
    assert cosines(served, local).min() >= 0.99999


def test_a_track_longer_than_one_tower_call_equals_the_runtime(server, embedder):
    """41 windows: calls of 32 and 9 rows, the loudest window (the track's floor) in the
    second; the runtime's calls hold 8."""
    track = one_loud_window(41, 36, seed=5)
    with TritonEmbedder(server.grpc, "grpc") as remote:
        served = remote.embed_audio([track], sample_rate=RATE)
    assert_served_equals_local(served, embedder.embed_audio([track], sample_rate=RATE), 1e-4)


def test_a_shared_floor_would_be_caught(embedder):
    """The data of the concurrency test is sensitive to the bug it guards against: letting
    two of its tracks share the log-mel floor moves an embedding far beyond the tolerance."""
    audio, floor = embedder._sessions.get("audio"), embedder._sessions.get("floor")
    steps = embedder.manifest.audio.preprocessing
    tracks = [
        load_track(i, gain * random_track(i, seconds, rate), rate, steps)
        for i, (seconds, rate, gain) in enumerate(TRACKS)
    ]

    def run(windows: np.ndarray, level: float) -> np.ndarray:
        floors = np.full(len(windows), level, np.float32)
        return audio.run(["joint"], {"waveform": windows, "floor": floors})[0].mean(0)[None]

    def level(windows: np.ndarray) -> float:
        return floor.run(["floor"], {"waveform": windows})[0].max()

    def shared_floor_moves(a, b) -> bool:
        alone = run(a.windows, level(a.windows))
        shared = run(a.windows, max(level(a.windows), level(b.windows)))
        return cosines(shared, alone)[0] < 0.999

    assert any(shared_floor_moves(a, b) for a in tracks for b in tracks)


def test_concurrent_clients_get_their_solo_results(server, audio_files):
    """16 clients, half HTTP and half gRPC, send tracks and sentences at once; each answer
    equals the one the same request got alone, and the server did batch them."""
    tracks = [(path, {}) for path in audio_files]
    texts = texts_of_every_length()[::9]
    audio_errors, text_cosines = concurrent_solo_errors(server, tracks, texts, 6, 2)
    assert max(audio_errors) <= 1e-6
    assert min(text_cosines) >= 0.99999


# ---------------------------------------------------------------- bad input


def bad_requests() -> dict[str, tuple[str, list, str]]:
    """name → (model, [(input, array, datatype)], a fragment of the expected message)."""
    rate = np.array([[RATE]], np.int32)
    too_long = np.zeros((1, RATE * MAX_SECONDS + 1), np.float32)
    return {
        "audio wrong dtype": (
            AUDIO_MODEL,
            [("waveform", np.zeros((1, 100), np.float64), "FP64"), ("sample_rate", rate, "INT32")],
            "data-type",
        ),
        "audio wrong rank": (
            AUDIO_MODEL,
            [
                ("waveform", np.zeros((1, 2, 100), np.float32), "FP32"),
                ("sample_rate", rate, "INT32"),
            ],
            "unexpected shape",
        ),
        "audio empty": (
            AUDIO_MODEL,
            [("waveform", np.zeros((1, 0), np.float32), "FP32"), ("sample_rate", rate, "INT32")],
            "item 0",
        ),
        "audio not finite": (
            AUDIO_MODEL,
            [
                ("waveform", np.full((1, 100), np.inf, np.float32), "FP32"),
                ("sample_rate", rate, "INT32"),
            ],
            "NaN or infinite",
        ),
        "audio bad rate": (
            AUDIO_MODEL,
            [
                ("waveform", np.ones((1, 100), np.float32), "FP32"),
                ("sample_rate", 0 * rate, "INT32"),
            ],
            "sample rate",
        ),
        "audio over 15 minutes": (
            AUDIO_MODEL,
            [("waveform", too_long, "FP32"), ("sample_rate", rate, "INT32")],
            "limit of 900 s",
        ),
        "text wrong dtype": (
            TEXT_MODEL,
            [("text", np.zeros((1, 1), np.float32), "FP32")],
            "data-type",
        ),
        "text wrong rank": (
            TEXT_MODEL,
            [("text", np.array([b"abc"], np.object_), "BYTES")],
            "shape",
        ),
        "text empty": (TEXT_MODEL, [("text", np.zeros((0, 1), np.object_), "BYTES")], "text"),
        "text not UTF-8": (
            TEXT_MODEL,
            [("text", np.array([[b"caf\xe9 \xff"]], np.object_), "BYTES")],
            "not valid UTF-8",
        ),
    }


def send(server: Server, protocol: str, model: str, tensors: list):
    """One inference request of ``(name, array, datatype)`` tensors; the response."""
    api = httpclient if protocol == "http" else grpcclient
    inputs = []
    for name, array, datatype in tensors:
        value = api.InferInput(name, list(array.shape), datatype)
        value.set_data_from_numpy(array)
        inputs.append(value)
    return server.client(protocol).infer(model, inputs)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_requests_get_errors_and_the_server_serves_on(server, protocol):
    with TritonEmbedder(server.url(protocol), protocol) as remote:
        expected = remote.embed_text(["a calm piano"])
        for name, (model, tensors, fragment) in bad_requests().items():
            with pytest.raises(InferenceServerException) as caught:
                send(server, protocol, model, tensors)
            assert fragment in caught.value.message(), (name, caught.value.message())
            assert str(caught.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT"), name
            np.testing.assert_array_equal(remote.embed_text(["a calm piano"]), expected)
    client = server.client(protocol)
    assert client.is_server_live()
    assert all(client.is_model_ready(m) for m in (AUDIO_MODEL, TEXT_MODEL))


@pytest.mark.slow  # end to end: kept out of the quick -m 'not slow' loop
def test_memory_does_not_grow_with_rejected_requests(server):
    """Resident memory of the server and its stubs over 16 rounds of refused requests, each
    round carrying 2 × 79 MB of over-long audio. A leak of refused payloads would add about
    that much per round; a straight line fitted through the rounds after the first few
    (which grow the shared-memory pools once) must rise by less than a quarter of it, which
    on a loaded machine is still far above the noise of a few allocator arenas."""
    cases = bad_requests()
    too_long = cases.pop("audio over 15 minutes")
    payload = 2 * too_long[1][0][1].nbytes / 2**20
    samples = []
    for _ in range(16):
        for model, tensors, _ in [*cases.values()] * 4 + [too_long] * 2:
            with pytest.raises(InferenceServerException):
                send(server, "http", model, tensors)
        samples.append(server.rss_mib())
    slope = np.polyfit(np.arange(4, 16), samples[4:], 1)[0]
    print(f"server RSS over rejected requests (MiB): {[round(s) for s in samples]}")
    print(f"fitted growth: {slope:.2f} MiB per round of {payload:.0f} MiB refused")
    assert slope < payload / 4


def test_triton_embedder_is_exported_by_the_runtime_package():
    assert runtime.TritonEmbedder is TritonEmbedder
    assert "TritonEmbedder" in runtime.__all__


def test_client_input_errors_name_the_item(server, audio_files, tmp_path):
    good = audio_files[0]
    with TritonEmbedder(server.http, "http") as remote:
        with pytest.raises(runtime.InputError, match="item 1"):
            remote.embed_audio([good, tmp_path / "missing.wav"])
        with pytest.raises(runtime.InputError, match="item 1"):
            remote.embed_audio([np.ones(10), np.full(10, np.nan)], sample_rate=RATE)
        with pytest.raises(
            runtime.InputError, match=r"item 1: .*limit of 900 s .*to_triton.py --max-audio-sec"
        ):
            remote.embed_audio([np.ones(10), np.zeros(RATE * 901)], sample_rate=RATE)
        over = np.zeros(REQUEST_SAMPLES + 1, np.float32)
        with pytest.raises(
            runtime.InputError, match=r"item 1: .* over the server's limit of .*-request-samples"
        ):
            remote.embed_audio([np.ones(10), over], sample_rate=MAX_SAMPLE_RATE)
        with pytest.raises(runtime.InputError, match="item 2"):
            remote.embed_text(["a", "b", 3])
        with pytest.raises(runtime.InputError, match="item 1"):
            remote.embed_text(["a", "\ud800"])
        with pytest.raises(runtime.InputError, match="single string"):
            remote.embed_text("a calm piano")
        with pytest.raises(runtime.InputError, match="space"):
            remote.embed_text(["a"], space="audio")
        # A refusal only the server makes (its limit, unknown to a stale client) names the item.
        remote.config(AUDIO_MODEL)["parameters"]["max_audio_seconds"]["string_value"] = "1e9"
        with pytest.raises(
            runtime.InputError, match=r"item 1: the server refused it: .*limit of 900 s"
        ):
            remote.embed_audio([good, np.zeros(RATE * 901, np.float32)], sample_rate=RATE)
    with pytest.raises(runtime.InputError, match="protocol"):
        TritonEmbedder(server.http, "ftp")


# ---------------------------------------------------------------- exposure


def listening(port: str) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp[6] writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == int(port):  # 0A: LISTEN
                found.add(address)
    return found


def test_server_listens_on_loopback_only_by_default(server):
    for url in (server.http, server.grpc):
        port = url.rsplit(":", 1)[1]
        assert listening(port) and listening(port) <= LOOPBACK, f"{port}: {listening(port)}"


def test_serve_sh_warns_when_exposing_the_server(tmp_path):
    env = {**os.environ, "BIND_ADDRESS": "0.0.0.0"}
    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "serve.sh"), str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 2
    assert "WARNING" in run.stderr and "0.0.0.0" in run.stderr


def refused_for_authorization(call) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    assert "restricted" in caught.value.message().lower(), caught.value.message()
    return caught.value.message()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_admin_apis_need_the_key_and_inference_does_not(server, protocol):
    client = server.client(protocol)
    region = f"/{REGION}00000000-0000-0000-0000-000000000000"

    def register(**options):
        return client.register_system_shared_memory("stolen", region, 1 << 20, **options)

    refused_for_authorization(register)
    refused_for_authorization(lambda: client.update_log_settings({"log_verbose_level": 1}))
    refused_for_authorization(lambda: client.get_inference_statistics(AUDIO_MODEL))
    refused_for_authorization(lambda: client.get_trace_settings())
    refused_for_authorization(lambda: client.unload_model(AUDIO_MODEL))
    # With the key, the same calls pass the check (registering a region that does not
    # exist then fails for that reason).
    with pytest.raises(InferenceServerException) as caught:
        register(headers=server.admin(protocol))
    assert "restricted" not in caught.value.message().lower()
    client.update_log_settings({"log_verbose_level": 0}, headers=server.admin(protocol))
    assert client.get_inference_statistics(AUDIO_MODEL, headers=server.admin(protocol))
    # What TritonEmbedder needs stays open.
    assert client.is_server_ready() and client.get_model_metadata(AUDIO_MODEL)
    assert client.get_model_config(AUDIO_MODEL)


# ---------------------------------------------------------------- limits


def refused(server: Server, protocol: str, model: str, tensors: list) -> str:
    """The INVALID_ARG message the request gets."""
    with pytest.raises(InferenceServerException) as caught:
        send(server, protocol, model, tensors)
    assert str(caught.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT"), caught.value
    return caught.value.message()


def audio_request(samples: np.ndarray, rate: int) -> list:
    rates = np.full((len(samples), 1), rate, np.int32)
    return [("waveform", samples, "FP32"), ("sample_rate", rates, "INT32")]


def test_requests_beyond_the_rate_and_sample_limits_are_refused_before_processing(server):
    """Refused before the model reads the samples. Triton 2.51 has no limit on request
    bytes: the server receives the whole request and the stub's copy of it costs about
    twice its size; reading and converting it, as the model did before checking, costs
    at least as much again (and a rate of 2^31 Hz made 1.1 GiB cost 14.5 GB)."""
    limit = REQUEST_SAMPLES
    table = processes()
    stubs = [p for p in stubs_of(server.server_pid()) if f"/{AUDIO_MODEL}/" in table[p][2][1]]
    assert len(stubs) == 2  # its two instances
    peaks, server_rss = [memory_mib([p], "VmHWM") for p in stubs], server.rss_mib()
    huge_rate = refused(
        server, "grpc", AUDIO_MODEL, audio_request(np.ones((1, 4_000_000), np.float32), 2**31 - 1)
    )
    assert "item 0" in huge_rate and "sample rate 2147483647 Hz" in huge_rate
    # Under 900 s at the highest accepted rate, yet more samples than a request may hold.
    over = np.ones((1, limit + 1), np.float32)
    message = refused(server, "grpc", AUDIO_MODEL, audio_request(over, MAX_SAMPLE_RATE))
    assert f"limit of {limit} samples" in message, message
    halves = np.ones((2, limit // 2 + 1), np.float32)
    assert f"limit of {limit} samples" in refused(
        server, "http", AUDIO_MODEL, audio_request(halves, RATE)
    )
    growth = max(memory_mib([p], "VmHWM") - peak for p, peak in zip(stubs, peaks, strict=True))
    print(
        f"{over.nbytes >> 20} MiB requests refused: an audio stub's peak RSS +{growth:.0f} MiB; "
        f"server and stubs RSS {server_rss:.0f} → {server.rss_mib():.0f} MiB"
    )
    assert growth < 3 * over.nbytes / 2**20


def test_towers_refuse_non_finite_input_and_too_many_rows(server, small_model_dir):
    manifest = json.loads((small_model_dir / "manifest.json").read_text())
    window, max_tokens = manifest["audio"]["window_samples"], manifest["text"]["max_length"]

    def waveform(count: int, fill: float = 0.1) -> list:
        return [("waveform", np.full((count, window), fill, np.float32), "FP32")]

    def tower(count: int, fill: float = 0.1, floor: float = -8.0) -> list:
        return [*waveform(count, fill), ("floor", np.full((count, 1), floor, np.float32), "FP32")]

    for protocol in ("http", "grpc"):
        assert "NaN" in refused(server, protocol, AUDIO_TOWER, tower(2, np.nan))
        assert "NaN" in refused(server, protocol, AUDIO_TOWER, tower(2, floor=np.inf))
        assert "NaN" in refused(server, protocol, FLOOR_TOWER, waveform(2, np.nan))
        too_many = DEFAULT_MAX_BATCH_WINDOWS + 1  # Triton's own max_batch_size check
        assert "batch" in refused(server, protocol, AUDIO_TOWER, tower(too_many))
        assert "batch" in refused(server, protocol, FLOOR_TOWER, waveform(too_many))
        assert np.isfinite(send(server, protocol, AUDIO_TOWER, tower(2)).as_numpy("joint")).all()
        floors = send(server, protocol, FLOOR_TOWER, waveform(3)).as_numpy("floor")
        assert floors.shape in ((3,), (3, 1)) and np.isfinite(floors).all()
        ids = np.ones((1, max_tokens + 1), np.int64)
        tokens = [("input_ids", ids, "INT64"), ("attention_mask", ids, "INT64")]
        assert str(max_tokens) in refused(server, protocol, TEXT_TOWER, tokens)


# ---------------------------------------------------------------- client


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_one_embedder_is_safe_to_share_between_threads(server, audio_files, protocol):
    texts = texts_of_every_length()[::15]
    remote = TritonEmbedder(server.url(protocol), protocol)
    solo_audio = remote.embed_audio(audio_files)
    solo_text = remote.embed_text(texts)
    differences: list[float] = []

    def client(number: int) -> None:
        for step in range(3):
            track = (number + step) % len(audio_files)
            got = remote.embed_audio([audio_files[track]])[0]
            differences.append(float(np.abs(got - solo_audio[track]).max()))
            got = remote.embed_text(texts[step:] + texts[:step])
            order = np.roll(np.arange(len(texts)), -step)
            differences.append(float(np.abs(got - solo_text[order]).max()))

    run_at_once(16, client)
    assert len(differences) == 16 * 3 * 2 and max(differences) <= 1e-5
    remote.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_unreachable_server_raises_triton_unavailable(protocol):
    url = f"127.0.0.1:{free_port()}"
    with TritonEmbedder(url, protocol) as remote:
        with pytest.raises(runtime.TritonUnavailable, match=url) as caught:
            remote.embed_text(["a calm piano"])
    assert isinstance(caught.value, ConnectionError)
    assert "\n" not in str(caught.value)


def test_urls_may_carry_their_protocol_scheme(server):
    for protocol in ("http", "grpc"):
        with TritonEmbedder(f"{protocol}://{server.url(protocol)}", protocol) as remote:
            assert remote.embed_text(["a"]).shape[0] == 1
    for url in (f"https://{server.http}", f"grpc://{server.http}", f"http://{server.http}/v2"):
        with pytest.raises(runtime.InputError, match="url"):
            TritonEmbedder(url, "http")


# ---------------------------------------------------------------- process lifecycle


@pytest.mark.slow  # end to end: kept out of the quick -m 'not slow' loop
def test_serve_sh_leaves_no_stub_or_region_behind_a_killed_server(repository, tmp_path):
    """SIGKILL is what a graceful stop cannot cover: the server's Python stubs outlive it,
    each holding a shared-memory region, and a stub busy or hung when its server dies (here:
    stopped with SIGSTOP) stays until someone kills it."""
    first = start_server(repository, tmp_path / "first.log")
    second = None
    try:
        # serve.sh and the server both killed, as by the OOM killer: the next start reaps.
        first_pid = first.server_pid()
        orphans = stubs_of(first_pid)
        for pid in orphans:
            os.kill(pid, signal.SIGSTOP)
        os.kill(first.process.pid, signal.SIGKILL)
        os.kill(first_pid, signal.SIGKILL)
        first.process.wait()
        second = start_server(repository, tmp_path / "second.log")
        assert not set(stubs_of(first_pid)) & set(orphans), "the killed server's stubs live on"
        assert not set(orphans.values()) & regions(), "the killed server's regions are left"
        # The server alone killed: serve.sh, its parent, reaps (and leaves no zombie).
        second_pid = second.server_pid()
        stubs = stubs_of(second_pid)
        children = [st for ppid, st, _ in processes().values() if ppid == second.process.pid]
        assert "Z" not in children, "serve.sh leaves a zombie child"
        os.kill(second_pid, signal.SIGKILL)
        assert second.process.wait(timeout=60) != 0
        assert not set(stubs_of(second_pid)) & set(stubs), "the killed server's stubs live on"
        assert not set(stubs.values()) & regions(), "the killed server's regions are left"
    finally:
        for running in (first, second):
            if running and running.process.poll() is None:
                stop_server(running)
