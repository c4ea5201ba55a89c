"""Shared fixtures: a small model (fast) and the full-size demo model, each exported once."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

# Small widths of the same architecture; the frontend (22.05 kHz, 10-s windows) is unchanged.
SMALL_HPARAMS = {"width": 8, "n_heads": 2, "audio_dim": 32, "mlp_dim": 16, "text_dim": 32}
SMALL_ROBERTA = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


def _export(folder: Path, **demo_kwargs) -> tuple[Path, tuple[Path, Path, Path]]:
    from export.demo import write_demo_checkpoint
    from export.to_onnx import export_model

    files = write_demo_checkpoint(folder / "checkpoint", **demo_kwargs)
    with contextlib.redirect_stdout(io.StringIO()):
        export_model(*files, folder, random_weights=True)
    return folder, files


@pytest.fixture(scope="session")
def small_export(tmp_path_factory):
    """``(model_dir, (checkpoint, config, text_arch))`` of the small model."""
    folder = tmp_path_factory.mktemp("small_model")
    return _export(folder, seed=1, hparams=SMALL_HPARAMS, roberta=SMALL_ROBERTA)


@pytest.fixture(scope="session")
def small_model_dir(small_export) -> Path:
    return small_export[0]


@pytest.fixture(scope="session")
def small_reference(small_export):
    from export.reference import load_reference

    return load_reference(*small_export[1])


@pytest.fixture(scope="session")
def demo_export(tmp_path_factory):
    """The full-size published architecture with random weights, written by the real
    ``to_onnx.py --demo`` command: ``(model_dir, (checkpoint, config, text_arch), log)``."""
    from export.to_onnx import main

    folder = tmp_path_factory.mktemp("demo_model")
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        assert main(["--demo", "--output", str(folder)]) == 0
    checkpoint = folder / "checkpoint"
    files = (checkpoint / "ttmrpp.pth", checkpoint / "ttmrpp.yaml", checkpoint / "text_arch")
    return folder, files, log.getvalue()


@pytest.fixture(scope="session")
def demo_model_dir(demo_export) -> Path:
    return demo_export[0]


@pytest.fixture(scope="session")
def demo_reference(demo_export):
    from export.reference import load_reference

    return load_reference(*demo_export[1])
