"""The OpenVINO backend: the same graphs give the reference's embeddings at fp32 for every
family; bf16 where the CPU has bf16 units, and a clean fall back (or a clear error) where
it has none or OpenVINO is not installed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

import runtime
import runtime.engines.openvino as ov_session
from export.quantize import cosines
from export.synthetic import random_track
from runtime.cli.main import main
from runtime.engines import HandOver
from runtime.engines.folder import Tuning
from runtime.manifest import read_manifest
from tests.helpers import FAMILY_CASES

pytest.importorskip("openvino", reason="scripts/setup.sh installs the openvino extra")

HAS_BF16 = ov_session.openvino_problem("bf16") is None


@pytest.fixture(scope="module")
def openvino_embedders(request):
    made = {}

    def of(family: str) -> runtime.Embedder:
        if family not in made:
            model_dir, _ = FAMILY_CASES[family].model(request, "small")
            made[family] = runtime.Embedder(model_dir, backend="openvino", batch_size=4)
        return made[family]

    return of


@pytest.mark.parametrize("family", FAMILY_CASES)
def test_openvino_fp32_matches_reference_audio_and_text(request, openvino_embedders, family):
    """Several windows in calls of 4 (a short last call: the batch is dynamic) and texts of
    every length (so is the text length), at the tolerances onnxruntime is held to."""
    case = FAMILY_CASES[family]
    _, reference = case.model(request, "small")
    model = openvino_embedders(family)
    tracks = [random_track(1, 3.0, case.rate), 0.5 * random_track(2, 75.0, case.rate)]
    got = model.embed_audio(tracks, sample_rate=case.rate)
    case.assert_close(np.stack([reference.embed_track(t, case.rate)[0] for t in tracks]), got)
    case.assert_close(reference.text_encode(list(case.texts))[0], model.embed_text(case.texts))
    assert model.backend == "openvino" and model.precision == "fp32"
    assert model.providers == ["OpenVINO CPU (inference precision f32)"]


def test_openvino_honours_threads_and_reuses_sessions(small_model_dir):
    model = runtime.Embedder(small_model_dir, backend="openvino", threads=1)
    model.embed_text(["piano"])
    session = model._sessions.get("text")
    model.embed_text(["drums and bass", "a calm solo piano piece in D"])
    assert model._sessions.get("text") is session and session.threads == 1
    assert "1 threads" in model.describe()


def test_openvino_runs_from_many_threads_at_once(small_model_dir):
    from concurrent.futures import ThreadPoolExecutor

    model = runtime.Embedder(small_model_dir, backend="openvino")
    texts = [f"song number {i} " * (i % 5 + 1) for i in range(16)]
    alone = model.embed_text(texts)
    with ThreadPoolExecutor(8) as pool:
        rows = list(pool.map(lambda t: model.embed_text([t])[0], texts))
    np.testing.assert_allclose(np.stack(rows), alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", FAMILY_CASES)
def test_an_audio_graph_split_at_its_frontend_computes_what_the_whole_graph_does(request, family):
    """bf16 runs the frontend and the network as two graphs: chained, both in f32, they
    must give the whole graph's outputs; a text graph (no convolution) is not split."""
    model_dir, _ = FAMILY_CASES[family].model(request, "small")
    manifest = read_manifest(model_dir)
    audio = manifest.audio
    seconds = audio.window_samples / audio.sample_rate + 0.5
    tracks = [random_track(seed, seconds, audio.sample_rate) for seed in (1, 2)]
    feed = {"waveform": np.stack([t[: audio.window_samples] for t in tracks])}
    if "floor" in {tensor.name for tensor in audio.inputs}:
        feed["floor"] = np.array([-3.0, -5.0], np.float32)
    exact = {"INFERENCE_PRECISION_HINT": "f32"}
    whole = ov_session.core().compile_model(str(model_dir / manifest.audio.file), "CPU", exact)
    expected = whole.create_infer_request().infer(feed)
    frontend, network = (
        ov_session.core().compile_model(part, "CPU", exact)
        for part in ov_session.split_at_frontend(
            ov_session.read_model(model_dir / manifest.audio.file)
        )
    )
    features = frontend.create_infer_request().infer(feed)[frontend.output(0)]
    assert frontend.output(0).get_partial_shape().rank.get_length() == 4  # [B, C, mels, frames]
    rest = {name: feed[name] for name in feed if name in {i.get_any_name() for i in network.inputs}}
    got = network.create_infer_request().infer({ov_session.FRONTEND: features, **rest})
    for name in ("joint", "encoder"):
        np.testing.assert_allclose(
            got[network.output(name)], expected[whole.output(name)], rtol=0, atol=1e-5
        )
    (text,) = ov_session.split_at_frontend(ov_session.read_model(model_dir / manifest.text.file))
    assert {port.get_any_name() for port in text.inputs} == {i.name for i in manifest.text.inputs}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_floor_graph_hands_its_log_mel_to_the_audio_graph(small_model_dir, precision):
    """TTMR++ on OpenVINO: the floor graph also gives the log-mel it computes, and the
    audio graph given that log-mel skips its own frontend and computes what it does from
    the waveform, bit for bit."""
    if precision == "bf16" and not HAS_BF16:
        pytest.skip("this CPU has no bf16 units (AMX-BF16/AVX-512-BF16)")
    floor, audio, hand_over = ov_session.OpenVINOSession.floored_pair(
        small_model_dir / "floor.onnx", small_model_dir / "audio.onnx", precision
    )
    assert ov_session.LOG_MEL in floor.outputs
    assert hand_over == HandOver(ov_session.LOG_MEL, ov_session.KEPT_WINDOWS)
    # bf16 also splits the f32 flooring from the bf16 network, after the log-mel.
    split = [ov_session.FRONTEND] if precision == "bf16" else []
    assert audio.hands_on == [ov_session.LOG_MEL, *split, None]
    windows = np.stack([random_track(seed, 10.0, 22050)[:220500] for seed in (1, 2, 3)])
    rows, log_mel = floor.run(["floor", ov_session.LOG_MEL], {"waveform": windows})
    (alone,) = ov_session.OpenVINOSession(small_model_dir / "floor.onnx", "fp32").run(
        ["floor"], {"waveform": windows}
    )
    np.testing.assert_array_equal(rows, alone)
    feed = {"waveform": windows, "floor": np.full(3, rows.max(), np.float32)}
    from_waveform = audio.run(["joint"], feed)[0]
    from_log_mel = audio.run(["joint"], {**feed, ov_session.LOG_MEL: log_mel})[0]
    np.testing.assert_array_equal(from_log_mel, from_waveform)


