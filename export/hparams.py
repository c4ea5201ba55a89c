"""The model's hyper-parameters, read from the upstream ``.yaml`` (never hard-coded)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

PUBLISHED = {
    "sr": 22050,
    "duration": 10,
    "n_fft": 1024,
    "hop_size": 0.01,
    "n_mels": 128,
    "width": 64,
    "n_heads": 8,
    "audio_dim": 768,
    "text_arch": "roberta-base",
    "text_dim": 768,
    "max_length": 128,
    "mlp_dim": 128,
    "temperature": 0.1,
}


@dataclasses.dataclass(frozen=True)
class HParams:
    """What the reference and the graphs need from the checkpoint's ``.yaml``."""

    sr: int
    duration: float
    n_fft: int
    hop_size: float
    n_mels: int
    width: int
    n_heads: int
    audio_dim: int
    text_arch: str
    text_dim: int
    max_length: int
    mlp_dim: int

    @property
    def hop_length(self) -> int:
        return int(self.hop_size * self.sr)

    @property
    def window_samples(self) -> int:
        return int(self.sr * self.duration)

    @classmethod
    def from_dict(cls, raw: dict) -> HParams:
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in raw]
        if missing:
            raise ValueError(f"config lacks the hyper-parameters {missing}")
        return cls(**{n: raw[n] for n in names})

    @classmethod
    def from_yaml(cls, path: str | Path) -> HParams:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: not a YAML mapping of hyper-parameters")
        try:
            return cls.from_dict(raw)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
