"""The model's hyper-parameters, read from the upstream ``.yaml`` (never hard-coded)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import yaml

from export.untrusted import read_text
from runtime.errors import InputError, first_line

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
# What each annotation in HParams accepts (and how to name it); numbers must also be positive
# and finite, and a bool is never a number, although Python counts it as an int.
KINDS = {
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "str": ((str,), "a string"),
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
        """The hyper-parameters of ``raw``, each checked for its type and range, so that a
        bad value is refused by name instead of failing deep inside the export."""
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.name not in raw]
        if missing:
            raise ValueError(f"config lacks the hyper-parameters {missing}")
        for field in fields:
            problem = value_problem(raw[field.name], field.type)
            if problem:
                raise ValueError(f"hyper-parameter {field.name} is {raw[field.name]!r}: {problem}")
        hp = cls(**{f.name: raw[f.name] for f in fields})
        if hp.hop_length < 1:
            raise ValueError(
                f"hyper-parameter hop_size is {hp.hop_size!r}: under one sample at sr {hp.sr}"
            )
        return hp

    @classmethod
    def from_yaml(cls, path: str | Path) -> HParams:
        """The hyper-parameters of an upstream ``.yaml``, an untrusted file: it is read as
        plain YAML data only (``!!python`` tags are refused) and every failure names it."""
        path = Path(path)
        try:
            raw = yaml.safe_load(read_text(path))
        except yaml.YAMLError as err:
            raise InputError(f"{path}: not plain YAML ({yaml_problem(err)})") from None
        if not isinstance(raw, dict):
            raise InputError(f"{path}: not a YAML mapping of hyper-parameters")
        try:
            return cls.from_dict(raw)
        except ValueError as err:
            raise InputError(f"{path}: {err}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def value_problem(value: object, kind: str) -> str | None:
    """Why ``value`` cannot be a hyper-parameter annotated ``kind``; None when it can."""
    types, noun = KINDS[kind]
    if isinstance(value, bool) or not isinstance(value, types):
        return f"not {noun}"
    if kind != "str" and not 0 < value < math.inf:
        return "not positive and finite"
    return None


def yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's reason and line, on one line (its message spans several)."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem and mark:
        return f"line {mark.line + 1}: {problem}"
    return first_line(err)
