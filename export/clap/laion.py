"""LAION's original CLAP checkpoints (``laion_clap``'s ``.pt`` files) as ``ClapModel``s.

``laion_clap`` saves ``{"state_dict": …}`` with DDP's ``module.`` prefix on every key:
``audio_branch.*`` (HTSAT), ``text_branch.*`` (RoBERTa), ``audio_projection.{0,2}``,
``text_projection.{0,2}``, ``logit_scale_{a,t}``, plus keys inference does not read. The
architecture is read from the weights' shapes (HTSAT-tiny or -base, projection size); the
text tower's config and tokenizer come from a local roberta-base folder (``--text-arch``),
as ``laion_clap`` builds its text branch from roberta-base.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

from export.checkpoint import CheckpointError, load_exactly, read_state_dict
from export.clap.reference import LAION_FEATURES, ClapReference
from export.text_tower import resolve_text_arch

# Keys that inference does not read: the STFT and mel bank stored as weights (the graph
# computes them; the mel bank is checked), the AudioSet classifier head, the training-only
# MLPs, and buffers ClapModel derives itself.
UNUSED = re.compile(
    r"audio_branch\.(spectrogram_extractor|logmel_extractor|tscam_conv|head)\."
    r"|(audio|text)_transform\."
    r"|\.attn_mask$|\.relative_position_index$|^text_branch\.embeddings\.position_ids$"
)
MEL_BANK = "audio_branch.logmel_extractor.melW"
# ClapModel buffers that a checkpoint need not carry: derived from the config.
DERIVED = re.compile(r"relative_position_index$|embeddings\.(position_ids|token_type_ids)$")
PREFIXES = (
    ("audio_branch.", "audio_model.audio_encoder."),
    ("text_branch.", "text_model."),
    ("audio_projection.", "audio_projection."),
    ("text_projection.", "text_projection."),
    ("logit_scale_a", "logit_scale_a"),
    ("logit_scale_t", "logit_scale_t"),
)
# HTSAT's (Swin's) module names → transformers' ClapAudioEncoder names.
AUDIO_NAMES = (
    ("bn0.", "batch_norm."),
    (".attn.proj.", ".attention.output.dense."),
    (".attn.relative_position_bias_table", ".attention.self.relative_position_bias_table"),
    (".norm1.", ".layernorm_before."),
    (".norm2.", ".layernorm_after."),
    (".mlp.fc1.", ".intermediate.dense."),
    (".mlp.fc2.", ".output.dense."),
)
# nn.Sequential(Linear, ReLU, Linear) → ClapProjectionLayer.
PROJECTION_NAMES = (
    (r"_projection\.0\.", "_projection.linear1."),
    (r"_projection\.2\.", "_projection.linear2."),
)
QKV = ("query", "key", "value")
BLOCK = re.compile(r"audio_branch\.layers\.(\d+)\.blocks\.(\d+)\.")
ROBERTA_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
)


def rename(key: str) -> list[str]:
    """transformers' name(s) for one LAION key: a fused ``qkv`` becomes three; ``[]`` when
    no ClapModel parameter can come from it."""
    for laion, ours in PREFIXES:
        if key.startswith(laion):
            name = ours + key[len(laion) :]
            break
    else:
        return []
    if key.startswith("audio_branch."):
        for laion, ours in AUDIO_NAMES:
            name = name.replace(laion, ours)
    for laion, ours in PROJECTION_NAMES:
        name = re.sub(laion, ours, name)
    if ".attn.qkv." in name:
        return [name.replace(".attn.qkv.", f".attention.self.{part}.") for part in QKV]
    return [name]


def to_transformers(
    laion: Mapping[str, torch.Tensor], expected: set[str], source: str
) -> dict[str, torch.Tensor]:
    """Rename a LAION state dict (``module.`` removed) for a ``ClapModel`` with the keys
    ``expected``; LAION keys that map to none of them and are not known to be unused are
    refused, by their LAION names."""
    state, unknown = {}, []
    for key, value in laion.items():
        if UNUSED.search(key):
            continue
        names = rename(key)
        if not names or not set(names) <= expected:
            unknown.append(key)
        elif len(names) == 1:
            state[names[0]] = value
        else:  # query, key and value stacked along the output dimension
            state.update(zip(names, value.chunk(len(names)), strict=True))
    if unknown:
        raise CheckpointError(f"{source}: unknown keys {sorted(unknown)}")
    return state


def audio_config(laion: Mapping[str, torch.Tensor], source: str) -> dict:
    """HTSAT's hyper-parameters from its weights' shapes (``module.`` already removed)."""
    if any(".fusion_model." in key or ".mel_conv2d." in key for key in laion):
        raise CheckpointError(f"{source}: fusion CLAP checkpoints are not supported")
    try:
        patches = laion["audio_branch.patch_embed.proj.weight"]
        blocks = sorted({tuple(map(int, m.groups())) for k in laion if (m := BLOCK.match(k))})
        depths = [sum(1 for layer, _ in blocks if layer == i) for i in range(blocks[-1][0] + 1)]
        tables = [
            laion[f"audio_branch.layers.{i}.blocks.0.attn.relative_position_bias_table"]
            for i in range(len(depths))
        ]
        hidden = laion["audio_branch.layers.0.blocks.0.mlp.fc1.weight"].shape[0]
        mel_bins = laion["audio_branch.bn0.weight"].shape[0]
    except (KeyError, IndexError) as err:
        raise CheckpointError(f"{source}: not a LAION HTSAT checkpoint (no {err})") from None
    width = patches.shape[0]
    return {
        "patch_embeds_hidden_size": width,
        "patch_size": patches.shape[-1],
        "depths": depths,
        "num_attention_heads": [table.shape[1] for table in tables],
        "window_size": (math.isqrt(tables[0].shape[0]) + 1) // 2,  # (2w - 1)² entries
        "mlp_ratio": hidden / width,
        "hidden_size": width * 2 ** (len(depths) - 1),
        "num_mel_bins": mel_bins,
    }


def check_mel_bank(laion: Mapping[str, torch.Tensor], reference: ClapReference, source: str):
    """The checkpoint's own mel bank (torchlibrosa's ``melW``) must be the one the graph
    computes with, or its frontend was configured differently."""
    if MEL_BANK not in laion:
        return
    stored, ours = laion[MEL_BANK].double().numpy(), reference.mel_filters
    if stored.shape != ours.shape or not np.allclose(stored, ours, rtol=0, atol=1e-6 * ours.max()):
        raise CheckpointError(
            f"{source}: {MEL_BANK} is not the mel bank of {LAION_FEATURES} (48 kHz, 64 Slaney "
            "mels, 50 Hz to 14 kHz): this frontend is not supported"
        )


def load_laion_checkpoint(checkpoint: str | Path, text_arch: str | Path) -> ClapReference:
    """Build the reference from a ``laion_clap`` ``.pt`` and a local roberta-base folder."""
    source = str(checkpoint)
    laion = {k.removeprefix("module."): v for k, v in read_state_dict(checkpoint).items()}
    roberta, tokenizer = resolve_text_arch(str(text_arch))
    try:
        projection = laion["audio_projection.0.weight"].shape[0]
    except KeyError:
        raise CheckpointError(f"{source}: no audio_projection.0.weight") from None
    config = ClapConfig(
        audio_config=audio_config(laion, source),
        text_config={field: getattr(roberta, field) for field in ROBERTA_FIELDS},
        projection_dim=projection,
    )
    model = ClapModel(config)
    expected = model.state_dict()
    state = to_transformers(laion, set(expected), source)
    derived = {k: v for k, v in expected.items() if DERIVED.search(k)}
    load_exactly(model, {**derived, **state}, source, ignored=frozenset())
    features = ClapFeatureExtractor(**LAION_FEATURES)
    reference = ClapReference(model, features, tokenizer, origin="laion")
    check_mel_bank(laion, reference, source)
    return reference
