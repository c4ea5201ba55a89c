"""The PyTorch reference of TTMR++: the truth every fast path is tested against.

It loads the published ``ttmrpp_resnet_roberta.pth`` + ``.yaml`` unchanged. Only the
config and tokenizer of ``text_arch`` are read; all weights come from the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import torch
from torch import nn
from transformers import RobertaModel

from export.checkpoint import load_exactly, read_state_dict
from export.text_tower import resolve_text_arch
from export.ttmrpp.audio_tower import ModifiedResNet
from export.ttmrpp.frontend import ReferenceLogMel
from export.ttmrpp.hparams import HParams

# Keys the published TTMR++ checkpoint carries that inference does not use
# (docs/models.md, "TTMR++" / "Checkpoint").
IGNORED_KEYS = frozenset(
    {"logit_scale", "loss_fct.logit_scale", "text_encoder.embeddings.position_ids"}
)


def projector(dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, out_dim, bias=False))


class TTMRpp(nn.Module):
    """Both towers. ``*_encode`` return ``(joint [B, mlp_dim], encoder [B, 768])``."""

    def __init__(self, hp: HParams, text_config, tokenizer=None):
        super().__init__()
        if text_config.hidden_size != hp.text_dim:
            raise ValueError(
                f"text_arch hidden_size {text_config.hidden_size} != text_dim {hp.text_dim}"
            )
        self.hp = hp
        self.tokenizer = tokenizer
        self.frontend = ReferenceLogMel(hp)
        self.audio_encoder = ModifiedResNet(hp.width, hp.n_heads, hp.audio_dim)
        self.text_encoder = RobertaModel(text_config, add_pooling_layer=False)
        self.audio_projector = projector(hp.audio_dim, hp.mlp_dim)
        self.text_projector = projector(hp.text_dim, hp.mlp_dim)

    @torch.inference_mode()
    def audio_encode(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows of one track ``[B, N]``; the frontend's floor sees the whole batch."""
        encoder = self.audio_encoder(self.frontend(waveform))
        return self.audio_projector(encoder), encoder

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.hp.max_length,
            return_tensors="pt",
        )

    def text_encode_ids(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        )
        encoder = hidden.last_hidden_state[:, 0]
        return self.text_projector(encoder), encoder

    @torch.inference_mode()
    def text_encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenize(texts)
        return self.text_encode_ids(tokens["input_ids"], tokens["attention_mask"])

    def embed_track(self, waveform: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """A whole track (mono ``[n]`` or channels-last ``[n, c]``) → mean over its windows."""
        joint, encoder = self.audio_encode(
            torch.from_numpy(track_windows(waveform, sample_rate, self.hp))
        )
        return joint.mean(0).numpy(), encoder.mean(0).numpy()


def track_windows(waveform: np.ndarray, sample_rate: int, hp: HParams) -> np.ndarray:
    """docs/models.md, "TTMR++" / "Audio preprocessing": downmix, soxr-HQ resample,
    peak-normalise, int16 round trip, 10-s windows (remainder dropped, short tracks
    zero-padded).

    Digital silence (max == min) normalises to zeros instead of upstream's 0/0 NaN.
    """
    audio = np.asarray(waveform, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if sample_rate != hp.sr:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=hp.sr, res_type="soxr_hq")
    low, high = audio.min(), audio.max()
    if high > low:
        audio = (audio - low) / (high - low) * 2 - 1
    else:
        audio = np.zeros_like(audio)
    audio = (audio * 32767).astype(np.int16) / 32767.0
    audio = audio.astype(np.float32)
    size = hp.window_samples
    if len(audio) < size:
        audio = np.pad(audio, (0, size - len(audio)))
    count = len(audio) // size
    return audio[: count * size].reshape(count, size)


def load_track(path: str | Path, hp: HParams) -> np.ndarray:
    """Decode as upstream does (``librosa.load``: mono, soxr-HQ to ``sr``) and window it."""
    audio, _ = librosa.load(path, sr=hp.sr, mono=True)
    return track_windows(audio, hp.sr, hp)


def load_reference(
    checkpoint: str | Path, config: str | Path, text_arch: str | Path | None = None
) -> TTMRpp:
    """Build the reference from an upstream ``.pth`` + ``.yaml``; keys must match exactly."""
    hp = HParams.from_yaml(config)
    text_config, tokenizer = resolve_text_arch(str(text_arch or hp.text_arch))
    model = TTMRpp(hp, text_config, tokenizer)
    load_exactly(model, read_state_dict(checkpoint), str(checkpoint), IGNORED_KEYS)
    return model.eval()
