"""The offline demo model: the published architecture with seeded random weights.

Real weights cannot be downloaded here, so ``to_onnx.py --demo`` builds this instead and
writes it in the upstream formats (``.pth`` + ``.yaml`` + a ``text_arch`` folder), so that
everything downstream is exercised exactly as with the real checkpoint. The embeddings
mean nothing; the shapes, the operators and the numerics are the real ones.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import torch
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import RobertaConfig

from export.hparams import PUBLISHED, HParams
from export.reference import TTMRpp, track_windows
from export.synthetic import random_track

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4

# roberta-base's config.json values (transformers' RobertaConfig defaults differ in places).
ROBERTA_BASE = {
    "vocab_size": 50265,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}

_MOODS = ["calm", "energetic", "melancholic", "uplifting", "dark", "dreamy", "tense", "joyful"]
_GENRES = ["jazz", "rock", "techno", "folk", "classical", "hip hop", "ambient", "blues"]
_INSTRUMENTS = ["piano", "guitar", "violin", "drums", "synthesizer", "cello", "saxophone", "voice"]
_KEYS = ["C major", "D minor", "E flat", "F sharp minor", "G", "A minor", "B flat major"]
_TEMPOS = ["slow", "mid-tempo", "fast", "very fast", "laid-back"]


def training_corpus() -> list[str]:
    """Music descriptions made from small word lists: enough text to learn byte-level merges."""
    sentences = []
    for mood, genre, instrument in itertools.product(_MOODS, _GENRES, _INSTRUMENTS):
        sentences.append(f"a {mood} {genre} track led by {instrument}")
    for tempo, key, instrument in itertools.product(_TEMPOS, _KEYS, _INSTRUMENTS):
        sentences.append(f"A {tempo} solo {instrument} piece in {key}.")
    return sentences


def train_tokenizer(vocab_size: int = 2000) -> Tokenizer:
    """A byte-level BPE with RoBERTa's special tokens and ``<s> … </s>`` framing."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_corpus(), trainer=trainer)
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tokenizer


def write_text_arch(folder: Path, roberta: dict) -> RobertaConfig:
    """A Hugging Face RoBERTa folder: ``config.json`` + tokenizer files, no weights."""
    folder.mkdir(parents=True, exist_ok=True)
    config = RobertaConfig(**roberta)
    config.save_pretrained(folder)
    write_tokenizer_files(folder)
    return config


def write_tokenizer_files(folder: Path) -> None:
    """The demo tokenizer as roberta-base ships its files, for ``AutoTokenizer``."""
    tokenizer = train_tokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer.model.save(str(folder))  # vocab.json + merges.txt, as roberta-base ships them
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    special |= {
        "sep_token": "</s>",
        "cls_token": "<s>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    tokenizer_config = {"tokenizer_class": "RobertaTokenizer", "model_max_length": 512, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))


def randomise(model: TTMRpp) -> None:
    """Random weights that still carry the input through both towers.

    Default initialisations make a deep random network's output nearly constant, and then
    no test could tell one track or sentence from another. So: text projections preserve
    scale, and BatchNorm statistics are measured on synthetic audio (as a trained net's
    would be), then jittered so that folding them is still tested on arbitrary values.
    """
    with torch.no_grad():
        jitter_norms(model)
        # Residual branches enter small, as in trained ResNets: a random net whose sixteen
        # branches all add at full scale is chaotic and amplifies float32 rounding.
        for name, module in model.audio_encoder.named_modules():
            if name.endswith("bn3"):
                module.weight.uniform_(0.1, 0.3)
        scale_linears(model.text_encoder)
        pool = model.audio_encoder.attn_pool.positional_embedding
        pool.normal_(0.0, 1.0 / math.sqrt(pool.shape[-1]))
        measure_batchnorm(model)


def jitter_norms(model: torch.nn.Module) -> None:
    """Norm affines away from 1 and 0, so that a folded or skipped one shows in the output."""
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0.0, 0.1)


def scale_linears(model: torch.nn.Module) -> None:
    """Linear layers that preserve the scale of their input, so a deep stack carries it."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.weight.normal_(0.0, module.in_features**-0.5)


def measure_batchnorm(model: TTMRpp, windows: int = 4) -> None:
    """Set every BatchNorm's running statistics from synthetic tracks, then jitter them."""
    audio = np.concatenate(
        [track_windows(random_track(s, 10.0), 22050, model.hp) for s in range(windows)]
    )
    norms = [m for m in model.audio_encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over what it sees
    model.audio_encoder.train()
    model.audio_encoder(model.frontend(torch.from_numpy(audio)))
    model.audio_encoder.eval()
    for norm in norms:
        norm.momentum = 0.1
        norm.running_mean += 0.1 * norm.running_var.sqrt() * torch.randn_like(norm.running_mean)
        norm.running_var *= torch.empty_like(norm.running_var).uniform_(0.8, 1.25)


def write_demo_checkpoint(
    folder: str | Path,
    seed: int = 0,
    hparams: dict | None = None,
    roberta: dict | None = None,
) -> tuple[Path, Path, Path]:
    """Write ``ttmrpp.pth``, ``ttmrpp.yaml`` and ``text_arch/`` under ``folder``.

    Defaults are the published sizes; tests pass smaller ``hparams`` / ``roberta``.
    Returns the three paths.
    """
    folder = Path(folder)
    hp_dict = {**PUBLISHED, **(hparams or {})}
    text_arch = folder / "text_arch"
    text_config = write_text_arch(text_arch, {**ROBERTA_BASE, **(roberta or {})})
    torch.manual_seed(seed)
    model = TTMRpp(HParams.from_dict(hp_dict), text_config)
    randomise(model)
    state = model.state_dict()
    # The published file also carries training-only keys; loading must ignore them.
    state["logit_scale"] = torch.tensor([math.log(1 / hp_dict["temperature"])])
    state["loss_fct.logit_scale"] = state["logit_scale"].clone()
    checkpoint, config = folder / "ttmrpp.pth", folder / "ttmrpp.yaml"
    torch.save({"state_dict": state, "epoch": 0}, checkpoint)
    config.write_text(yaml.safe_dump(hp_dict, sort_keys=True))
    return checkpoint, config, text_arch
