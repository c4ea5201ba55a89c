"""MusCALL as the exporter sees it (``export.families``): a run's ``best_model.pth.tar`` +
``config.yaml`` + CLIP's tokenizer folder in, graphs and manifest settings out."""

from __future__ import annotations

from pathlib import Path

from export.families import Family, Loaded, Source, Tolerance
from export.muscall.demo import run_files, write_demo_run
from export.muscall.graphs import AudioGraph, TextGraph
from export.muscall.reference import MusCALL, load_reference
from export.muscall.tokenizer import PAD_ID

OPTIONS = {
    "checkpoint": "a MusCALL run's best_model.pth.tar (with --config and --tokenizer)",
    "config": "a MusCALL run's config.yaml",
    "tokenizer": "CLIP's tokenizer folder (vocab.json + merges.txt)",
}


def check_source(source: Source, demo: bool) -> str | None:
    """``--demo``, or ``--checkpoint X.pth.tar --config config.yaml --tokenizer DIR``."""
    given = (source.checkpoint, source.config, source.tokenizer)
    if demo == any(given) or not (demo or all(given)):
        return "give either --demo or all of --checkpoint, --config and --tokenizer"
    return None


def load(source: Source) -> Loaded:
    model = load_reference(source.checkpoint, source.config, source.tokenizer)
    return Loaded(model, source.checkpoint)


def demo_source(folder: Path) -> Source:
    checkpoint, config, tokenizer = run_files(folder)
    return Source(checkpoint=checkpoint, config=config, tokenizer=tokenizer)


def write_demo(folder: Path, seed: int) -> Source:
    write_demo_run(folder, seed=seed)
    return demo_source(folder)


def settings(model: MusCALL) -> dict:
    """16 kHz, no peak normalisation, no int16 round trip, a short track zero-padded, one
    20-s window per row; texts padded with id 0 to exactly 77 tokens, as MusCALL does
    (docs/models.md, "MusCALL")."""
    audio = model.config.audio
    return {
        "hparams": model.config.to_dict(),
        "audio": {
            "sample_rate": audio.sample_rate,
            "window_samples": audio.window_samples,
            "preprocessing": {"peak_normalise": False, "int16": False, "short_audio": "zero_pad"},
        },
        # Padded to the longest text of a batch, not to 77 as upstream: only the causal mask
        # applies, so what follows a row's pooled token never changes it (docs/models.md).
        "text": {"max_length": model.max_length, "padding": "longest", "pad_token_id": PAD_ID},
    }


FAMILY = Family(
    name="muscall",
    title="MusCALL",
    options=OPTIONS,
    check_source=check_source,
    load=load,
    write_demo=write_demo,
    demo_source=demo_source,
    audio_graph=AudioGraph,
    text_graph=TextGraph,
    settings=settings,
    tolerance=Tolerance(min_cosine=0.99999, max_relative=1e-4),
)
