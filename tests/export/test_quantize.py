"""The INT8 profile: what quantize.py writes, what it leaves in float, and how close it stays."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import runtime
import runtime.engines.choice
import runtime.engines.openvino as ov_session
from export.families import family
from export.onnx_export import frontend_nodes
from export.quantize import (
    ACCURACY_QUERIES,
    AUDIO_INT8,
    TEXT_INT8,
    WindowReader,
    cosines,
    floor_session,
    quantize_model,
)
from export.synthetic import RATE, hard_set, random_track
from export.to_onnx import main as to_onnx
from export.ttmrpp.calibration import FLOAT_CONVS
from export.ttmrpp.hparams import HParams
from export.ttmrpp.reference import track_windows
from runtime.batching import whole_track_feed
from runtime.manifest import read_manifest
from tests.helpers import quantized_copy, stem_conv, token_feed

PERFORMANCE = Path(__file__).parents[2] / "docs" / "performance.md"
PRINTED_ACCURACY = re.compile(
    r"audio cosine to fp32 on (\d+) held-out synthetic tracks .*: min ([\d.]+) \((.+)\), "
    r"mean ([\d.]+); text on (\d+) queries: min ([\d.]+), mean ([\d.]+)"
)


@pytest.fixture(scope="session")
def small_int8(small_model_dir, tmp_path_factory):
    return quantized_copy(small_model_dir, tmp_path_factory.mktemp("small_int8") / "model", 8)


@pytest.fixture(scope="session")
def small_int8_dir(small_int8):
    return small_int8[0]


@pytest.fixture(scope="session")
def small_clap_int8(small_clap_export, tmp_path_factory):
    """Written by ``to_onnx.py --family clap --hf-model DIR --quantize int8``."""
    folder = tmp_path_factory.mktemp("small_clap_int8") / "model"
    argv = ["--family", "clap", "--hf-model", str(small_clap_export[1]), "--output", str(folder)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert to_onnx([*argv, "--quantize", "int8"]) == 0
    return folder, printed.getvalue()


@pytest.fixture(scope="session")
def small_muscall_int8(small_muscall_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("small_muscall_int8") / "model"
    return quantized_copy(small_muscall_model_dir, folder, 8)


@pytest.fixture(scope="session")
def demo_clap_int8(demo_clap_model_dir, tmp_path_factory):
    return quantized_copy(demo_clap_model_dir, tmp_path_factory.mktemp("demo_clap") / "model", 32)


def run(path, feed) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_manifest_records_the_int8_graphs_and_how_the_audio_tower_was_quantised(small_int8_dir):
    manifest = json.loads((small_int8_dir / "manifest.json").read_text())
    assert manifest["int8"]["audio"] == AUDIO_INT8 and manifest["int8"]["text"] == TEXT_INT8
    assert manifest["int8"]["calibration"]["windows"] == 8
    method = manifest["int8"]["audio_method"]
    assert "ranges at the 99.99th percentile" in method
    float_convs = "encoder.conv, encoder.layer1.0.conv1, encoder.layer1.0.downsample in float"
    assert method.endswith(float_convs)
    assert (small_int8_dir / AUDIO_INT8).is_file() and (small_int8_dir / TEXT_INT8).is_file()


def test_frontend_and_early_convs_stay_in_float_and_other_convs_are_int8(
    small_model_dir, small_int8_dir
):
    fp32 = onnx.load(str(small_model_dir / "audio.onnx")).graph
    frontend = set(frontend_nodes(fp32))
    assert {n.op_type for n in fp32.node if n.name in frontend} >= {"Gather", "MatMul", "Log"}
    graph = onnx.load(str(small_int8_dir / AUDIO_INT8)).graph
    producers = {out: node for node in graph.node for out in node.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 55  # 3 stem + 16 blocks × 3 + 4 downsample
    in_float = [conv.name for conv in convs if conv.input[1] not in producers]
    # the stem, and the conv1 and downsample of layer1's first block (they read its output)
    assert len(in_float) == 3 + 2
    block_3x3 = [c.name for c in convs if c.input[1].startswith("encoder.layer1.0.conv2.")]
    assert len(block_3x3) == 1 and block_3x3[0] not in in_float
    assert stem_conv(graph).name in in_float
    for conv in convs:
        if conv.name in in_float:
            assert conv.input[1].startswith(FLOAT_CONVS), conv.name
        else:
            assert producers[conv.input[1]].op_type == "DequantizeLinear", conv.name
    kept = [n for n in graph.node if n.name in frontend]
    assert len(kept) == len(frontend)  # every frontend node is still there, unquantised
    for node in kept:
        fed_by = {producers[i].op_type for i in node.input if i in producers}
        assert "DequantizeLinear" not in fed_by, node.name


def test_calibration_feeds_one_window_at_a_time_with_its_tracks_floor(small_model_dir):
    floor = floor_session(small_model_dir)
    hp = HParams.from_dict(read_manifest(small_model_dir).hparams)
    tracks = [track_windows(random_track(seed, 25.0), RATE, hp) for seed in (1, 2)]
    reader = WindowReader(tracks, floor)
    assert len(reader) == sum(map(len, tracks)) > 2
    whole = [whole_track_feed(t, lambda b: floor.run(["floor"], b.feed)) for t in tracks]
    expected = [(f["waveform"][i], f["floor"][i]) for f in whole for i in range(len(f["floor"]))]
    fed = list(iter(reader.get_next, None))
    assert len(fed) == len(expected)
    for feed, (window, track_floor) in zip(fed, expected, strict=True):
        assert feed["waveform"].shape == (1, *window.shape)
        np.testing.assert_array_equal(feed["waveform"][0], window)
        assert feed["floor"].tolist() == [track_floor]
    reader.set_range(1, 3)  # what onnxruntime's strided calibration calls
    assert len(list(iter(reader.get_next, None))) == 2


def test_activation_ranges_stop_below_the_largest_calibration_value(small_int8_dir):
    """Percentile calibration: the first INT8 convolution's input (computed in float, as in
    the fp32 graph) is quantised over a range that ends below its largest value on the very
    windows calibrated on; a max-based range would reach it."""
    model = onnx.load(str(small_int8_dir / AUDIO_INT8))
    producers = {out: node for node in model.graph.node for out in node.output}
    first = next(
        n
        for n in model.graph.node
        if n.op_type == "Conv" and n.input[1] in producers  # its weight is dequantised
    )
    quantise = producers[producers[first.input[0]].input[0]]
    assert quantise.op_type == "QuantizeLinear"
    values = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    scale, zero = values[quantise.input[1]], values[quantise.input[2]]
    range_end = float(scale) * (255 - int(zero))
    model.graph.output.append(onnx.ValueInfoProto(name=quantise.input[0]))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    manifest = read_manifest(small_int8_dir)
    tracks = family("ttmrpp").int8.calibration(manifest.hparams, None, 8)
    reader = WindowReader(tracks, floor_session(small_int8_dir))
    largest = max(
        session.run([quantise.input[0]], feed)[0].max() for feed in iter(reader.get_next, None)
    )
    assert 0 < range_end < 0.99 * largest


def test_a_relu_after_an_int8_conv_is_folded_into_the_convs_output_quantisation(
    small_model_dir, small_int8_dir
):
    """An activation between two INT8 convolutions is quantised once: the Relu after an
    INT8 convolution is gone (the convolution's output quantisation takes its range), and
    none is left between a dequantise and a quantise; the Relus after float convolutions
    and after the residual sums stay."""
    fp32 = onnx.load(str(small_model_dir / "audio.onnx")).graph
    made_by = {out: node for node in fp32.node for out in node.output}
    relus = {n.name: made_by[n.input[0]] for n in fp32.node if n.op_type == "Relu"}
    folded = {
        name
        for name, source in relus.items()
        if source.op_type == "Conv" and not source.input[1].startswith(FLOAT_CONVS)
    }
    assert folded and len(folded) < len(relus)
    graph = onnx.load(str(small_int8_dir / AUDIO_INT8)).graph
    producers = {out: node for node in graph.node for out in node.output}
    left = [n for n in graph.node if n.op_type == "Relu"]
    assert {n.name for n in left} == set(relus) - folded
    for relu in left:
        assert producers[relu.input[0]].op_type != "DequantizeLinear", relu.name


def test_attention_pool_query_projection_is_int8_and_its_per_head_products_stay_float(
    small_model_dir, small_int8_dir
):
    """The one-query pool's MatMuls: the query's projection (a [C, C] weight) is INT8; the
    key and value taken per head (a [heads, …] weight) and the products of two activations
    (scores, and the weights mixing the tokens) stay float."""
    fp32 = onnx.load(str(small_model_dir / "audio.onnx")).graph
    frontend = set(frontend_nodes(fp32))
    ranks = {init.name: len(init.dims) for init in fp32.initializer}
    pool = [n for n in fp32.node if n.op_type == "MatMul" and n.name not in frontend]
    weight_ranks = {n.name: max(ranks.get(name, 0) for name in n.input) for n in pool}
    query = {name for name, rank in weight_ranks.items() if rank == 2}
    per_head = {name for name, rank in weight_ranks.items() if rank == 3}
    products = {name for name, rank in weight_ranks.items() if rank == 0}
    assert (len(query), len(per_head), len(products)) == (1, 2, 2)
    graph = onnx.load(str(small_int8_dir / AUDIO_INT8)).graph
    producers = {out: node for node in graph.node for out in node.output}
    checked = [node for node in graph.node if node.name in weight_ranks]
    assert {node.name for node in checked} == set(weight_ranks)
    for node in checked:
        fed_by = {producers[i].op_type for i in node.input if i in producers}
        assert ("DequantizeLinear" in fed_by) == (node.name in query), node.name


@pytest.mark.parametrize(
    ("size", "cosine_min"), [("small", 0.98), pytest.param("demo", 0.99, marks=pytest.mark.slow)]
)
def test_int8_audio_stays_close_to_fp32(request, size, cosine_min):
    """The issue's bar (cosine >= 0.99 on joint embeddings) holds at full size; the
    8-channel-wide small model has too few channels per layer to average INT8 noise away."""
    folder = request.getfixturevalue(f"{size}_int8_dir")
    hp = HParams.from_dict(json.loads((folder / "manifest.json").read_text())["hparams"])
    for seed in (101, 102, 103):
        windows = track_windows(random_track(seed, 25.0), 22050, hp)
        floors = run(folder / "floor.onnx", {"waveform": windows})
        feed = {"waveform": windows, "floor": np.full(len(windows), floors.max(), np.float32)}
        fp32 = run(folder / "audio.onnx", feed).mean(0)
        int8 = run(folder / AUDIO_INT8, feed).mean(0)
        assert cosine(fp32, int8) >= cosine_min


def test_int8_text_stays_close_to_fp32(small_int8_dir, small_reference):
    tokens = small_reference.tokenize(["a calm piano piece", "fast drums and distorted guitar", ""])
    feed = token_feed(tokens)
    fp32 = run(small_int8_dir / "text.onnx", feed)
    int8 = run(small_int8_dir / TEXT_INT8, feed)
    assert cosine(fp32, int8).min() >= 0.99
    graph = onnx.load(str(small_int8_dir / TEXT_INT8)).graph
    assert any(node.op_type in {"MatMulInteger", "DynamicQuantizeLinear"} for node in graph.node)


def test_calibration_folder_without_audio_is_an_error(small_model_dir, tmp_path):
    with pytest.raises(ValueError, match="no audio files to calibrate on"):
        quantize_model(small_model_dir, calibration_dir=tmp_path)


def test_clap_int8_quantises_both_towers_dynamically_and_keeps_the_frontend_in_float(
    small_clap_model_dir, small_clap_int8
):
    folder, _ = small_clap_int8
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["int8"]["audio"] == AUDIO_INT8 and manifest["int8"]["text"] == TEXT_INT8
    fp32 = onnx.load(str(small_clap_model_dir / "audio.onnx")).graph
    frontend = {node.name: node.op_type for node in fp32.node if node.name in frontend_nodes(fp32)}
    assert "MatMul" in frontend.values()  # the mel filterbank
    for tower in ("audio", "text"):
        graph = onnx.load(str(folder / manifest["int8"][tower])).graph
        assert any(node.op_type == "DynamicQuantizeLinear" for node in graph.node), tower
    audio = {node.name: node.op_type for node in onnx.load(str(folder / AUDIO_INT8)).graph.node}
    assert {name: audio.get(name) for name in frontend} == frontend


@pytest.mark.parametrize("family", ["ttmrpp", "clap"])
@pytest.mark.slow  # end to end: kept out of the quick -m 'not slow' loop
def test_quantizer_prints_its_accuracy_on_the_held_out_hard_set_as_recomputed(request, family):
    folder, printed = request.getfixturevalue(
        "small_int8" if family == "ttmrpp" else "small_clap_int8"
    )
    (line,) = [line for line in printed.splitlines() if PRINTED_ACCURACY.search(line)]
    tracks, audio_min, worst, audio_mean, queries, text_min, text_mean = PRINTED_ACCURACY.search(
        line
    ).groups()
    held_out = hard_set(0)
    rows = {}
    for precision in ("fp32", "int8"):  # the quantiser measures onnxruntime's int8
        model = runtime.Embedder(folder, precision=precision, backend="onnxruntime")
        rows[precision] = (
            model.embed_audio(list(held_out.values()), RATE),
            model.embed_text(list(ACCURACY_QUERIES)),
        )
    audio = cosine(rows["fp32"][0], rows["int8"][0])
    text = cosine(rows["fp32"][1], rows["int8"][1])
    assert (int(tracks), int(queries)) == (len(held_out), len(ACCURACY_QUERIES))
    assert worst == list(held_out)[int(audio.argmin())]
    printed_values = [audio_min, audio_mean, text_min, text_mean]
    recomputed = [audio.min(), audio.mean(), text.min(), text.mean()]
    np.testing.assert_allclose([float(v) for v in printed_values], recomputed, rtol=0, atol=2e-5)


def documented_claim(model: str) -> float:
    """The worst INT8 audio cosine the performance page states for ``model`` on the hard set."""
    text = PERFORMANCE.read_text()
    (claim,) = re.findall(rf"^\| {re.escape(model)} \| ([\d.]+) \(", text, re.M)
    return float(claim)


def printed_audio_min(printed: str) -> float:
    (match,) = PRINTED_ACCURACY.finditer(printed)
    return float(match.group(2))


@pytest.mark.parametrize(
    ("quantized", "cosine_min"),
    [("small_int8", 0.98), ("small_clap_int8", 0.98)],
)
def test_small_models_int8_audio_on_the_hard_set_stays_close(request, quantized, cosine_min):
    """Looser than at full size: a few channels a layer average little INT8 noise away."""
    assert printed_audio_min(request.getfixturevalue(quantized)[1]) >= cosine_min


@pytest.mark.slow
@pytest.mark.parametrize(
    ("quantized", "model"), [("demo_int8", "TTMR++ demo"), ("demo_clap_int8", "CLAP demo")]
)
def test_full_size_int8_audio_on_the_hard_set_is_at_least_what_the_docs_state(
    request, quantized, model
):
    assert printed_audio_min(request.getfixturevalue(quantized)[1]) >= documented_claim(model)


def test_calibration_folder_for_clap_is_refused_as_its_int8_is_dynamic(
    small_clap_model_dir, tmp_path
):
    with pytest.raises(ValueError, match="dynamic: nothing to calibrate"):
        quantize_model(small_clap_model_dir, calibration_dir=tmp_path)
    assert not (small_clap_model_dir / AUDIO_INT8).exists()


@pytest.mark.parametrize(
    ("units", "backend"), [(["AVX-512 VNNI"], "openvino"), ([], "onnxruntime")]
)
def test_auto_int8_runs_on_openvino_only_where_the_cpu_has_int8_units(
    small_int8_dir, monkeypatch, units, backend
):
    """OpenVINO's int8 is faster with VNNI (docs/performance.md), no faster without."""
    pytest.importorskip("openvino", reason="scripts/setup.sh installs the openvino extra")
    monkeypatch.setattr(runtime.engines.choice, "named_flags", lambda table: units)
    model = runtime.Embedder(small_int8_dir, precision="int8")
    assert (model.backend, model.precision, model.note) == (backend, "int8", None)
    given = runtime.Embedder(small_int8_dir, precision="int8", providers=["CPUExecutionProvider"])
    assert given.backend == "onnxruntime"  # providers are onnxruntime's: they choose it


def graph_names(model: runtime.Embedder) -> dict[str, str]:
    """The graph file each tower of ``model`` runs."""
    return {tower: path.name for tower, path in model._sessions.paths.items()}


@pytest.mark.parametrize("bf16_units", [True, False])
def test_openvino_int8_runs_the_int8_audio_graph_and_the_text_graph_with_int8_weights(
    small_int8_dir, monkeypatch, bf16_units
):
    """int8 on OpenVINO: the folder's QDQ audio graph after an f32 frontend, its float
    layers in bf16 where the CPU has bf16 units (else f32), as close to fp32 as
    onnxruntime's int8 (the measured bound of quantize.py's print); the fp32 text graph with
    its MatMul weights stored in int8 (OpenVINO runs onnxruntime's dynamic text graph slower
    than fp32)."""
    pytest.importorskip("openvino", reason="scripts/setup.sh installs the openvino extra")
    if bf16_units and not ov_session.has_bf16_units():
        pytest.skip("this CPU has no bf16 units (AMX-BF16/AVX-512-BF16)")
    monkeypatch.setattr(ov_session, "has_bf16_units", lambda: bf16_units)
    fp32 = runtime.Embedder(small_int8_dir)
    on_ort = runtime.Embedder(small_int8_dir, backend="onnxruntime", precision="int8")
    on_ov = runtime.Embedder(small_int8_dir, backend="openvino", precision="int8")
    tracks = [random_track(seed, 20.0, RATE) for seed in (3, 4)]
    exact, ort8, ov8 = (m.embed_audio(tracks, sample_rate=RATE) for m in (fp32, on_ort, on_ov))
    assert cosines(ort8, ov8).min() > 0.999
    assert cosines(exact, ov8).min() > cosines(exact, ort8).min() - 1e-3
    manifest = read_manifest(small_int8_dir)
    files = {model: graph_names(model) for model in (on_ort, on_ov)}
    assert files[on_ov]["text"] == manifest.text.file
    assert files[on_ov]["audio"] == files[on_ort]["audio"] == manifest.int8.audio
    texts = list(ACCURACY_QUERIES)
    exact, ov8 = fp32.embed_text(texts), on_ov.embed_text(texts)
    assert cosines(exact, ov8).min() > 0.999
    assert not np.allclose(exact, ov8, rtol=0, atol=1e-6)  # the weights are int8 indeed
    layers = "bf16" if bf16_units else "f32"
    assert on_ov.providers == [f"OpenVINO CPU (int8, float layers in {layers})"]
    parts = on_ov._sessions.get("audio").parts
    precisions = [part.get_property("INFERENCE_PRECISION_HINT").get_type_name() for part in parts]
    assert precisions == ["f32", "f32", layers]  # log-mel, floor, network


@pytest.mark.parametrize("quantized", ["small_clap_int8", "small_muscall_int8"])
def test_openvino_int8_of_a_dynamically_quantised_family_stores_its_fp32_weights_in_int8(
    request, quantized
):
    """CLAP's and MusCALL's int8 graphs are onnxruntime's dynamic quantisation: OpenVINO
    runs both fp32 graphs instead, the MatMul weights stored in int8 and the audio frontend
    left in f32."""
    pytest.importorskip("openvino", reason="scripts/setup.sh installs the openvino extra")
    folder = request.getfixturevalue(quantized)[0]
    manifest = read_manifest(folder)
    fp32 = runtime.Embedder(folder)
    on_ov = runtime.Embedder(folder, backend="openvino", precision="int8")
    assert graph_names(on_ov) == {"audio": manifest.audio.file, "text": manifest.text.file}
    rate = manifest.audio.sample_rate
    tracks = [random_track(seed, 12.0, rate) for seed in (3, 4)]
    exact, ov8 = (m.embed_audio(tracks, sample_rate=rate) for m in (fp32, on_ov))
    assert cosines(exact, ov8).min() > 0.99
    assert not np.allclose(exact, ov8, rtol=0, atol=1e-6)
    frontend, _ = on_ov._sessions.get("audio").parts
    assert frontend.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"


@pytest.mark.slow
def test_openvino_int8_on_the_full_size_model_is_within_the_readme_bounds(demo_int8_dir):
    """The bounds the documentation states for int8 (audio cosine ≥ 0.999, text ≥ 0.998), with the
    float layers in bf16 where the CPU has bf16 units (measured 0.9993 on AVX-512-BF16)."""
    pytest.importorskip("openvino", reason="scripts/setup.sh installs the openvino extra")
    fp32 = runtime.Embedder(demo_int8_dir)
    on_ov = runtime.Embedder(demo_int8_dir, backend="openvino", precision="int8")
    tracks = [random_track(seed, 20.0, RATE) for seed in range(6)]
    audio = [m.embed_audio(tracks, sample_rate=RATE) for m in (fp32, on_ov)]
    assert cosines(*audio).min() >= 0.999
    texts = list(ACCURACY_QUERIES)
    assert cosines(fp32.embed_text(texts), on_ov.embed_text(texts)).min() >= 0.998
