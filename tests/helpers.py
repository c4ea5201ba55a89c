"""What several test modules share: the small models' sizes, the row comparison every parity
test makes, ONNX Runtime sessions and feeds, and per family (``FAMILY_CASES``) the inputs
and tolerances its graphs and runtime are checked against its reference with. Fixtures are
in ``conftest.py``; no test module imports another."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

# conftest.py imports this module: torch, onnx and onnxruntime are imported where they are
# used, so that collecting tests that need none of them stays quick.

# TTMR++: small widths of the same architecture; the frontend (22.05 kHz, 10-s windows) is
# unchanged.
SMALL_HPARAMS = {"width": 8, "n_heads": 2, "audio_dim": 32, "mlp_dim": 16, "text_dim": 32}
SMALL_ROBERTA = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
# CLAP: HTSAT with narrow stages (its 256² input, 64 mels and 48 kHz frontend unchanged) and
# a two-layer RoBERTa; the full size is the demo (laion/larger_clap_music's architecture).
SMALL_CLAP_AUDIO = {
    "patch_embeds_hidden_size": 16,
    "hidden_size": 128,
    "depths": [2, 2, 2, 2],
    "num_attention_heads": [1, 2, 4, 8],
}
SMALL_CLAP_TEXT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
# MusCALL: a narrow ResNet (its 16 kHz, 20-s, 128-mel frontend unchanged) and a two-layer text
# transformer; the full size is the demo (the default model_config).
SMALL_MUSCALL = {
    "audio": {"conv_out_channels": 4, "hidden_size": 32},
    "text": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2},
    "projection_dim": 16,
}


def ttmrpp_source(checkpoint, config, text_arch):
    """The ``Source`` of a TTMR++ checkpoint: what ``--checkpoint``, ``--config`` and
    ``--text-arch`` name."""
    from export.families import Source

    return Source(checkpoint=checkpoint, config=config, text_arch=text_arch)


class Payload:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def assert_close(reference: np.ndarray, got: np.ndarray, cosine_min: float, rel: float):
    """Every row's cosine to the reference at least ``cosine_min``, and max |Δ| at most
    ``rel`` times the reference's max |value|."""
    from export.quantize import cosines

    cosine = cosines(reference, got)
    assert np.min(cosine) >= cosine_min, cosine
    assert np.abs(reference - got).max() <= rel * np.abs(reference).max()


def session(path):
    """An ONNX Runtime CPU session of the graph in ``path``."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def token_feed(tokens: dict, graph=None) -> dict[str, np.ndarray]:
    """The text graph's inputs from a reference ``tokenize()`` result: those ``graph`` (an
    ONNX Runtime session) takes, else every one of ``TEXT_INPUTS``."""
    from export.onnx_export import TEXT_INPUTS

    names = [value.name for value in graph.get_inputs()] if graph else TEXT_INPUTS
    return {name: tokens[name].numpy() for name in names}


def audio_feed(model_dir, windows: np.ndarray) -> dict[str, np.ndarray]:
    """The audio graph's feed for the windows of one track: with the track's log-mel floor
    where the model has a floor graph (TTMR++)."""
    from runtime.batching import whole_track_feed

    graph = model_dir / "floor.onnx"
    floor = session(graph) if graph.is_file() else None
    return whole_track_feed(windows, floor and (lambda batch: floor.run(None, batch.feed)))


def stem_conv(graph):
    """The ResNet's first convolution in a TTMR++ audio graph, found by its weights' shape
    (one input channel, 3×3) rather than by position: its input is the log-mel."""
    weights = {init.name: init for init in graph.initializer}
    return next(
        node
        for node in graph.node
        if node.op_type == "Conv"
        and node.input[1] in weights
        and list(weights[node.input[1]].dims)[1:] == [1, 3, 3]
    )


def log_mel_tensor(graph) -> str:
    """The name of the in-graph log-mel (dB) of a CLAP audio graph: the graph's one ``Log``,
    followed through the scalar multiplications and divisions that make it ``10 · log10``."""
    scalars = {init.name for init in graph.initializer if len(init.dims) == 0}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    (log,) = [node for node in graph.node if node.op_type == "Log"]
    tensor = log.output[0]
    while True:
        (node,) = consumers[tensor]
        if node.op_type not in ("Mul", "Div") or not set(node.input) & scalars:
            return tensor
        tensor = node.output[0]


def ttmrpp_windows(windows: int, seed: int, loudness: float = 0.3) -> np.ndarray:
    """Noise plus a tone at 22.05 kHz, already in the int16 grid that preprocessing
    produces."""
    rng = np.random.default_rng(seed)
    t = np.arange(windows * 220500) / 22050
    audio = loudness * (
        np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.3 * rng.standard_normal(len(t))
    )
    audio = np.round(np.clip(audio, -1, 1) * 32767) / 32767
    return audio.astype(np.float32).reshape(windows, 220500)


def clap_windows(count: int, seed: int) -> np.ndarray:
    """Tones over noise at 48 kHz at loudness from -60 dB to full scale, on the int16 grid;
    the last window of three or more is digital silence for its first half (the -100 dB
    floor)."""
    rate, window = 48000, 480000
    rng = np.random.default_rng(seed)
    t = np.arange(window) / rate
    rows = []
    for row in range(count):
        gain = 10.0 ** (-3 * row / max(count - 1, 1))
        tone = np.sin(2 * np.pi * (110 * (row + 1) + 40 * seed) * t)
        rows.append(gain * np.clip(0.6 * tone + 0.3 * rng.standard_normal(window), -1, 1))
    audio = np.round(np.stack(rows) * 32767) / 32767
    if count >= 3:
        audio[-1, : window // 2] = 0.0
    return audio.astype(np.float32)


def one_loud_window(windows: int, loud: int, seed: int) -> np.ndarray:
    """``windows`` 10-s windows of quiet music and, at window ``loud``, a loud one: the
    track's floor is set there, after the first batch when ``loud >= batch_size``."""
    from export.synthetic import random_track

    quiet = [0.02 * random_track(seed + k, 10.0) for k in range(3)]
    parts = [quiet[k % 3] for k in range(windows)]
    parts[loud] = 50 * quiet[loud % 3]
    return np.concatenate(parts)