def test_openvino_embeds_tracks_the_same_with_the_log_mel_kept_or_computed_again(
    small_model_dir, monkeypatch
):
    """With the floor pass's log-mel kept (groups of up to ``KEPT_WINDOWS`` windows) or
    computed again (a track longer than that), the onnxruntime embedding; while kept,
    no audio call computes a log-mel of its own. The tracks' 3, 1 and 5 windows go in the
    same pairs both ways, since a row's last bits may depend on what else is in its batch
    (a batch of one takes other GEMM kernels, in onnxruntime as in OpenVINO)."""
    tracks = [random_track(seed, s, 22050) for seed, s in ((1, 32.0), (2, 8.0), (3, 51.0))]
    expected = runtime.Embedder(small_model_dir).embed_audio(tracks, sample_rate=22050)
    feeds: list[set[str]] = []

    def spied() -> runtime.Embedder:
        """An OpenVINO Embedder whose audio session records the inputs of each call."""
        model = runtime.Embedder(small_model_dir, backend="openvino", batch_size=2)
        audio = model._sessions.get("audio")
        real_run = audio.run
        monkeypatch.setattr(
            audio, "run", lambda names, feed: feeds.append(set(feed)) or real_run(names, feed)
        )
        return model

    model = spied()
    kept = model.embed_audio(tracks, sample_rate=22050)
    assert feeds and all(ov_session.LOG_MEL in feed for feed in feeds)
    np.testing.assert_allclose(kept, expected, rtol=0, atol=2e-5)
    feeds.clear()
    longest = len(model.load_tracks(tracks[2:], 22050)[0].windows)
    monkeypatch.setattr(ov_session, "KEPT_WINDOWS", longest - 1)  # the 51-s track alone
    again = spied().embed_audio(tracks, sample_rate=22050)
    assert sum(ov_session.LOG_MEL not in feed for feed in feeds) == math.ceil(longest / 2)
    np.testing.assert_array_equal(again, kept)


