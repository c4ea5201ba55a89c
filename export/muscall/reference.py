"""The PyTorch reference of MusCALL: the truth every fast path is tested against.

It loads a run's ``best_model.pth.tar`` with its ``config.yaml`` and CLIP's tokenizer
files. Keys must match the architecture the config describes exactly, in name and shape,
except the training-only ``logit_scale`` and the unused ``textual_head.ln_final``; the
checkpoint's frontend buffers (window, mel bank) must be the recipe's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.checkpoint import CheckpointError, load_exactly, read_state_dict
from export.clap.reference import track_windows
from export.muscall.config import POOL_HEADS, AudioConfig, MusCALLConfig
from export.muscall.frontend import TorchaudioLogMel, mel_filters
from export.muscall.text_encoder import TextTransformer
from export.muscall.tokenizer import PAD_ID, load_tokenizer
from export.ttmrpp.audio_tower import ModifiedResNet
from runtime.errors import InputError

IGNORED_KEYS = frozenset(
    {"logit_scale", "textual_head.ln_final.weight", "textual_head.ln_final.bias"}
)
WINDOW_ATOL = 1e-6
FILTERS_ATOL = 1e-4  # torchaudio builds the bank in float32; another recipe differs by far more


class AudioBackbone(ModifiedResNet):
    """The ResNet with the frontend's buffers beside it (``spec``), as a run stores them;
    ``forward`` takes the log-mel."""

    def __init__(self, audio: AudioConfig):
        channels = audio.conv_out_channels
        super().__init__(channels, POOL_HEADS, audio.hidden_size, audio.pool_positions, "attnpool")
        self.spec = TorchaudioLogMel(audio)


class MusCALL(nn.Module):
    """Both towers. ``*_encode`` return ``(joint [B, projection_dim], encoder [B, hidden])``;
    ``joint`` is the projection, not normalised."""

    def __init__(self, config: MusCALLConfig, tokenizer=None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.audio_backbone = AudioBackbone(config.audio)
        self.textual_head = TextTransformer(config.text)
        self.audio_projection = nn.Linear(config.audio.hidden_size, config.projection_dim, False)
        self.text_projection = nn.Linear(config.text.hidden_size, config.projection_dim, False)

    @property
    def max_length(self) -> int:
        return self.config.text.max_position_embeddings

    @torch.inference_mode()
    def audio_encode(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, window_samples]``; every row is independent of the others."""
        encoder = self.audio_backbone(self.audio_backbone.spec(windows))
        return self.audio_projection(encoder), encoder

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """CLIP's tokenizer truncating at ``max_length``, then 0-padding to it.
        ``attention_mask`` marks the real tokens; the model never reads it."""
        length = self.max_length
        rows = [self.tokenizer.encode(t, max_length=length, truncation=True) for t in texts]
        input_ids = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = torch.tensor(row)
            mask[index, : len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def text_encode_ids(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = self.textual_head(input_ids)
        return self.text_projection(encoder), encoder

    @torch.inference_mode()
    def text_encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.text_encode_ids(self.tokenize(texts)["input_ids"])

    def embed_track(self, waveform: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """A whole track (mono ``[n]`` or channels-last ``[n, c]``) → the mean over its
        windows: downmix, soxr-HQ resample, no normalisation, zero-pad a short track, whole
        windows of a long one (upstream embeds its centre crop instead)."""
        audio = self.config.audio
        windows = track_windows(
            waveform,
            sample_rate,
            audio.sample_rate,
            audio.window_samples,
            int16=False,
            repeat=False,
        )
        joint, encoder = self.audio_encode(torch.from_numpy(windows))
        return joint.mean(0).numpy(), encoder.mean(0).numpy()


def check_frontend(model: MusCALL, source: str) -> None:
    """The checkpoint's window and mel bank must be the recipe's for its config: the graph
    computes its own, so another frontend would be silently replaced."""
    spec, audio = model.audio_backbone.spec, model.config.audio
    expected = {
        "audio_backbone.spec.spectrogram.window": (torch.hann_window(audio.n_fft), WINDOW_ATOL),
        "audio_backbone.spec.mel_scale.fb": (torch.from_numpy(mel_filters(audio)), FILTERS_ATOL),
    }
    given = {
        "audio_backbone.spec.spectrogram.window": spec.spectrogram.window,
        "audio_backbone.spec.mel_scale.fb": spec.mel_scale.fb,
    }
    for key, (value, atol) in expected.items():
        error = (given[key].double() - value.double()).abs().max().item()
        if not error <= atol:
            raise CheckpointError(
                f"{source}: {key} is not the periodic-Hann / HTK-mel frontend of its config "
                f"(max difference {error:.3g}): another frontend is not supported"
            )


def load_reference(checkpoint: str | Path, config: str | Path, tokenizer: str | Path) -> MusCALL:
    """Build the reference from a run's checkpoint, ``config.yaml`` and CLIP tokenizer
    folder (``vocab.json`` + ``merges.txt``)."""
    settings = MusCALLConfig.from_yaml(config)
    clip = load_tokenizer(tokenizer)
    if len(clip) > settings.text.vocab_size:
        raise InputError(
            f"{tokenizer}: {len(clip)} tokens, more than the model's vocab_size "
            f"{settings.text.vocab_size}"
        )
    model = MusCALL(settings, clip)
    load_exactly(model, read_state_dict(checkpoint), str(checkpoint), IGNORED_KEYS)
    check_frontend(model, str(checkpoint))
    return model.eval()
