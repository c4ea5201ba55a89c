"""What the families' offline demo models share: a byte-level BPE tokenizer trained on a
small built-in corpus (written as roberta-base ships its files), roberta-base's sizes, and
ways to randomise weights so that a deep random network still carries its input.

Real weights cannot be downloaded here, so ``to_onnx.py --demo`` builds each family's
published architecture with seeded random weights and writes it in that family's upstream
formats, so that everything downstream is exercised exactly as with a real checkpoint. The
embeddings mean nothing; the shapes, the operators and the numerics are the real ones.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import RobertaConfig

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


def measure_batchnorm(encoder: torch.nn.Module, log_mel: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics from the encoder's input ``log_mel`` (of
    synthetic music, as a trained net's would be), then jitter them, so that folding them
    is still tested on arbitrary values."""
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over what it sees
    encoder.train()
    encoder(log_mel)
    encoder.eval()
    for norm in norms:
        norm.momentum = 0.1
        norm.running_mean += 0.1 * norm.running_var.sqrt() * torch.randn_like(norm.running_mean)
        norm.running_var *= torch.empty_like(norm.running_var).uniform_(0.8, 1.25)
