"""What ``to_onnx.py`` writes: checked, folded, deterministic graphs, a standalone tokenizer,
an honest manifest, and a command line that says what it did."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from torch import nn

from export import families, to_onnx
from export.checkpoint import sha256
from export.families import Tolerance
from export.onnx_export import OUTPUTS
from export.to_onnx import export_model, main
from runtime.manifest import TOWERS
from tests.helpers import ttmrpp_source

ROOT = Path(__file__).resolve().parents[2]
FILES = ("audio.onnx", "text.onnx", "floor.onnx", "tokenizer.json", "manifest.json")


@pytest.mark.slow  # end to end: kept out of the quick -m 'not slow' loop
def test_export_is_deterministic(small_export, tmp_path):
    again = tmp_path / "again"
    with contextlib.redirect_stdout(io.StringIO()):
        export_model("ttmrpp", ttmrpp_source(*small_export[1]), again, random_weights=True)
    for name in FILES:
        assert (again / name).read_bytes() == (small_export[0] / name).read_bytes(), name


@pytest.mark.parametrize("name", ["audio.onnx", "text.onnx"])
def test_graphs_are_checked_folded_and_free_of_complex_ops(small_model_dir, name):
    graph = onnx.load(str(small_model_dir / name))
    onnx.checker.check_model(graph, full_check=True)
    ops = {node.op_type for node in graph.graph.node}
    assert not ops & {"BatchNormalization", "STFT", "DFT", "Constant"}
    initializers = {init.name for init in graph.graph.initializer}
    foldable = [n.name for n in graph.graph.node if set(n.input) - {""} <= initializers]
    assert foldable == []


def test_manifest_describes_the_graphs_and_the_checkpoint(small_export):
    folder, (checkpoint, _, _) = small_export
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["family"] == "ttmrpp"
    assert manifest["random_weights"] is True and "RANDOM WEIGHTS" in manifest["note"]
    assert manifest["checkpoint"]["sha256"] == sha256(checkpoint)
    assert manifest["hparams"]["width"] == 8 and manifest["hparams"]["sr"] == 22050
    assert set(manifest["versions"]) >= {"torch", "onnx", "onnxruntime", "tokenizers"}
    for tower, inputs, outputs in (
        ("audio", ["waveform", "floor"], ["joint", "encoder"]),
        ("text", ["input_ids", "attention_mask"], ["joint", "encoder"]),
        ("floor", ["waveform"], ["floor"]),
    ):
        graph = onnx.load(str(folder / manifest[tower]["file"]))
        assert [i["name"] for i in manifest[tower]["inputs"]] == inputs
        assert [i.name for i in graph.graph.input] == inputs
        assert [o["name"] for o in manifest[tower]["outputs"]] == outputs
    assert manifest["audio"]["inputs"][1] == {
        "name": "floor",
        "dtype": "float32",
        "shape": ["batch"],
    }
    assert manifest["floor"]["outputs"] == [
        {"name": "floor", "dtype": "float32", "shape": ["batch"]}
    ]
    assert manifest["audio"]["inputs"][0] == {
        "name": "waveform",
        "dtype": "float32",
        "shape": ["batch", 220500],
    }
    assert manifest["audio"]["outputs"][0]["shape"] == ["batch", 16]
    assert manifest["text"]["outputs"][1]["shape"] == ["batch", 32]


def test_tokenizer_loads_with_tokenizers_alone(small_model_dir, small_reference):
    text = "a calm solo piano piece in D " * 30
    script = (
        "import sys, json, tokenizers\n"
        f"ids = tokenizers.Tokenizer.from_file({str(small_model_dir / 'tokenizer.json')!r})"
        f".encode({text!r}).ids\n"
        "assert 'transformers' not in sys.modules and 'torch' not in sys.modules\n"
        "print(json.dumps(ids))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    expected = small_reference.tokenize([text])["input_ids"][0].tolist()
    assert json.loads(done.stdout) == expected
    assert len(expected) == 128


@pytest.mark.slow
def test_demo_command_says_the_weights_are_random(demo_export):
    folder, _, log = demo_export
    assert log.count("RANDOM WEIGHTS") >= 2
    assert "Validating against the PyTorch reference" in log
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["random_weights"] is True
    assert manifest["hparams"]["width"] == 64 and manifest["audio"]["outputs"][1]["shape"][1] == 768
    assert (folder / "checkpoint" / "text_arch" / "config.json").is_file()


def test_bad_checkpoint_exits_2_with_one_line(small_export, tmp_path, capsys):
    _, config, text_arch = small_export[1]
    (tmp_path / "x.pth").write_text("not a checkpoint")
    args = ["--checkpoint", str(tmp_path / "x.pth"), "--config", str(config)]
    code = main([*args, "--text-arch", str(text_arch), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("to_onnx.py: error:") and err.count("\n") == 1
    assert "x.pth: not a readable PyTorch checkpoint" in err


@pytest.mark.slow  # a small model, but a separate process: ~40 s on two shared cores
def test_export_command_prints_nothing_about_torchvision(small_export, tmp_path):
    """torch.onnx warns at every export that torchvision's detection ops are unavailable;
    none is in these graphs, so a user should not read about them."""
    checkpoint, config, text_arch = small_export[1]
    args = ["--checkpoint", str(checkpoint), "--config", str(config), "--text-arch", str(text_arch)]
    done = subprocess.run(
        [sys.executable, "-m", "export.to_onnx", *args, "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "torchvision" not in done.stderr, done.stderr


def test_checkpoint_without_config_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as raised:
        main(["--checkpoint", str(tmp_path / "x.pth"), "--output", str(tmp_path)])
    assert raised.value.code == 2


class ScaledAudio(nn.Module):
    """A family's audio tower with ``joint`` scaled by 1.001: a broken graph, off by a
    relative 1e-3, which the export's validation must catch."""

    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = tower

    def forward(self, waveform, floor):
        joint, encoder = self.tower(waveform, floor)
        return joint * 1.001, encoder


