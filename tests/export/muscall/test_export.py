"""MusCALL's export beyond the parity every family gets (tests/export/test_parity.py): the
in-graph log-mel against float64 numpy, ``tokenizer.json`` against transformers 4's slow
``CLIPTokenizer``, the manifest, the demo, and the exporter's usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from export.to_onnx import main
from tests.helpers import FAMILY_CASES, muscall_windows
from tests.muscall_oracle import htk_bank, log_mel

LOG_MEL_ATOL = 1e-4  # dB, after the 100-dB clamp
SLOW_CLIP = Path(sys.prefix) / "clip-slow" / "bin" / "python"  # scripts/setup.sh makes it

TEXTS = list(FAMILY_CASES["muscall"].texts)
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
    audio = muscall_windows(4, seed=3)
    audio[-1, : audio.shape[1] // 2] = 0.0  # digital silence: clamped at max - 100 dB
    (got,) = exposed.run([name], {"waveform": audio})
    expected = log_mel(audio, htk_bank(16000, 1024, 128, 0, 11025))
    assert got.shape == (4, 1, 128, 626)
    np.testing.assert_allclose(got[:, 0], expected, rtol=0, atol=LOG_MEL_ATOL)
    assert (expected[0] == expected[0].max() - 100).any()  # the clamp was exercised


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
    assert (text["max_length"], text["padding"], text["pad_token_id"]) == (77, "longest", 0)
    assert manifest["hparams"]["audio"]["f_max"] == 11025


@pytest.mark.slow
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
