"""What MusCALL's export writes into the manifest for the runtime."""

from __future__ import annotations

from export.muscall.reference import MusCALL
from export.muscall.tokenizer import PAD_ID


def settings(model: MusCALL) -> dict:
    """16 kHz, no peak normalisation, no int16 round trip, a short track zero-padded, one
    20-s window per row; texts padded with id 0 to exactly 77 tokens, as MusCALL does."""
    audio = model.config.audio
    return {
        "hparams": model.config.to_dict(),
        "audio": {
            "sample_rate": audio.sample_rate,
            "window_samples": audio.window_samples,
            "preprocessing": {"peak_normalise": False, "int16": False, "short_audio": "zero_pad"},
        },
        "text": {"max_length": model.max_length, "padding": "max_length", "pad_token_id": PAD_ID},
    }
