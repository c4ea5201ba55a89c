"""A MusCALL run's ``config.yaml``: only its ``model_config`` is read, every size from there.

The file is untrusted: it is parsed as plain YAML (``!!python`` tags are refused), OmegaConf
``${...}`` interpolations elsewhere in it stay unresolved strings, and each value the model
needs is checked for type and range, so that a bad one is refused by name. Only the
architecture MusCALL's runs use (``ModifiedResNet`` with ``attention`` pooling, and
``TextTransformer``) is supported; another is refused by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from export.ttmrpp.hparams import value_problem, yaml_problem
from export.untrusted import read_text
from runtime.errors import InputError

AUDIO_MODELS, POOLINGS, TEXT_MODELS = ("ModifiedResNet",), ("attention",), ("TextTransformer",)
POOL_HEADS = 8  # the audio attention pool's heads
POOL_STRIDE = 32  # the ResNet halves the log-mel five times


@dataclass(frozen=True)
class AudioConfig:
    audio_len_seconds: float
    hidden_size: int
    conv_out_channels: int
    n_mels: int
    sample_rate: int
    n_fft: int
    f_min: float
    f_max: float

    @property
    def window_samples(self) -> int:
        return round(self.audio_len_seconds * self.sample_rate)

    @property
    def hop_length(self) -> int:
        return self.n_fft // 2

    @property
    def frames(self) -> int:
        """STFT frames of one window (centred)."""
        return 1 + self.window_samples // self.hop_length

    @property
    def pool_positions(self) -> int:
        """Rows of the attention pool's positional embedding: one per cell of the final map
        (frequency × time) plus the mean token. The stem's strided 3×3 conv rounds up, the
        four 2×2 average pools down."""
        cells = [((size + 1) // 2) // (POOL_STRIDE // 2) for size in (self.n_mels, self.frames)]
        return cells[0] * cells[1] + 1


@dataclass(frozen=True)
class TextConfig:
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    vocab_size: int
    max_position_embeddings: int


@dataclass(frozen=True)
class MusCALLConfig:
    projection_dim: int
    audio: AudioConfig
    text: TextConfig

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, model_config: object) -> MusCALLConfig:
        """``model_config`` of a run, checked; a ``ValueError`` names the bad entry."""
        if not isinstance(model_config, dict):
            raise ValueError("model_config is not a mapping")
        audio = section(model_config, "audio")
        text = section(model_config, "text")
        choose(audio, "audio.model", AUDIO_MODELS)
        choose(audio, "audio.pooling", POOLINGS)
        choose(text, "text.model", TEXT_MODELS)
        config = cls(
            number(model_config, "projection_dim", "int"),
            AudioConfig(**fields(audio, "audio", AudioConfig)),
            TextConfig(**fields(text, "text", TextConfig)),
        )
        config.check()
        return config

    def check(self) -> None:
        """What the sizes must satisfy together for the architecture to exist."""
        audio, text = self.audio, self.text
        if audio.conv_out_channels % 2:
            raise ValueError(f"audio.conv_out_channels {audio.conv_out_channels} is not even")
        if not audio.f_min < audio.f_max:
            raise ValueError(f"audio.f_min {audio.f_min} is not below audio.f_max {audio.f_max}")
        if audio.window_samples != audio.audio_len_seconds * audio.sample_rate:
            raise ValueError(
                f"audio.audio_len_seconds {audio.audio_len_seconds} is not a whole number of "
                f"samples at {audio.sample_rate} Hz"
            )
        if audio.pool_positions < 2:
            raise ValueError(
                f"a {audio.n_mels}-mel, {audio.frames}-frame log-mel is too small for the "
                "ResNet's five halvings"
            )
        if text.hidden_size % text.num_attention_heads:
            raise ValueError(
                f"text.hidden_size {text.hidden_size} does not split into "
                f"{text.num_attention_heads} heads"
            )

    @classmethod
    def from_yaml(cls, path: str | Path) -> MusCALLConfig:
        """The ``model_config`` of a run's ``config.yaml``; every failure names the file."""
        path = Path(path)
        try:
            raw = yaml.safe_load(read_text(path))
        except yaml.YAMLError as err:
            raise InputError(f"{path}: not plain YAML ({yaml_problem(err)})") from None
        if not isinstance(raw, dict) or "model_config" not in raw:
            raise InputError(f"{path}: no model_config (not a MusCALL run's config.yaml)")
        try:
            return cls.from_dict(raw["model_config"])
        except ValueError as err:
            raise InputError(f"{path}: model_config: {err}") from None


def section(raw: dict, key: str) -> dict:
    if not isinstance(raw.get(key), dict):
        raise ValueError(f"{key} is missing or not a mapping")
    return raw[key]


def choose(raw: dict, label: str, supported: tuple[str, ...]) -> None:
    key = label.split(".")[-1]
    if raw.get(key) not in supported:
        raise ValueError(
            f"{label} is {raw.get(key)!r}: unsupported (supported: {', '.join(supported)})"
        )


def number(raw: dict, key: str, kind: str, label: str = "") -> int | float:
    """``raw[key]`` as a positive finite ``kind``; ``f_min`` alone may be 0."""
    label = label or key
    if key not in raw:
        raise ValueError(f"{label} is missing")
    value = raw[key]
    if key == "f_min" and value == 0 and not isinstance(value, bool):
        return value
    problem = value_problem(value, kind)
    if problem:
        raise ValueError(f"{label} is {value!r}: {problem}")
    return value


def fields(raw: dict, where: str, cls: type) -> dict:
    """The entries of ``raw`` that ``cls`` has, each checked as its annotation says."""
    return {
        name: number(raw, name, kind, f"{where}.{name}")
        for name, kind in cls.__annotations__.items()
    }