def test_a_file_openvino_cannot_read_is_an_input_error_naming_it(small_model_dir, tmp_path):
    broken = tmp_path / "floor.onnx"
    broken.write_bytes(b"not a graph")
    with pytest.raises(runtime.InputError, match=r"floor\.onnx: not a graph OpenVINO can load"):
        ov_session.OpenVINOSession(broken, "fp32")
    with pytest.raises(runtime.InputError, match=r"floor\.onnx: not a graph OpenVINO can load"):
        ov_session.OpenVINOSession.floored_pair(broken, small_model_dir / "audio.onnx", "fp32")
    assert issubclass(runtime.ModelFolderError, runtime.InputError)


def test_graphs_without_one_shared_log_mel_open_as_two_plain_sessions(small_model_dir, monkeypatch):
    """Where the floor and audio graphs share no single tensor, each computes its own
    frontend, and the embeddings are still onnxruntime's."""
    monkeypatch.setattr(ov_session, "shared_output", lambda audio, floor: None)
    model = runtime.Embedder(small_model_dir, backend="openvino")
    assert ov_session.LOG_MEL not in model._sessions.get("floor").outputs
    assert model._sessions.get("audio").hands_on == [None]  # fp32: the whole graph
    assert model._sessions.hand_over() is None
    tracks = [random_track(seed, 25.0, 22050) for seed in (1, 2)]
    expected = runtime.Embedder(small_model_dir).embed_audio(tracks, sample_rate=22050)
    got = model.embed_audio(tracks, sample_rate=22050)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 units (AMX-BF16/AVX-512-BF16)")
def test_bf16_is_close_to_fp32_on_the_full_size_model(demo_model_dir):
    """The bounds the README states for bf16: audio cosine ≥ 0.999, text ≥ 0.998. The
    audio frontend runs in f32 (in bf16 the same tracks fell to 0.9977)."""
    fp32 = runtime.Embedder(demo_model_dir)
    bf16 = runtime.Embedder(demo_model_dir, precision="bf16")
    assert bf16.backend == "openvino" and bf16.precision == "bf16" and bf16.note is None
    tracks = [random_track(seed, 20.0, 22050) for seed in range(4)]
    audio = [m.embed_audio(tracks, sample_rate=22050) for m in (fp32, bf16)]
    assert cosines(*audio).min() >= 0.999
    texts = ["a calm solo piano piece in D", "techno 130 bpm", "lo-fi hip hop beat"]
    assert cosines(fp32.embed_text(texts), bf16.embed_text(texts)).min() >= 0.998
    assert bf16.providers == ["OpenVINO CPU (inference precision bf16)"]
    parts = bf16._sessions.get("audio").parts
    precisions = [part.get_property("INFERENCE_PRECISION_HINT").get_type_name() for part in parts]
    assert precisions == ["f32", "f32", "bf16"]  # log-mel, floor, network


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 units (AMX-BF16/AVX-512-BF16)")
def test_whole_graph_tuning_compiles_every_graph_whole_at_the_precision(small_model_dir):
    """``Tuning(openvino_whole_graphs=True)`` (the bench's row of OpenVINO's own bf16): no
    f32 frontend, the floor graph in bf16 too, nothing handed over; the default splits."""
    whole = runtime.Embedder(
        small_model_dir, precision="bf16", tuning=Tuning(openvino_whole_graphs=True)
    )
    split = runtime.Embedder(small_model_dir, precision="bf16")
    for tower in ("floor", "audio"):
        (part,) = whole._sessions.get(tower).parts
        assert part.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
    assert whole._sessions.hand_over() is None
    assert len(split._sessions.get("audio").parts) == 3 and split._sessions.hand_over()
    track = [random_track(1, 12.0, 22050)]
    got, fp32 = (
        whole.embed_audio(track, sample_rate=22050),
        split.embed_audio(track, sample_rate=22050),
    )
    assert cosines(got, fp32).min() > 0.9


