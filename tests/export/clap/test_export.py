"""CLAP's exported graphs against the reference (transformers' ClapModel and
ClapFeatureExtractor): the in-graph log-mel and the unnormalised joint space (both towers'
parity, small and full size, is in test_export_parity.py with every family's); what the
manifest says; what the exporter refuses."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.clap.demo import write_demo_folder
from export.clap.reference import load_hf_folder
from export.to_onnx import main
from tests.helpers import (
    FAMILY_CASES,
    SMALL_CLAP_AUDIO,
    SMALL_CLAP_TEXT,
    log_mel_tensor,
    session,
    token_feed,
)
from tests.helpers import clap_windows as windows_of

LOG_MEL_ATOL = 1e-4  # dB; measured ~8e-6
RATE = 48000
TEXTS = list(FAMILY_CASES["clap"].texts)


def test_in_graph_log_mel_equals_the_feature_extractor(small_clap_model_dir, small_clap_reference):
    graph = onnx.load(str(small_clap_model_dir / "audio.onnx"))
    name = log_mel_tensor(graph.graph)
    graph.graph.output.append(onnx.ValueInfoProto(name=name))
    exposed = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    audio = windows_of(4, seed=3)
    (log_mel,) = exposed.run([name], {"waveform": audio})
    expected = small_clap_reference.features(list(audio), sampling_rate=RATE, return_tensors="np")[
        "input_features"
    ]
    assert expected.shape == (4, 1, 1001, 64)
    assert log_mel.shape == (4, 1001, 64)
    np.testing.assert_allclose(log_mel, expected[:, 0], rtol=0, atol=LOG_MEL_ATOL)
    assert expected.min() == pytest.approx(-100.0)  # the floor was exercised


def test_joint_is_get_features_before_normalisation(small_clap_model_dir, small_clap_reference):
    """``joint`` normalised is what ClapModel.get_audio_features / get_text_features give."""
    model = small_clap_reference.model
    audio = windows_of(2, seed=7)
    (joint,) = session(small_clap_model_dir / "audio.onnx").run(["joint"], {"waveform": audio})
    with torch.inference_mode():
        features = model.get_audio_features(
            input_features=small_clap_reference.log_mel(audio)
        ).pooler_output.numpy()
    unit = joint / np.linalg.norm(joint, axis=1, keepdims=True)
    np.testing.assert_allclose(unit, features, rtol=0, atol=1e-5)
    assert not np.allclose(np.linalg.norm(joint, axis=1), 1.0, atol=1e-3)
    tokens = small_clap_reference.tokenize(TEXTS)
    feed = token_feed(tokens)
    (joint,) = session(small_clap_model_dir / "text.onnx").run(["joint"], feed)
    with torch.inference_mode():
        features = model.get_text_features(**tokens).pooler_output.numpy()
    unit = joint / np.linalg.norm(joint, axis=1, keepdims=True)
    np.testing.assert_allclose(unit, features, rtol=0, atol=1e-5)


def test_graphs_use_only_plain_operators(small_clap_model_dir):
    for name in ("audio.onnx", "text.onnx"):
        graph = onnx.load(str(small_clap_model_dir / name))
        onnx.checker.check_model(graph, full_check=True)
        ops = {node.op_type for node in graph.graph.node}
        assert not ops & {"BatchNormalization", "STFT", "DFT", "Resize", "Constant"}, name
        initializers = {init.name for init in graph.graph.initializer}
        foldable = [n.name for n in graph.graph.node if set(n.input) - {""} <= initializers]
        assert foldable == [], name


def test_manifest_says_how_to_preprocess(small_clap_model_dir):
    manifest = json.loads((small_clap_model_dir / "manifest.json").read_text())
    assert manifest["family"] == "clap"
    assert manifest["random_weights"] is False  # exported from a folder: the exporter can't tell
    audio, text = manifest["audio"], manifest["text"]
    assert audio["sample_rate"] == 48000 and audio["window_samples"] == 480000
    assert manifest["checkpoint"]["origin"] == "huggingface"
    assert audio["preprocessing"] == {  # transformers' ClapFeatureExtractor: no int16
        "peak_normalise": False,
        "int16": False,
        "short_audio": "repeat_pad",
    }
    assert audio["inputs"] == [{"name": "waveform", "dtype": "float32", "shape": ["batch", 480000]}]
    assert [o["shape"] for o in audio["outputs"]] == [["batch", 32], ["batch", 128]]
    assert text["max_length"] == 77 and text["padding"] == "longest" and text["pad_token_id"] == 1
    assert [o["shape"] for o in text["outputs"]] == [["batch", 32], ["batch", 32]]
    assert manifest["hparams"]["audio"]["depths"] == SMALL_CLAP_AUDIO["depths"]
    assert manifest["hparams"]["features"]["frequency_min"] == 50


@pytest.mark.slow
def test_demo_is_larger_clap_music_with_random_weights(demo_clap_export):
    folder, log = demo_clap_export
    assert log.count("RANDOM WEIGHTS") >= 2 and "Validating against the PyTorch reference" in log
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["random_weights"] is True and manifest["family"] == "clap"
    assert manifest["hparams"]["audio"]["depths"] == [2, 2, 12, 2]
    assert manifest["hparams"]["audio"]["patch_embeds_hidden_size"] == 128
    assert [o["shape"][1] for o in manifest["audio"]["outputs"]] == [512, 1024]
    assert [o["shape"][1] for o in manifest["text"]["outputs"]] == [512, 768]
    assert (folder / "checkpoint" / "preprocessor_config.json").is_file()


def test_fusion_checkpoints_are_refused(tmp_path, capsys):
    folder = write_demo_folder(
        tmp_path / "fused",
        audio={**SMALL_CLAP_AUDIO, "enable_fusion": True, "fusion_type": "aff_2d"},
        text=SMALL_CLAP_TEXT,
        projection_dim=32,
    )
    with pytest.raises(ValueError, match="fusion"):
        load_hf_folder(folder)
    code = main(["--family", "clap", "--hf-model", str(folder), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("to_onnx.py: error:") and err.count("\n") == 1


def test_paddings_other_than_repeatpad_are_refused(small_clap_export, tmp_path):
    """The runtime repeat-pads short tracks as ``padding="repeatpad"`` does; a folder whose
    feature extractor says ``repeat`` or ``pad`` would be embedded otherwise by transformers."""
    folder = tmp_path / "hf"
    shutil.copytree(small_clap_export[1], folder)
    config = folder / "preprocessor_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "padding": "repeat"}))
    with pytest.raises(ValueError, match="padding is 'repeat'"):
        load_hf_folder(folder)


@pytest.mark.parametrize(
    "args",
    [
        ["--family", "clap", "--checkpoint", "x.pt"],  # no --text-arch
        ["--family", "clap", "--demo", "--hf-model", "d"],
        ["--family", "clap", "--hf-model", "d", "--config", "x.yaml"],
        ["--hf-model", "d"],  # TTMR++ has no Hugging Face folders
        ["--family", "clap"],
    ],
)
def test_usage_errors(tmp_path, args):
    with pytest.raises(SystemExit) as raised:
        main([*args, "--output", str(tmp_path)])
    assert raised.value.code == 2
