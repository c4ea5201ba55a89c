"""export/to_tensorrt.py without TensorRT: the optimisation profiles and the manifest record
it derives from a model folder, and how it refuses (no TensorRT, a graph TensorRT lacks
operators for). Building engines needs TensorRT and a GPU, which these machines lack."""

from __future__ import annotations

import shutil
import sys

import onnx
import pytest
from onnx import TensorProto, helper

from export.to_tensorrt import BuildError, check_graphs, main, profile_shapes, record_engines
from runtime.manifest import Manifest, read_manifest
from tests.helpers import padded_to_max_length


def manifest_of(model_dir) -> Manifest:
    return read_manifest(model_dir)


def test_ttmrpp_profiles_span_the_batch_and_the_token_length(small_model_dir):
    manifest = manifest_of(small_model_dir)
    assert profile_shapes(manifest, "audio", 64, 128) == {
        "waveform": ((1, 220500), (64, 220500), (64, 220500)),
        "floor": ((1,), (64,), (64,)),
    }
    assert profile_shapes(manifest, "floor", 64, 128) == {
        "waveform": ((1, 220500), (64, 220500), (64, 220500)),
    }
    tokens = ((1, 1), (64, 128), (64, 128))
    assert profile_shapes(manifest, "text", 64, 128) == {
        "input_ids": tokens,
        "attention_mask": tokens,
    }
    shorter = profile_shapes(manifest, "text", 8, 32)["input_ids"]
    assert shorter == ((1, 1), (8, 32), (8, 32))
    # The tokenizer truncates at 128: a longer profile would never be used.
    assert profile_shapes(manifest, "text", 8, 512)["input_ids"][2] == (8, 128)


def test_clap_text_profile_spans_the_token_length_up_to_77(small_clap_model_dir):
    manifest = manifest_of(small_clap_model_dir)
    assert profile_shapes(manifest, "audio", 16, 128) == {
        "waveform": ((1, 480000), (16, 480000), (16, 480000))
    }
    assert profile_shapes(manifest, "text", 16, 128)["input_ids"] == ((1, 1), (16, 77), (16, 77))


def test_a_text_padded_to_max_length_has_exactly_max_length_tokens(small_muscall_model_dir):
    manifest = padded_to_max_length(manifest_of(small_muscall_model_dir))
    for max_tokens in (16, 128):
        assert profile_shapes(manifest, "text", 16, max_tokens)["input_ids"] == (
            (1, 77),
            (16, 77),
            (16, 77),
        )


def test_manifest_records_the_engines_per_precision(small_model_dir, small_clap_model_dir):
    manifest = manifest_of(small_model_dir)
    fp32 = record_engines(manifest, "fp32", 64, 512, "10.15.1", "NVIDIA H100 80GB HBM3")
    assert fp32.to_json()["tensorrt"] == {
        "fp32": {
            "audio": "audio.fp32.plan",
            "text": "text.fp32.plan",
            "floor": "floor.fp32.plan",
            "max_batch": 64,
            "max_tokens": 128,
            "tensorrt": "10.15.1",
            "device": "NVIDIA H100 80GB HBM3",
        }
    }
    assert fp32.replace(tensorrt={}) == manifest
    both = record_engines(fp32, "fp16", 32, 64, "10.15.1", None)
    assert both.tensorrt["fp32"] == fp32.tensorrt["fp32"]
    assert both.tensorrt["fp16"].text == "text.fp16.plan"
    assert both.tensorrt["fp16"].max_tokens == 64
    clap = record_engines(manifest_of(small_clap_model_dir), "fp32", 64, 128, "10.15.1", None)
    assert clap.tensorrt["fp32"].max_tokens == 77
    assert clap.tensorrt["fp32"].floor is None  # CLAP has no floor graph


def test_without_tensorrt_it_says_how_to_get_it_before_any_work(
    small_model_dir, tmp_path, monkeypatch, capsys
):
    # Only the manifest: were the graphs read before TensorRT is looked for, this would fail
    # on the missing files instead.
    shutil.copy(small_model_dir / "manifest.json", tmp_path / "manifest.json")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["--model-dir", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("to_tensorrt.py: error: TensorRT is not installed: ")
    assert "nvcr.io/nvidia/tensorrt:" in err and "https://pypi.nvidia.com" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_a_folder_without_manifest_is_refused(tmp_path, capsys):
    assert main(["--model-dir", str(tmp_path)]) == 2
    assert "has no manifest.json" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--max-batch", "--max-tokens", "--workspace-gb"])
def test_limits_must_be_positive(flag, tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(["--model-dir", str(tmp_path), flag, "0"])
    assert stop.value.code == 2


def test_graphs_with_unsupported_nodes_are_refused_listing_each(small_model_dir, tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 2])
    graph = helper.make_graph([helper.make_node("DFT", ["x"], ["y"], name="fft")], "g", [x], [y])
    bad = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), bad)
    with pytest.raises(BuildError, match=r"bad\.onnx: fft \(DFT\): not supported"):
        check_graphs({"audio": small_model_dir / "audio.onnx", "text": bad})
