"""The offline CLAP demo model: ``laion/larger_clap_music``'s architecture (HTSAT-base audio
encoder, RoBERTa-base text encoder, 512-d joint space) with seeded random weights.

It is written as a Hugging Face CLAP folder (``config.json``, ``model.safetensors``,
``preprocessor_config.json``, tokenizer files) and then exported like a real one. The
embeddings mean nothing; shapes, operators and numerics are the real ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

from export.clap.reference import LAION_FEATURES, track_windows
from export.demo import jitter_norms, scale_linears, write_tokenizer_files
from export.synthetic import random_track

# laion/larger_clap_music's audio_config where it differs from ClapAudioConfig's defaults
# (those are HTSAT-tiny): HTSAT-base, 128-d patches, 1024-d pooled output.
MUSIC_AUDIO = {"patch_embeds_hidden_size": 128, "hidden_size": 1024, "depths": [2, 2, 12, 2]}
PROJECTION_DIM = 512


def randomise(model: ClapModel, features: ClapFeatureExtractor) -> None:
    """Random weights that still carry the input through both towers: norms jittered,
    text layers scale-preserving, relative position biases non-zero (so that their
    indexing is tested), the log-mel BatchNorm measured on synthetic music and jittered."""
    with torch.no_grad():
        jitter_norms(model)
        scale_linears(model.text_model)
        for name, parameter in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                parameter.normal_(0.0, 0.5)
        rate, size = features.sampling_rate, features.nb_max_samples
        windows = np.concatenate(
            [
                track_windows(random_track(s, 10.0, rate), rate, rate, size, int16=False)
                for s in range(4)
            ]
        )
        mel = features(list(windows), sampling_rate=rate, return_tensors="np")["input_features"]
        norm = model.audio_model.audio_encoder.batch_norm
        mean = torch.from_numpy(mel.mean(axis=(0, 1, 2))).float()
        std = torch.from_numpy(mel.std(axis=(0, 1, 2))).float()
        norm.running_mean.copy_(mean + 0.1 * std * torch.randn_like(mean))
        norm.running_var.copy_(std**2 * torch.empty_like(std).uniform_(0.8, 1.25))


def write_demo_folder(
    folder: str | Path,
    seed: int = 0,
    audio: dict | None = None,
    text: dict | None = None,
    projection_dim: int = PROJECTION_DIM,
) -> Path:
    """Write the demo as a Hugging Face CLAP folder; tests pass smaller ``audio`` / ``text``
    sub-configs. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = ClapConfig(
        audio_config={**MUSIC_AUDIO, **(audio or {})},
        text_config=text or {},
        projection_dim=projection_dim,
    )
    features = ClapFeatureExtractor(**LAION_FEATURES)
    torch.manual_seed(seed)
    model = ClapModel(config)
    randomise(model, features)
    model.save_pretrained(folder)
    features.save_pretrained(folder)
    write_tokenizer_files(folder)
    return folder