def muscall_windows(count: int, seed: int) -> np.ndarray:
    """20-s windows at 16 kHz: tones over noise at levels from full scale down to -60 dB."""
    rng = np.random.default_rng(seed)
    t = np.arange(320000) / 16000
    rows = []
    for row in range(count):
        gain = 10.0 ** (-3 * row / max(count - 1, 1))
        tone = np.sin(2 * np.pi * (220 * (row + 1) + 30 * seed) * t)
        rows.append(gain * np.clip(0.6 * tone + 0.3 * rng.standard_normal(len(t)), -1, 1))
    return np.stack(rows).astype(np.float32)


UNICODE = "Ünïcödé: 日本の音楽、ピアノとヴァイオリン — café jazz ♪ 🎷"


@dataclass(frozen=True)
class FamilyCase:
    """How one family is checked against its reference: the fixtures of its small and
    full-size models (``{size}_{prefix}model_dir``, ``{size}_{prefix}reference``), its rate
    and window, the least cosine and largest relative error its graphs and runtime may
    show, the windows its graph tests feed, and texts from empty to far past
    ``max_length`` tokens."""

    prefix: str
    rate: int
    window: int
    max_length: int
    cosine_min: float
    rel_error_max: float
    windows: object  # (count, seed) → preprocessed windows [count, window]
    texts: tuple[str, ...]

    def model(self, request: pytest.FixtureRequest, size: str):
        """``(model_dir, reference)`` of the ``small`` or ``demo`` model."""
        return (
            request.getfixturevalue(f"{size}_{self.prefix}model_dir"),
            request.getfixturevalue(f"{size}_{self.prefix}reference"),
        )

    def assert_close(self, reference, got: np.ndarray) -> None:
        """``assert_close`` with this family's tolerances (``reference`` may be a tensor)."""
        reference = reference.numpy() if hasattr(reference, "numpy") else reference
        assert_close(reference, got, self.cosine_min, self.rel_error_max)


FAMILY_CASES = {
    "ttmrpp": FamilyCase(
        prefix="",
        rate=22050,
        window=220500,
        max_length=128,
        cosine_min=0.999999,
        rel_error_max=1e-5,  # max |ort - ref| / max |ref|
        windows=ttmrpp_windows,
        texts=(
            "",
            "a calm solo piano piece in D",
            "rock",
            UNICODE,
            "Ünïcödé: 日本の音楽、ピアノ — café jazz ♪ 🎷",
            "distorted guitars and fast drums " * 40,  # far past 128 tokens: truncated
        ),
    ),
    "clap": FamilyCase(
        prefix="clap_",
        rate=48000,
        window=480000,
        max_length=77,
        cosine_min=0.99999,  # measured ≥ 0.9999998
        rel_error_max=1e-5,  # measured ≤ 2e-6
        windows=clap_windows,
        texts=(
            "",
            "a calm solo piano piece in D",
            "rock",
            UNICODE,
            "Ünïcödé: café jazz ♪ 🎷",
            "fast drums " * 40,
            "distorted guitars and fast drums " * 20,  # past 77 tokens: truncated
        ),
    ),
    "muscall": FamilyCase(
        prefix="muscall_",
        rate=16000,
        window=320000,
        max_length=77,
        cosine_min=0.999999,  # measured ≥ 0.99999982
        rel_error_max=1e-5,  # measured ≤ 5e-6 (full size)
        windows=muscall_windows,
        texts=(
            "",
            "a calm solo piano piece in D",
            "A Calm SOLO Piano Piece In D!",
            UNICODE,
            "café, naïve façade — Ünïcödé élan",
            "tabs\tbetween\twords\nand new\r\nlines",
            "punctuation: (parens), [brackets]; 'quotes' \"double\"... it's ok?!",
            "  leading and trailing spaces  ",
            "distorted guitars and fast drums " * 20,  # past 77 tokens: truncated
        ),
    ),
}


def one_error_line(capsys) -> str:
    """The command's error, one line; the line saying what runs the model may come before
    it, when the error came after the model loaded (``ttmr index`` loads it while the
    catalog opens)."""
    lines = capsys.readouterr().err.splitlines()
    if lines and lines[0].startswith("ttmr: running on "):
        lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("ttmr: error: "), lines
    return lines[0]


def quantized_copy(model_dir: Path, folder: Path, windows: int) -> tuple[Path, str]:
    """The folder with INT8 graphs added (``export/quantize.py``), and what it printed."""
    from export.quantize import quantize_model

    shutil.copytree(model_dir, folder)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        quantize_model(folder, calibration_windows=windows)
    return folder, printed.getvalue()


def padded_to_max_length(manifest):
    """``manifest`` as a folder exported with ``padding: max_length`` records it (every
    text padded to ``max_length``; no family exports that now, older folders do)."""
    return manifest.replace(text=replace(manifest.text, padding="max_length"))
