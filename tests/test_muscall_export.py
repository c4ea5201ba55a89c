"""MusCALL's exported graphs against its reference: the in-graph log-mel against float64
numpy, both towers and both spaces at small and full size, ``tokenizer.json`` against
transformers 4's slow ``CLIPTokenizer``, the manifest, and the exporter's usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tokenizers import Tokenizer

from export.to_onnx import main
from tests.muscall_oracle import htk_bank, log_mel
from tests.test_export_parity import session, token_feed
from tests.test_muscall_reference import tones
from tests.test_runtime_parity import assert_close

COSINE_MIN = 0.999999  # the bound
REL_ERROR_MAX = 1e-5  # max |ort - ref| / max |ref|
LOG_MEL_ATOL = 1e-4  # dB, after the 100-dB clamp
SLOW_CLIP = Path(sys.prefix) / "clip-slow" / "bin" / "python"  # scripts/setup.sh makes it

TEXTS = [
    "",
    "a calm solo piano piece in D",
    "A Calm SOLO Piano Piece In D!",
    "café, naïve façade — Ünïcödé élan",
    "tabs\tbetween\twords\nand new\r\nlines",
    "punctuation: (parens), [brackets]; 'quotes' \"double\"... it's ok?!",
    "  leading and trailing spaces  ",
    "distorted guitars and fast drums " * 20,  # past 77 tokens: truncated
]
# Read by transformers 4's slow CLIPTokenizer, as MusCALL reads them.
SLOW_ENCODE = """
import json, sys
from transformers import CLIPTokenizer
folder, texts = sys.argv[1], json.load(sys.stdin)
tokenizer = CLIPTokenizer(folder + "/vocab.json", folder + "/merges.txt")
print(json.dumps([tokenizer.encode(t, max_length=77, truncation=True) for t in texts]))
"""


def exposed_log_mel(model_dir: Path) -> tuple[ort.InferenceSession, str]:
    """A session whose extra output is the first convolution's input: the clamped log-mel."""
    graph = onnx.load(str(model_dir / "audio.onnx"))
    conv = next(node for node in graph.graph.node if node.op_type == "Conv")
    graph.graph.output.append(onnx.ValueInfoProto(name=conv.input[0]))
    options = {"providers": ["CPUExecutionProvider"]}
    return ort.InferenceSession(graph.SerializeToString(), **options), conv.input[0]


def test_in_graph_log_mel_equals_float64_numpy(small_muscall_model_dir):
    exposed, name = exposed_log_mel(small_muscall_model_dir)
    audio = tones(4, seed=3)
    audio[-1, : audio.shape[1] // 2] = 0.0  # digital silence: clamped at max - 100 dB
    (got,) = exposed.run([name], {"waveform": audio})
    expected = log_mel(audio, htk_bank(16000, 1024, 128, 0, 11025))
    assert got.shape == (4, 1, 128, 626)
    np.testing.assert_allclose(got[:, 0], expected, rtol=0, atol=LOG_MEL_ATOL)
    assert (expected[0] == expected[0].max() - 100).any()  # the clamp was exercised


@pytest.mark.parametrize(
    ("size", "windows"),
    [("small", 1), ("small", 3), pytest.param("demo", 3, marks=pytest.mark.slow)],
)
def test_audio_graph_matches_the_reference(request, size, windows):
    model_dir = request.getfixturevalue(f"{size}_muscall_model_dir")
    reference = request.getfixturevalue(f"{size}_muscall_reference")
    audio = tones(windows, seed=windows)
    joint, encoder = session(model_dir / "audio.onnx").run(None, {"waveform": audio})
    ref_joint, ref_encoder = reference.audio_encode(torch.from_numpy(audio))
    assert_close(ref_joint.numpy(), joint, COSINE_MIN, REL_ERROR_MAX)
    assert_close(ref_encoder.numpy(), encoder, COSINE_MIN, REL_ERROR_MAX)


@pytest.mark.parametrize("size", ["small", pytest.param("demo", marks=pytest.mark.slow)])
def test_text_graph_matches_the_reference(request, size):
    model_dir = request.getfixturevalue(f"{size}_muscall_model_dir")
    reference = request.getfixturevalue(f"{size}_muscall_reference")
    tokens = reference.tokenize(TEXTS)
    joint, encoder = session(model_dir / "text.onnx").run(None, token_feed(tokens))
    ref_joint, ref_encoder = reference.text_encode(TEXTS)
    assert_close(ref_joint.numpy(), joint, COSINE_MIN, REL_ERROR_MAX)
    assert_close(ref_encoder.numpy(), encoder, COSINE_MIN, REL_ERROR_MAX)


def test_tokenizer_json_equals_the_slow_clip_tokenizer(small_muscall_export):
    model_dir, (_, _, vocabulary) = small_muscall_export
    slow = subprocess.run(
        [str(SLOW_CLIP), "-c", SLOW_ENCODE, str(vocabulary)],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        check=True,
    )
    expected = json.loads(slow.stdout)
    got = [
        e.ids for e in Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode_batch(TEXTS)
    ]
    assert got == expected
    assert len(expected[-1]) == 77 and expected[-1][-1] == max(expected[-1])  # end token kept
    assert expected[0] == [expected[1][0], expected[1][-1]]  # empty: start and end only


def test_manifest_says_how_to_preprocess(small_muscall_model_dir):
    manifest = json.loads((small_muscall_model_dir / "manifest.json").read_text())
    assert manifest["family"] == "muscall"
    assert manifest["audio"]["sample_rate"] == 16000
    assert manifest["audio"]["window_samples"] == 320000
    assert manifest["audio"]["preprocessing"] == {
        "peak_normalise": False,
        "int16": False,
        "short_audio": "zero_pad",
    }
    assert [i["name"] for i in manifest["audio"]["inputs"]] == ["waveform"]
    assert manifest["audio"]["inputs"][0]["shape"] == ["batch", 320000]
    text = manifest["text"]
    assert (text["max_length"], text["padding"], text["pad_token_id"]) == (77, "max_length", 0)
    assert manifest["hparams"]["audio"]["f_max"] == 11025


def test_demo_is_the_default_architecture_with_random_weights(demo_muscall_export):
    model_dir, (checkpoint, _, _), log = demo_muscall_export
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["random_weights"] is True and "RANDOM WEIGHTS" in log
    assert manifest["checkpoint"]["file"] == checkpoint.name
    outputs = {o["name"]: o["shape"] for o in manifest["audio"]["outputs"]}
    assert outputs == {"joint": ["batch", 512], "encoder": ["batch", 256]}
    outputs = {o["name"]: o["shape"] for o in manifest["text"]["outputs"]}
    assert outputs == {"joint": ["batch", 512], "encoder": ["batch", 512]}


@pytest.mark.parametrize(
    "args",
    [
        ["--family", "muscall"],
        ["--family", "muscall", "--demo", "--checkpoint", "x.pth.tar"],
        ["--family", "muscall", "--checkpoint", "x", "--config", "y"],
        ["--family", "muscall", "--demo", "--hf-model", "x"],
    ],
)
def test_usage_errors(tmp_path, args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "to_onnx.py: error:" in capsys.readouterr().err
