"""TTMR++ as the exporter sees it (``export.families``): an upstream ``.pth`` + ``.yaml`` +
a RoBERTa ``text_arch`` folder in, graphs and manifest settings out."""

from __future__ import annotations

from pathlib import Path

from export.families import Family, Loaded, Source, StaticInt8, Tolerance
from export.ttmrpp.calibration import (
    ACTIVATION_PERCENTILE,
    FLOAT_CONVS,
    PREPROCESSING,
    calibration_tracks,
)
from export.ttmrpp.demo import checkpoint_files, write_demo_checkpoint
from export.ttmrpp.graphs import AudioGraph, TextGraph, floor_graph
from export.ttmrpp.reference import TTMRpp, load_reference

OPTIONS = {
    "checkpoint": "the upstream .pth (a state_dict inside)",
    "config": "the checkpoint's .yaml hyper-parameters",
    "text_arch": "a local RoBERTa folder (config.json + tokenizer files)",
}


def check_source(source: Source, demo: bool) -> str | None:
    """``--demo``, or ``--checkpoint X.pth --config X.yaml [--text-arch DIR]``."""
    if demo == bool(source.checkpoint or source.config):
        return "give either --demo or both --checkpoint and --config"
    if not demo and not (source.checkpoint and source.config):
        return "--checkpoint and --config go together"
    return None


def load(source: Source) -> Loaded:
    return Loaded(
        load_reference(source.checkpoint, source.config, source.text_arch), source.checkpoint
    )


def demo_source(folder: Path) -> Source:
    checkpoint, config, text_arch = checkpoint_files(folder)
    return Source(checkpoint=checkpoint, config=config, text_arch=text_arch)


def write_demo(folder: Path, seed: int) -> Source:
    write_demo_checkpoint(folder, seed=seed)
    return demo_source(folder)


def settings(model: TTMRpp) -> dict:
    """22.05 kHz, peak-normalised, int16 round trip, short tracks zero-padded; texts padded
    to the longest in a batch (docs/models.md, "TTMR++")."""
    hp = model.hp
    return {
        "hparams": hp.to_dict(),
        "audio": {
            "sample_rate": hp.sr,
            "window_samples": hp.window_samples,
            "preprocessing": PREPROCESSING,
        },
        "text": {
            "max_length": hp.max_length,
            "padding": "longest",
            "pad_token_id": model.tokenizer.pad_token_id,
        },
    }


FAMILY = Family(
    name="ttmrpp",
    title="TTMR++",
    options=OPTIONS,
    int8=StaticInt8(calibration_tracks, FLOAT_CONVS, ACTIVATION_PERCENTILE),
    check_source=check_source,
    load=load,
    write_demo=write_demo,
    demo_source=demo_source,
    tolerance=Tolerance(min_cosine=0.99999, max_relative=1e-4),
    audio_graph=AudioGraph,
    text_graph=TextGraph,
    floor_graph=floor_graph,
    settings=settings,
)
