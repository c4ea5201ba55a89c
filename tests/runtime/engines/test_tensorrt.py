"""runtime/engines/tensorrt.py without TensorRT: a feed outside an engine's optimisation profile is
an InputError naming the limit and the rebuild, int64 ids become the engine's int32, and a
missing TensorRT says what to install. The engine path itself needs TensorRT and a GPU."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from export.to_tensorrt import profile_shapes
from runtime.engines.tensorrt import TensorRTSession, check_feed, engine_array
from runtime.errors import InputError, MissingDependency
from runtime.manifest import read_manifest
from tests.helpers import padded_to_max_length


def profile(model_dir, tower: str, max_batch: int = 64, max_tokens: int = 128):
    """The profile ``to_tensorrt.py`` builds the engine with (an engine reports the same)."""
    return profile_shapes(read_manifest(model_dir), tower, max_batch, max_tokens)


def text_profile_of_77_tokens(model_dir):
    """The text profile of a folder whose texts are all padded to 77 tokens."""
    return profile_shapes(padded_to_max_length(read_manifest(model_dir)), "text", 64, 128)


def audio_feed(rows: int, samples: int = 220500) -> dict[str, np.ndarray]:
    return {
        "waveform": np.zeros((rows, samples), np.float32),
        "floor": np.zeros(rows, np.float32),
    }


def text_feed(rows: int, tokens: int) -> dict[str, np.ndarray]:
    ids = np.ones((rows, tokens), np.int64)
    return {"input_ids": ids, "attention_mask": ids}


def test_feeds_within_the_profile_pass(small_model_dir, small_muscall_model_dir):
    for rows in (1, 64):
        check_feed(audio_feed(rows), profile(small_model_dir, "audio"))
        check_feed(text_feed(rows, 1), profile(small_model_dir, "text"))
        check_feed(text_feed(rows, 128), profile(small_model_dir, "text"))
        check_feed(text_feed(rows, 77), text_profile_of_77_tokens(small_muscall_model_dir))


def test_a_batch_above_the_engine_maximum_names_max_batch(small_model_dir):
    with pytest.raises(InputError, match=r"maximum batch of 64.*--max-batch 65"):
        check_feed(audio_feed(65), profile(small_model_dir, "audio"))
    with pytest.raises(InputError, match=r"maximum batch of 8.*--max-batch 9"):
        check_feed(text_feed(9, 4), profile(small_model_dir, "text", max_batch=8))


def test_tokens_above_the_engine_maximum_name_max_tokens(small_model_dir):
    with pytest.raises(InputError, match=r"33 tokens .* maximum of 32.*--max-tokens 33"):
        check_feed(text_feed(2, 33), profile(small_model_dir, "text", max_tokens=32))


def test_fixed_dimensions_must_match(small_model_dir, small_muscall_model_dir):
    with pytest.raises(InputError, match=r"waveform: dimension 1 is 1000, the engine takes 220500"):
        check_feed(audio_feed(2, samples=1000), profile(small_model_dir, "audio"))
    with pytest.raises(InputError, match=r"input_ids: dimension 1 is 76, the engine takes 77"):
        check_feed(text_feed(2, 76), text_profile_of_77_tokens(small_muscall_model_dir))


def test_missing_inputs_and_wrong_ranks_are_refused(small_model_dir):
    audio = profile(small_model_dir, "audio")
    with pytest.raises(InputError, match=r"takes inputs \['floor', 'waveform'\]"):
        check_feed({"waveform": audio_feed(2)["waveform"]}, audio)
    with pytest.raises(InputError, match=r"floor: the engine takes 1-d input"):
        check_feed({**audio_feed(2), "floor": np.zeros((2, 1), np.float32)}, audio)


def test_int64_ids_become_the_engines_int32_and_other_kinds_are_refused():
    ids = np.array([[0, 5, 50264]], np.int64)
    converted = engine_array("input_ids", ids, np.dtype(np.int32))
    assert converted.dtype == np.int32 and converted.flags.c_contiguous
    assert (converted == ids).all()
    with pytest.raises(InputError, match=r"waveform: the engine takes int32, got float32"):
        engine_array("waveform", np.zeros(3, np.float32), np.dtype(np.int32))


def test_without_tensorrt_a_session_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    hint = r"pip install -e '\.\[tensorrt\]' --extra-index-url https://pypi\.nvidia\.com.*nvcr\.io"
    with pytest.raises(MissingDependency, match=hint):
        TensorRTSession(tmp_path / "audio.fp32.plan")


def test_importing_runtime_and_its_tensorrt_module_imports_neither_tensorrt_nor_cuda():
    script = (
        "import sys, runtime, runtime.engines.tensorrt; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'cuda')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_runs_from_several_threads_take_turns_on_the_shared_context():
    """A session without an engine whose ``_run`` records how many calls are inside it."""
    import threading
    import time

    session = object.__new__(TensorRTSession)
    session._lock = threading.Lock()
    inside, most = [0], [0]

    def run(names, feed):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.01)
        inside[0] -= 1
        return []

    session._run = run
    threads = [threading.Thread(target=session.run, args=([], {})) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