class ScaledText(ScaledAudio):
    """The same for a text tower."""

    def forward(self, input_ids, attention_mask):
        joint, encoder = self.tower(input_ids, attention_mask)
        return joint * 1.001, encoder


@pytest.mark.parametrize(
    ("family", "change", "named"),
    [
        ("ttmrpp", "audio graph", ["audio joint: max |Δ|"]),
        ("clap", "text graph", ["text joint: max |Δ|"]),
        ("clap", "tolerance", [f"{t} {o}: cosine" for t in TOWERS for o in OUTPUTS]),
    ],
)
@pytest.mark.slow  # end to end: kept out of the quick -m 'not slow' loop
def test_an_export_outside_the_family_tolerance_fails_with_one_line(
    request, family, change, named, tmp_path, monkeypatch, capsys
):
    # The source files first: a session fixture made under the patch below would fail.
    if family == "ttmrpp":
        checkpoint, config, text_arch = request.getfixturevalue("small_export")[1]
        args = ["--checkpoint", str(checkpoint), "--config", str(config)]
        args += ["--text-arch", str(text_arch)]
    else:
        hf_model = request.getfixturevalue("small_clap_export")[1]
        args = ["--family", "clap", "--hf-model", str(hf_model)]
    real = families.family(family)
    if change == "tolerance":
        broken = dataclasses.replace(real, tolerance=Tolerance(min_cosine=2.0, max_relative=1))
    else:
        tower = change.split()[0]
        scaled = {"audio": ScaledAudio, "text": ScaledText}[tower]
        module = getattr(real, f"{tower}_graph")
        broken = dataclasses.replace(real, **{f"{tower}_graph": lambda ref: scaled(module(ref))})
    monkeypatch.setattr(to_onnx, "family", lambda name: broken)
    with contextlib.redirect_stdout(io.StringIO()):
        code = main([*args, "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("to_onnx.py: error: the exported graphs do not match the reference: ")
    for tower_space in named:
        assert tower_space in err, err
    assert not (tmp_path / "manifest.json").exists()  # the runtime refuses the folder
