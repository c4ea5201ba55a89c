"""LAION-CLAP as the exporter sees it (``export.families``): a Hugging Face CLAP folder, or a
``laion_clap`` ``.pt`` + a roberta-base folder, in; graphs and manifest settings out."""

from __future__ import annotations

from pathlib import Path

from export.clap.demo import write_demo_folder
from export.clap.graphs import AudioGraph, TextGraph
from export.clap.laion import load_laion_checkpoint
from export.clap.reference import ClapReference, load_hf_folder, weights_file
from export.families import Family, Loaded, Source, Tolerance

OPTIONS = {
    "checkpoint": "a laion_clap .pt (with --text-arch)",
    "text_arch": "a local roberta-base folder (config.json + tokenizer files)",
    "hf_model": "a Hugging Face CLAP folder (config, weights, tokenizer)",
}


def check_source(source: Source, demo: bool) -> str | None:
    """``--demo``, ``--hf-model DIR`` or ``--checkpoint X.pt --text-arch DIR``."""
    if demo + bool(source.hf_model) + bool(source.checkpoint) != 1:
        return "give one of --demo, --hf-model DIR or --checkpoint X.pt"
    if source.checkpoint and not source.text_arch:
        return "--checkpoint X.pt needs --text-arch (a local roberta-base folder)"
    return None


def load(source: Source) -> Loaded:
    if source.hf_model:
        return Loaded(load_hf_folder(source.hf_model), weights_file(source.hf_model))
    return Loaded(load_laion_checkpoint(source.checkpoint, source.text_arch), source.checkpoint)


def demo_source(folder: Path) -> Source:
    return Source(hf_model=folder)  # the demo is a Hugging Face folder


def write_demo(folder: Path, seed: int) -> Source:
    write_demo_folder(folder, seed=seed)
    return demo_source(folder)


def settings(reference: ClapReference) -> dict:
    """48 kHz, no normalisation, short tracks repeat-padded, texts truncated at 77 tokens as
    both laion_clap and transformers do but padded only to the longest of a batch: they pad
    to exactly 77, and RoBERTa's masked attention gives the same embeddings either way (bit
    for bit on the demo), for a fraction of the work on short queries (docs/models.md); the
    clipped int16 round trip only where
    the checkpoint's origin (recorded with it) is laion_clap, whose own code does it
    (docs/models.md, "LAION-CLAP")."""
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
        "text": {
            "max_length": reference.max_length,
            "padding": "longest",
            "pad_token_id": reference.tokenizer.pad_token_id,
        },
        "checkpoint": {"origin": reference.origin},
    }


FAMILY = Family(
    name="clap",
    title="LAION-CLAP",
    options=OPTIONS,
    tolerance=Tolerance(min_cosine=0.99999, max_relative=1e-4),
    check_source=check_source,
    load=load,
    write_demo=write_demo,
    demo_source=demo_source,
    audio_graph=AudioGraph,
    text_graph=TextGraph,
    settings=settings,
)
