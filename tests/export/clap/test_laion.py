"""LAION's original CLAP checkpoints: a ``laion_clap``-format ``.pt`` written here from a
ClapModel's weights, with LAION's own module names, loads back to identical embeddings;
unknown, missing and mis-configured keys are refused by name."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import onnxruntime as ort
import pytest
import torch

import runtime
from export.checkpoint import CheckpointError, sha256
from export.clap.laion import load_laion_checkpoint
from export.demo import ROBERTA_BASE, write_text_arch
from export.to_onnx import main
from tests.helpers import SMALL_CLAP_TEXT, assert_close

# transformers' ClapAudioEncoder names → HTSAT's (laion_clap/clap_module/htsat.py).
HTSAT_NAMES = [
    ("batch_norm.", "bn0."),
    (".attention.output.dense.", ".attn.proj."),
    (".attention.self.relative_position_bias_table", ".attn.relative_position_bias_table"),
    (".layernorm_before.", ".norm1."),
    (".layernorm_after.", ".norm2."),
    (".intermediate.dense.", ".mlp.fc1."),
    (".output.dense.", ".mlp.fc2."),
]


QKV = ("query", "key", "value")


def laion_state(model) -> dict[str, torch.Tensor]:
    """What ``laion_clap`` saves for this model under DDP, as its module tree names it."""
    ours, out = model.state_dict(), {}
    for name, value in ours.items():
        swin = name.startswith("audio_model.")
        if name.endswith(("relative_position_index", "token_type_ids")) or (
            swin and re.search(r"attention\.self\.(key|value)\.", name)
        ):
            continue
        key = name
        if swin and ".attention.self.query." in name:  # Swin's fused qkv projection
            value = torch.cat([ours[name.replace(".query.", f".{p}.")] for p in QKV])
            key = name.replace(".attention.self.query.", ".attn.qkv.")
        if key.startswith("audio_model.audio_encoder."):
            key = "audio_branch." + key.removeprefix("audio_model.audio_encoder.")
            for transformers_name, htsat_name in HTSAT_NAMES:
                key = key.replace(transformers_name, htsat_name)
        elif key.startswith("text_model."):
            key = "text_branch." + key.removeprefix("text_model.")
        key = key.replace("_projection.linear1.", "_projection.0.")
        out[key.replace("_projection.linear2.", "_projection.2.")] = value.clone()
    # What laion_clap also saves: torchlibrosa's STFT and mel bank, HTSAT's AudioSet head,
    # the training MLPs, the shifted blocks' attention masks and Swin's relative indices.
    audio = model.config.audio_config
    out["audio_branch.spectrogram_extractor.stft.conv_real.weight"] = torch.randn(513, 1, 1024)
    out["audio_branch.spectrogram_extractor.stft.conv_imag.weight"] = torch.randn(513, 1, 1024)
    melw = librosa.filters.mel(sr=48000, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T
    out["audio_branch.logmel_extractor.melW"] = torch.from_numpy(melw)
    width = audio.hidden_size
    out["audio_branch.tscam_conv.weight"] = torch.randn(527, width, 2, 3)
    out["audio_branch.tscam_conv.bias"] = torch.randn(527)
    out["audio_branch.head.weight"] = torch.randn(527, 527)
    out["audio_branch.head.bias"] = torch.randn(527)
    for branch in ("audio", "text"):
        for layer in (0, 3):
            out[f"{branch}_transform.sequential.{layer}.weight"] = torch.randn(32, 32)
            out[f"{branch}_transform.sequential.{layer}.bias"] = torch.randn(32)
    for stage, depth in enumerate(audio.depths):
        for block in range(depth):
            prefix = f"audio_branch.layers.{stage}.blocks.{block}."
            out[prefix + "attn.relative_position_index"] = torch.zeros(64, 64, dtype=torch.long)
            if block % 2:
                out[prefix + "attn_mask"] = torch.zeros(4, 64, 64)
    out["text_branch.embeddings.position_ids"] = torch.arange(514)[None]
    return {"module." + key: value for key, value in out.items()}


@pytest.fixture(scope="module")
def roberta(small_clap_reference, tmp_path_factory):
    """A roberta-base-style folder whose config is the small model's text tower."""
    folder = tmp_path_factory.mktemp("roberta")
    eps = small_clap_reference.model.config.text_config.layer_norm_eps
    write_text_arch(folder, {**ROBERTA_BASE, **SMALL_CLAP_TEXT, "layer_norm_eps": eps})
    return folder


def write_laion_file(model, folder: Path, change: Callable[[dict], None] | None = None) -> Path:
    """``model``'s weights as ``laion_clap`` saves them, after ``change(state)``."""
    state = laion_state(model)
    if change:
        change(state)
    path = folder / "music_audioset_epoch_15_esc_90.14.pt"
    torch.save({"epoch": 15, "name": "demo", "state_dict": state}, path)
    return path


@pytest.fixture
def laion_file(small_clap_reference, tmp_path):
    return lambda change=None: write_laion_file(small_clap_reference.model, tmp_path, change)


