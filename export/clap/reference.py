"""The PyTorch reference of CLAP: transformers' ``ClapModel`` with ``ClapFeatureExtractor``.

Only non-fusion checkpoints are supported (LAION's music checkpoints are non-fusion): a
10-s window is one log-mel, with the Slaney filter bank the feature extractor uses for
them. ``joint`` is the unnormalised projection (``get_*_features`` L2-normalise it);
``encoder`` is the pooled output before the projection.

Audio is preprocessed as the code a checkpoint comes from does (its ``origin``): a Hugging
Face folder as transformers' ``ClapFeatureExtractor`` (the samples as given), a ``laion_clap``
``.pt`` as ``laion_clap`` (clipped to [-1, 1] and round-tripped through int16 first).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import torch
from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

from export.untrusted import check_hf_folder, check_safetensors
from runtime.errors import InputError, first_line

# laion_clap tokenizes every text to exactly 77 tokens (padding="max_length").
TEXT_LENGTH = 77
# The frontend of LAION's music checkpoints (laion_clap's HTSAT audio_cfg; the
# preprocessor_config.json of laion/larger_clap_music says the same).
LAION_FEATURES = {
    "feature_size": 64,
    "sampling_rate": 48000,
    "fft_window_size": 1024,
    "hop_length": 480,
    "max_length_s": 10,
    "frequency_min": 50,
    "frequency_max": 14000,
    "top_db": None,
    "truncation": "rand_trunc",
    "padding": "repeatpad",
}
ORIGINS = ("huggingface", "laion")


@dataclass
class ClapReference:
    """Both towers. ``*_encode`` return ``(joint [B, projection_dim], encoder [B, hidden])``;
    ``origin`` (one of ``ORIGINS``) names the code whose audio preprocessing to follow."""

    model: ClapModel
    features: ClapFeatureExtractor
    tokenizer: object
    origin: str

    def __post_init__(self):
        self.model.eval()
        if self.origin not in ORIGINS:
            raise ValueError(f"origin {self.origin!r} not in {ORIGINS}")
        audio = self.model.config.audio_config
        if audio.enable_fusion:
            raise ValueError("fusion CLAP checkpoints are not supported (enable_fusion is True)")
        if self.features.truncation == "fusion":
            raise ValueError(
                "the feature extractor's truncation is 'fusion', which only fusion checkpoints "
                "read; non-fusion checkpoints need 'rand_trunc'"
            )
        if self.features.padding != "repeatpad":
            raise ValueError(
                f"the feature extractor's padding is {self.features.padding!r}; only "
                "'repeatpad' (repeat a short track whole, then zero-pad) is supported"
            )
        if self.features.top_db is not None:
            raise ValueError("a feature extractor with top_db (a dB range limit) is not supported")
        if self.features.feature_size != audio.num_mel_bins:
            raise ValueError(
                f"feature extractor has {self.features.feature_size} mel bins, the audio model "
                f"{audio.num_mel_bins}"
            )

    @property
    def sample_rate(self) -> int:
        return self.features.sampling_rate

    @property
    def window_samples(self) -> int:
        return self.features.nb_max_samples

    @property
    def int16(self) -> bool:
        """``laion_clap`` quantises audio through int16 before its frontend, as its training
        data was; transformers' feature extractor takes the samples as they are."""
        return self.origin == "laion"

    @property
    def max_length(self) -> int:
        return TEXT_LENGTH

    @property
    def mel_filters(self) -> np.ndarray:
        """``[bins, n_mels]``: the bank the feature extractor applies to a 10-s window."""
        return self.features.mel_filters_slaney

    def log_mel(self, windows: np.ndarray) -> torch.Tensor:
        """``[B, window_samples]`` → ``input_features [B, 1, frames, n_mels]`` (dB)."""
        out = self.features(list(windows), sampling_rate=self.sample_rate, return_tensors="pt")
        return out["input_features"].float()

    @torch.inference_mode()
    def audio_encode(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = self.model.audio_model(input_features=self.log_mel(windows.numpy()))
        encoder = encoder.pooler_output
        return self.model.audio_projection(encoder), encoder

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=TEXT_LENGTH,
            return_tensors="pt",
        )

    def text_encode_ids(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = self.model.text_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        )
        encoder = encoder.pooler_output
        return self.model.text_projection(encoder), encoder

    @torch.inference_mode()
    def text_encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenize(texts)
        return self.text_encode_ids(tokens["input_ids"], tokens["attention_mask"])

    def embed_track(self, waveform: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """A whole track (mono ``[n]`` or channels-last ``[n, c]``) → mean over its windows."""
        windows = track_windows(
            waveform, sample_rate, self.sample_rate, self.window_samples, int16=self.int16
        )
        joint, encoder = self.audio_encode(torch.from_numpy(windows))
        return joint.mean(0).numpy(), encoder.mean(0).numpy()


def track_windows(
    waveform: np.ndarray,
    sample_rate: int,
    rate: int,
    size: int,
    *,
    int16: bool,
    repeat: bool = True,
) -> np.ndarray:
    """A track as CLAP's references preprocess it, made deterministic: downmix, soxr-HQ
    resample to ``rate``, then (``int16``, laion_clap only) clip to [-1, 1] and round-trip
    through int16. A track shorter than a window is repeat-padded (both references'
    ``repeatpad``; zero-padded only, without ``repeat``, as MusCALL's), a longer one cut
    into whole windows (the remainder dropped) instead of their random 10-s crop."""
    audio = np.asarray(waveform, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if sample_rate != rate:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=rate, res_type="soxr_hq")
    if int16:
        audio = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16) / 32767.0
        audio = audio.astype(np.float32)
    if len(audio) < size:
        if repeat:
            audio = np.tile(audio, size // len(audio))
        audio = np.pad(audio, (0, size - len(audio)))
    count = len(audio) // size
    return audio[: count * size].reshape(count, size)


def load_hf_folder(folder: str | Path) -> ClapReference:
    """A Hugging Face CLAP folder (config.json, weights, tokenizer and preprocessor files),
    read locally; nothing is downloaded. The folder is untrusted input: it is checked first
    (``check_hf_folder``), and none of its code may run."""
    folder = Path(folder)
    check_hf_folder(folder, "clap")
    weights = weights_file(folder)
    options = {"local_files_only": True, "trust_remote_code": False}
    try:
        model = ClapModel.from_pretrained(folder, **options)
        features = ClapFeatureExtractor.from_pretrained(folder, **options)
        tokenizer = AutoTokenizer.from_pretrained(folder, **options)
    except pickle.UnpicklingError:  # torch's own message advises weights_only=False
        raise InputError(
            f"{weights}: not a readable PyTorch weights file (torch.load with weights_only=True "
            "refused it: it is corrupt or holds objects other than tensors)"
        ) from None
    except (OSError, ValueError) as err:
        raise ValueError(f"{folder}: cannot load the CLAP model ({first_line(err)})") from None
    return ClapReference(model, features, tokenizer, origin="huggingface")


def weights_file(folder: str | Path) -> Path:
    """The weights file of a Hugging Face folder (safetensors, else the PyTorch pickle); a
    safetensors header is read here, so that a corrupt one is refused by name."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = Path(folder) / name
        if path.is_file():
            if path.suffix == ".safetensors":
                check_safetensors(path)
            return path
    raise ValueError(f"{folder}: no model.safetensors or pytorch_model.bin")
