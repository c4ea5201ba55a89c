"""A folder's sessions behind the one interface: what runs them before and after they open,
each tower opened on first use, and closed sessions that refuse to run."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.engines.choice import Choice
from runtime.engines.folder import FolderSessions
from runtime.engines.onnxruntime import OnnxRuntimeSession
from runtime.errors import TtmrError
from runtime.manifest import read_manifest

CPU = ["CPUExecutionProvider"]


def test_towers_open_on_first_use_once_and_close_to_open_again(small_model_dir):
    sessions = FolderSessions(
        small_model_dir,
        read_manifest(small_model_dir),
        Choice("onnxruntime", "fp32"),
        providers=CPU,
    )
    assert sessions.floored and sessions.opened == [] and sessions.providers == CPU
    text = sessions.get("text")
    assert sessions.get("text") is text and sessions.opened == ["text"]
    assert sessions.providers == text.providers == CPU
    assert sessions.hand_over() is None  # onnxruntime hands nothing from floor to audio
    sessions.close()
    assert sessions.opened == []
    with pytest.raises(TtmrError, match=r"text\.onnx: the session is closed"):
        text.run(["joint"], {})
    assert sessions.get("text") is not text


def test_the_first_tower_but_the_floor_graph_is_announced_once(small_model_dir):
    said: list[str] = []
    sessions = FolderSessions(
        small_model_dir,
        read_manifest(small_model_dir),
        Choice("onnxruntime", "fp32"),
        on_first_open=lambda: said.append("open"),
    )
    sessions.get("floor")
    assert said == []
    sessions.get("audio")
    sessions.get("text")
    assert said == ["open"]


def test_a_closed_onnxruntime_session_refuses_to_run(small_model_dir):
    session = OnnxRuntimeSession(small_model_dir / "floor.onnx", CPU)
    (rows,) = session.run(["floor"], {"waveform": np.zeros((1, 220500), np.float32)})
    assert rows.shape == (1,)
    session.close()
    with pytest.raises(TtmrError, match="the session is closed"):
        session.run(["floor"], {"waveform": np.zeros((1, 220500), np.float32)})