@pytest.fixture(scope="module")
def laion_export(small_clap_reference, roberta, tmp_path_factory) -> tuple[Path, Path]:
    """``(.pt, model_dir)``: the small model's weights as a ``laion_clap`` file, exported by
    ``to_onnx.py --family clap --checkpoint X.pt --text-arch DIR``."""
    folder = tmp_path_factory.mktemp("laion")
    path = write_laion_file(small_clap_reference.model, folder)
    args = ["--family", "clap", "--checkpoint", str(path), "--text-arch", str(roberta)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*args, "--output", str(folder / "model")]) == 0
    return path, folder / "model"


def test_laion_names_are_the_ones_laion_clap_uses(small_clap_reference):
    state = laion_state(small_clap_reference.model)
    for key in (
        "module.audio_branch.bn0.running_var",
        "module.audio_branch.patch_embed.proj.weight",
        "module.audio_branch.layers.0.blocks.1.attn.qkv.weight",
        "module.audio_branch.layers.0.blocks.1.mlp.fc2.bias",
        "module.audio_branch.layers.2.downsample.reduction.weight",
        "module.audio_branch.norm.weight",
        "module.text_branch.encoder.layer.1.attention.self.query.weight",
        "module.text_branch.pooler.dense.weight",
        "module.audio_projection.2.weight",
        "module.text_projection.0.bias",
        "module.logit_scale_a",
    ):
        assert key in state, key


def test_round_trip_gives_identical_weights_and_embeddings(
    small_clap_reference, laion_file, roberta
):
    loaded = load_laion_checkpoint(laion_file(), roberta)
    original = small_clap_reference.model.state_dict()
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, original[key]), key
    audio = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 480000)))
    audio = audio.float()
    for ours, theirs in zip(
        loaded.audio_encode(audio), small_clap_reference.audio_encode(audio), strict=True
    ):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    texts = ["a calm piano", "fast drums " * 30]
    assert torch.equal(
        loaded.tokenize(texts)["input_ids"], small_clap_reference.tokenize(texts)["input_ids"]
    )
    for ours, theirs in zip(
        loaded.text_encode(texts), small_clap_reference.text_encode(texts), strict=True
    ):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.slow  # end to end: kept out of the quick -m 'not slow' loop
def test_export_from_a_laion_file(small_clap_model_dir, laion_export):
    path, model_dir = laion_export
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["checkpoint"] == {"file": path.name, "sha256": sha256(path), "origin": "laion"}
    assert manifest["audio"]["preprocessing"] == {
        "peak_normalise": False,
        "int16": True,
        "short_audio": "repeat_pad",
    }
    audio = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 480000)).astype(np.float32)
    tokens = {"input_ids": np.array([[0, 100, 200, 2]]), "attention_mask": np.ones((1, 4), int)}
    for name, feed in (("audio.onnx", {"waveform": audio}), ("text.onnx", tokens)):
        ours = ort.InferenceSession(str(model_dir / name)).run(None, feed)
        theirs = ort.InferenceSession(str(small_clap_model_dir / name)).run(None, feed)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max())


@pytest.mark.parametrize("space", ["joint", "encoder"])
def test_laion_export_clips_and_round_trips_through_int16(
    laion_export, small_clap_model_dir, small_clap_reference, space
):
    """laion_clap's recipe for a file (clip to [-1, 1], ×32767 truncated to int16, /32767)
    before the same frontend and weights; the Hugging Face folder's export skips it."""
    rate, t = 48000, np.arange(int(3.3 * 48000)) / 48000
    tone = (2.0 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)  # clipped at ±1
    laion_recipe = (np.clip(tone, -1.0, 1.0) * 32767.0).astype(np.int16) / 32767.0
    expected = small_clap_reference.embed_track(laion_recipe.astype(np.float32), rate)
    got = runtime.Embedder(laion_export[1]).embed_audio([tone], sample_rate=rate, space=space)
    assert_close(expected[space == "encoder"][None], got, cosine_min=0.999999, rel=1e-5)
    hf = runtime.Embedder(small_clap_model_dir).embed_audio([tone], rate, space=space)
    assert not np.allclose(hf, got, rtol=0, atol=1e-3 * np.abs(got).max())


def test_unknown_keys_are_named(laion_file, roberta):
    path = laion_file(lambda s: s.update({"module.audio_branch.extra.weight": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"unknown keys \['audio_branch\.extra\.weight'\]"):
        load_laion_checkpoint(path, roberta)


def test_missing_keys_are_named(laion_file, roberta):
    path = laion_file(lambda s: s.pop("module.text_projection.2.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys \['text_projection\.linear2\.bias'\]"):
        load_laion_checkpoint(path, roberta)


def test_a_different_frontend_is_refused(laion_file, roberta):
    htk = librosa.filters.mel(sr=48000, n_fft=1024, n_mels=64, fmin=0, fmax=14000, htk=True)
    path = laion_file(
        lambda s: s.update({"module.audio_branch.logmel_extractor.melW": torch.from_numpy(htk.T)})
    )
    with pytest.raises(CheckpointError, match="melW is not the mel bank"):
        load_laion_checkpoint(path, roberta)


def test_fusion_checkpoints_are_refused(laion_file, roberta):
    key = "module.audio_branch.patch_embed.fusion_model.local_att.0.weight"
    path = laion_file(lambda s: s.update({key: torch.zeros(1)}))
    with pytest.raises(CheckpointError, match="fusion"):
        load_laion_checkpoint(path, roberta)
