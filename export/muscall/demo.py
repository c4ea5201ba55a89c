"""The offline MusCALL demo: the default architecture with seeded random weights, written as
a training run leaves it (``best_model.pth.tar`` + ``config.yaml``) beside a CLIP-format BPE
vocabulary built here (``vocab.json`` + ``merges.txt``), so that export reads it exactly as
it reads a user's run. The embeddings mean nothing; shapes, operators and numerics are real.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import yaml
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers.convert_slow_tokenizer import bytes_to_unicode

from export.clap.reference import track_windows
from export.demo import jitter_norms, measure_batchnorm, scale_linears, training_corpus
from export.muscall.config import MusCALLConfig
from export.muscall.reference import MusCALL
from export.muscall.tokenizer import SPECIAL
from export.synthetic import random_track

# configs/models/muscall.yaml's model_config, training-only fields included.
MODEL_CONFIG = {
    "model_name": "muscall",
    "projection_dim": 512,
    "temperature": None,
    "audio": {
        "model": "ModifiedResNet",
        "pooling": "attention",
        "audio_len_seconds": 20,
        "hidden_size": 256,
        "conv_out_channels": 16,
        "n_mels": 128,
        "sample_rate": 16000,
        "n_fft": 1024,
        "f_min": 0,
        "f_max": 11025,
        "pretrained": None,
    },
    "text": {
        "model": "TextTransformer",
        "pretrained": None,
        "frozen_layers": False,
        "num_hidden_layers": 4,
        "hidden_size": 512,
        "num_attention_heads": 8,
        "attention_probs_dropout_prob": 0.2,
        "hidden_dropout_prob": 0.2,
        "vocab_size": 49408,
        "max_position_embeddings": 77,
    },
    "loss": "clip",
}
# The rest of a run's config: read by nobody here, but a real file has it, interpolations
# included (they must stay unresolved).
RUN_CONFIG = {
    "env": {"base_dir": "/data/muscall", "experiments_dir": "${env.base_dir}/save/experiments"},
    "training": {"epochs": 200, "lr": 0.0001, "dataloader": {"batch_size": 256}},
    "dataset_config": {"dataset_name": "audiocaption", "data_dir": "${env.base_dir}/data"},
}
DEMO_MERGES = 1500


def write_clip_vocabulary(folder: Path) -> None:
    """``vocab.json`` + ``merges.txt`` laid out as CLIP's are: the 256 byte symbols, the same
    with ``</w>``, one token per merge, then ``<|startoftext|>``, ``<|endoftext|>`` (the two
    highest ids); merges learned here from the demo corpus."""
    folder.mkdir(parents=True, exist_ok=True)
    learner = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    learner.normalizer = normalizers.Lowercase()
    learner.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    symbols = list(bytes_to_unicode().values())
    trainer = trainers.BpeTrainer(
        vocab_size=2 * len(symbols) + DEMO_MERGES,
        initial_alphabet=symbols,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    learner.train_from_iterator(training_corpus(), trainer=trainer)
    merges = json.loads(learner.to_str())["model"]["merges"]
    merges = [
        tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge) for merge in merges
    ]
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + list(SPECIAL)
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    lines = ["#version: 0.2"] + [" ".join(merge) for merge in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def randomise(model: MusCALL, tracks: int = 4) -> None:
    """Random weights that still carry the input through both towers (as for TTMR++'s
    demo): norms jittered, text layers scale-preserving, residual branches entering small,
    the pool's positions at CLIP's initial scale, BatchNorm statistics measured on
    synthetic music, then jittered."""
    backbone = model.audio_backbone
    with torch.no_grad():
        jitter_norms(model)
        scale_linears(model.textual_head)
        for name, module in backbone.named_modules():
            if name.endswith("bn3"):
                module.weight.uniform_(0.1, 0.3)
        pool = backbone.attnpool.positional_embedding
        pool.normal_(0.0, 1.0 / math.sqrt(pool.shape[-1]))
        audio = model.config.audio
        rate, size = audio.sample_rate, audio.window_samples
        windows = np.concatenate(
            [
                track_windows(random_track(s, size / rate, rate), rate, rate, size, int16=False)
                for s in range(tracks)
            ]
        )
        measure_batchnorm(backbone, backbone.spec(torch.from_numpy(windows)))


def run_files(folder: str | Path) -> tuple[Path, Path, Path]:
    """Where ``write_demo_run`` puts ``best_model.pth.tar``, ``config.yaml`` and
    ``clip_tokenizer/`` (so that a demo folder's files can be found again)."""
    folder = Path(folder)
    return folder / "best_model.pth.tar", folder / "config.yaml", folder / "clip_tokenizer"


def write_demo_run(
    folder: str | Path,
    seed: int = 0,
    audio: dict | None = None,
    text: dict | None = None,
    projection_dim: int | None = None,
) -> tuple[Path, Path, Path]:
    """Write ``best_model.pth.tar``, ``config.yaml`` and ``clip_tokenizer/`` under
    ``folder``; tests pass smaller ``audio`` / ``text`` sizes. Returns the three paths."""
    checkpoint, config, tokenizer = run_files(folder)
    model_config = {
        **MODEL_CONFIG,
        "audio": {**MODEL_CONFIG["audio"], **(audio or {})},
        "text": {**MODEL_CONFIG["text"], **(text or {})},
    }
    if projection_dim:
        model_config["projection_dim"] = projection_dim
    write_clip_vocabulary(tokenizer)
    torch.manual_seed(seed)
    model = MusCALL(MusCALLConfig.from_dict(model_config))
    randomise(model)
    state = model.state_dict()
    # A run's file also holds the training-only temperature and the unused ln_final.
    state["logit_scale"] = torch.tensor(math.log(1 / 0.07))
    hidden = model_config["text"]["hidden_size"]
    state["textual_head.ln_final.weight"] = torch.ones(hidden)
    state["textual_head.ln_final.bias"] = torch.zeros(hidden)
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": []}]}
    torch.save({"epoch": 0, "state_dict": state, "optimizer": optimizer}, checkpoint)
    config.write_text(yaml.safe_dump({**RUN_CONFIG, "model_config": model_config}, sort_keys=False))
    return checkpoint, config, tokenizer