def without_bf16_units(monkeypatch):
    monkeypatch.setattr(ov_session, "cpu_capabilities", lambda: ["FP32", "INT8"])


def without_openvino(monkeypatch):
    monkeypatch.setattr(ov_session, "openvino_installed", lambda: False)


@pytest.mark.parametrize("simulate", [without_bf16_units, without_openvino])
def test_auto_bf16_falls_back_to_exact_fp32_on_onnxruntime(small_model_dir, monkeypatch, simulate):
    simulate(monkeypatch)
    model = runtime.Embedder(small_model_dir, precision="bf16")
    assert (model.backend, model.precision) == ("onnxruntime", "fp32")
    assert model.note.startswith("bf16 asked for, but ") and model.note.endswith("running fp32")
    exact = runtime.Embedder(small_model_dir)
    np.testing.assert_array_equal(model.embed_text(["piano"]), exact.embed_text(["piano"]))


@pytest.mark.parametrize(
    ("simulate", "why"),
    [(without_bf16_units, "no bf16 units"), (without_openvino, "OpenVINO is not installed")],
)
def test_explicit_openvino_bf16_that_cannot_run_is_an_error(
    small_model_dir, monkeypatch, simulate, why
):
    simulate(monkeypatch)
    with pytest.raises(runtime.InputError, match=why):
        runtime.Embedder(small_model_dir, backend="openvino", precision="bf16")


def test_auto_never_lowers_precision_and_fp32_stays_on_onnxruntime(small_model_dir):
    model = runtime.Embedder(small_model_dir)
    assert (model.backend, model.precision, model.note) == ("onnxruntime", "fp32", None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "onnxruntime", "precision": "bf16"}, "bf16 runs on OpenVINO"),
        ({"backend": "tensorrt", "precision": "bf16"}, "fp32 or fp16, not bf16"),
        ({"backend": "openvino", "providers": ["CPUExecutionProvider"]}, "takes none"),
        ({"backend": "openvino", "precision": "fp16"}, "not fp16"),
    ],
)
def test_impossible_engine_choices_are_refused_by_name(small_model_dir, options, message):
    with pytest.raises(runtime.InputError, match=message):
        runtime.Embedder(small_model_dir, **options)


def test_cli_backend_openvino_says_once_what_runs(small_model_dir, tmp_path, capsys):
    out = tmp_path / "q.npy"
    args = ["embed-text", "piano", "drums", "--backend", "openvino", "--out", str(out)]
    assert main([*args, "--model-dir", str(small_model_dir)]) == 0
    err = capsys.readouterr().err
    assert err.count("ttmr: running on openvino, fp32: OpenVINO CPU") == 1
    reference = runtime.Embedder(small_model_dir).embed_text(["piano", "drums"])
    assert cosines(np.load(out), reference).min() > 0.999999


def test_ttmr_index_says_once_what_runs_the_audio_tower_not_its_floor_graph(
    small_model_dir, tmp_path, capsys
):
    """TTMR++ opens its f32 floor graph first; the line is said when the audio tower opens,
    with what the plugin settled on."""
    music = tmp_path / "music"
    music.mkdir()
    sf.write(music / "a.wav", random_track(1, 12.0, 22050), 22050)
    args = ["index", str(music), "--out", str(tmp_path / "catalog"), "--backend", "openvino"]
    assert main([*args, "--model-dir", str(small_model_dir)]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "running on" in line]
    assert lines == ["ttmr: running on openvino, fp32: OpenVINO CPU (inference precision f32)"]
