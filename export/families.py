"""Model families: each brings its reference, its graphs and what the runtime must do to
preprocess for it; ``to_onnx.py`` writes the latter into ``manifest.json``, and the runtime,
Triton and evaluation code read only that, so a new family needs no change there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx

from export import graphs
from export.clap import graphs as clap_graphs
from export.clap.reference import ClapReference
from export.muscall import family as muscall
from export.muscall import graphs as muscall_graphs
from export.reference import TTMRpp


@dataclass(frozen=True)
class Family:
    """``export_audio`` / ``export_text`` write a tower's graph; ``settings`` gives the
    manifest's ``hparams``, the ``audio`` / ``text`` preprocessing settings (``text`` may
    set ``pad_token_id``; else the tokenizer's) and, where the family has any,
    ``checkpoint`` fields (CLAP: its origin)."""

    name: str
    export_audio: Callable[[object, Path], onnx.ModelProto]
    export_text: Callable[[object, Path], onnx.ModelProto]
    settings: Callable[[object], dict]


def ttmrpp_settings(model: TTMRpp) -> dict:
    """SPEC.md: 22.05 kHz, peak-normalised, int16 round trip, short tracks zero-padded;
    texts padded to the longest in a batch."""
    hp = model.hp
    return {
        "hparams": hp.to_dict(),
        "audio": {
            "sample_rate": hp.sr,
            "window_samples": hp.window_samples,
            "preprocessing": {"peak_normalise": True, "int16": True, "short_audio": "zero_pad"},
        },
        "text": {"max_length": hp.max_length, "padding": "longest"},
    }


def clap_settings(reference: ClapReference) -> dict:
    """48 kHz, no normalisation, short tracks repeat-padded, texts padded to exactly 77
    tokens, as both laion_clap and transformers do; the clipped int16 round trip only where
    the checkpoint's origin (recorded with it) is laion_clap, whose own code does it."""
    config, features = reference.model.config, reference.features
    audio_keys = ("patch_embeds_hidden_size", "depths", "num_attention_heads", "window_size")
    audio_keys += ("spec_size", "num_mel_bins", "hidden_size")
    text_keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")
    text_keys += ("intermediate_size", "layer_norm_eps")
    feature_keys = ("sampling_rate", "fft_window_size", "hop_length", "feature_size")
    feature_keys += ("frequency_min", "frequency_max", "max_length_s", "truncation", "padding")
    return {
        "hparams": {
            "audio": {key: getattr(config.audio_config, key) for key in audio_keys},
            "text": {key: getattr(config.text_config, key) for key in text_keys},
            "projection_dim": config.projection_dim,
            "features": {key: getattr(features, key) for key in feature_keys},
        },
        "audio": {
            "sample_rate": reference.sample_rate,
            "window_samples": reference.window_samples,
            "preprocessing": {
                "peak_normalise": False,
                "int16": reference.int16,
                "short_audio": "repeat_pad",
            },
        },
        "text": {"max_length": reference.max_length, "padding": "max_length"},
        "checkpoint": {"origin": reference.origin},
    }


FAMILIES = {
    "ttmrpp": Family("ttmrpp", graphs.export_audio, graphs.export_text, ttmrpp_settings),
    "clap": Family("clap", clap_graphs.export_audio, clap_graphs.export_text, clap_settings),
    "muscall": Family(
        "muscall", muscall_graphs.export_audio, muscall_graphs.export_text, muscall.settings
    ),
}
