"""Every bad input raises runtime.InputError naming the item; nothing partial, no NaN."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import runtime
from export.synthetic import random_track


@pytest.fixture(scope="module")
def embedder(small_model_dir):
    return runtime.Embedder(small_model_dir)


@pytest.fixture(scope="module")
def good_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "good.wav"
    sf.write(path, random_track(1, 3.0), 22050)
    return path


def corrupt_file(folder: Path) -> Path:
    path = folder / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEthis is not audio")
    return path


def empty_file(folder: Path) -> Path:
    path = folder / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 22050)
    return path


BAD_AUDIO = {
    "missing file": (lambda d: d / "absent.wav", r"item 1 \('.*absent\.wav'\): no such file"),
    "undecodable file": (corrupt_file, r"item 1 \('.*corrupt\.wav'\): cannot decode"),
    "empty file": (empty_file, r"item 1 \('.*empty\.wav'\): the audio is empty"),
    "empty array": (lambda d: np.zeros(0, np.float32), r"item 1: the audio is empty"),
    "NaN samples": (lambda d: np.array([0.1, np.nan, 0.2], np.float32), r"item 1: .*NaN"),
    "inf samples": (lambda d: np.array([0.1, np.inf], np.float64), r"item 1: .*infinite"),
    "3-D array": (lambda d: np.zeros((10, 2, 2), np.float32), r"item 1: expected shape"),
    "no channels": (lambda d: np.zeros((10, 0), np.float32), r"item 1: expected shape"),
    "complex dtype": (lambda d: np.zeros(10, np.complex64), r"item 1: unsupported sample dtype"),
    "bool dtype": (lambda d: np.zeros(10, bool), r"item 1: unsupported sample dtype"),
    "object dtype": (lambda d: np.array([0.1, "x"], object), r"item 1: unsupported sample dtype"),
    "string dtype": (lambda d: np.array(["0.1", "0.2"]), r"item 1: unsupported sample dtype"),
    "not audio": (lambda d: 42, r"item 1: expected a path or a numpy array, got int"),
}


@pytest.mark.parametrize("case", BAD_AUDIO)
def test_bad_audio_item_is_named(embedder, good_file, tmp_path, case):
    make, message = BAD_AUDIO[case]
    with pytest.raises(runtime.InputError, match=message):
        embedder.embed_audio([good_file, make(tmp_path)], sample_rate=22050)


def test_array_without_sample_rate_is_named(embedder, good_file):
    with pytest.raises(runtime.InputError, match=r"item 1: arrays need sample_rate"):
        embedder.embed_audio([good_file, np.zeros(100, np.float32)])


@pytest.mark.parametrize("rate", [0, -8000, 22050.5, True])
def test_bad_sample_rate_is_refused(embedder, rate):
    with pytest.raises(runtime.InputError, match=r"item 0: sample rate must be a positive integer"):
        embedder.embed_audio([np.zeros(100, np.float32)], sample_rate=rate)


@pytest.mark.parametrize("item", ["song.wav", Path("song.wav"), np.zeros(100, np.float32)])
def test_single_audio_item_instead_of_a_list_is_refused(embedder, item):
    with pytest.raises(runtime.InputError, match=r"wrap the single item in \[\.\.\.\]"):
        embedder.embed_audio(item, sample_rate=22050)


def test_bare_string_instead_of_text_list_is_refused(embedder):
    with pytest.raises(runtime.InputError, match=r"not a single string"):
        embedder.embed_text("a calm piano piece")


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["nested"]])
def test_non_string_text_is_named(embedder, bad):
    with pytest.raises(runtime.InputError, match=r"item 1: expected a string"):
        embedder.embed_text(["fine", bad])


def test_unknown_space_is_refused(embedder, good_file):
    with pytest.raises(runtime.InputError, match=r"space must be one of"):
        embedder.embed_audio([good_file], space="latent")
    with pytest.raises(runtime.InputError, match=r"space must be one of"):
        embedder.embed_text(["x"], space="latent")


def test_missing_model_folder_is_an_input_error(tmp_path, monkeypatch):
    with pytest.raises(runtime.InputError, match=r"has no manifest.json"):
        runtime.Embedder(tmp_path)
    monkeypatch.delenv("TTMR_MODEL_DIR", raising=False)
    with pytest.raises(runtime.InputError, match=r"TTMR_MODEL_DIR"):
        runtime.embed_text(["x"])


def test_input_error_is_a_value_error():
    assert issubclass(runtime.InputError, ValueError)


def test_empty_lists_give_empty_results(embedder):
    assert embedder.embed_audio([]).shape == (0, 16)
    assert embedder.embed_text([], space="encoder").shape == (0, 32)


def test_one_bad_item_fails_before_any_graph_runs(small_model_dir, good_file, tmp_path):
    model = runtime.Embedder(small_model_dir)
    with pytest.raises(runtime.InputError, match=re.escape(str(tmp_path / "absent.wav"))):
        model.embed_audio([good_file, tmp_path / "absent.wav"])
    assert model._sessions.opened == []  # validation happens before the tower is even loaded


def test_import_runtime_needs_no_torch_transformers_tritonclient_or_the_catalog_extras():
    heavy = "{'torch', 'transformers', 'tritonclient', 'lancedb', 'pyarrow', 'av', 'ray'}"
    script = f"import sys, runtime, runtime.cli.main; print(sorted({heavy} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_non_finite_model_output_is_an_error_not_a_silent_nan(
    small_model_dir, good_file, monkeypatch
):
    model = runtime.Embedder(small_model_dir)
    for tower in ("audio", "text"):
        session = model._sessions.get(tower)
        real_run = session.run
        monkeypatch.setattr(
            session, "run", lambda names, feed, run=real_run: [np.nan * run(names, feed)[0]]
        )
    with pytest.raises(runtime.NonFiniteEmbeddings, match=r"items \[0\]: the model produced"):
        model.embed_audio([good_file])
    with pytest.raises(runtime.NonFiniteEmbeddings, match=r"items \[0, 1\]: the model produc"):
        model.embed_text(["piano", "drums"])


def test_missing_precision_or_engines_say_which_command_writes_them(small_model_dir):
    with pytest.raises(runtime.InputError, match=r"no fp16 graphs; write them with export/fp16"):
        runtime.Embedder(small_model_dir, precision="fp16")
    with pytest.raises(runtime.InputError, match=r"no int8 graphs; write them with export/quant"):
        runtime.Embedder(small_model_dir, precision="int8")
    with pytest.raises(runtime.InputError, match=r"precision must be one of"):
        runtime.Embedder(small_model_dir, precision="int4")
    with pytest.raises(runtime.InputError, match=r"to_tensorrt.py --model-dir"):
        runtime.Embedder(small_model_dir, backend="tensorrt")
    with pytest.raises(runtime.InputError, match=r"backend must be one of"):
        runtime.Embedder(small_model_dir, backend="coreml")


def test_auto_backend_without_engines_runs_onnxruntime(small_model_dir):
    model = runtime.Embedder(small_model_dir)
    assert model.backend == "onnxruntime"
    model.embed_text(["piano"])
    assert model.providers == model._sessions.get("text").providers


def test_module_level_helpers_take_the_embedder_options(small_model_dir):
    direct = runtime.Embedder(small_model_dir, threads=1, batch_size=1)
    expected = direct.embed_text(["piano", "drums"], normalize=True)
    got = runtime.embed_text(
        ["piano", "drums"], model_dir=small_model_dir, threads=1, batch_size=1, normalize=True
    )
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(runtime.InputError, match=r"no int8 graphs; write them with"):
        runtime.embed_audio([np.zeros(100, np.float32)], small_model_dir, precision="int8")


def test_the_error_family_shares_one_base_and_keeps_the_builtin_kinds():
    from runtime.errors import TtmrError

    for kind, builtin in [
        (runtime.InputError, ValueError),
        (runtime.ModelFolderError, runtime.InputError),
        (runtime.MissingDependency, ImportError),
        (runtime.NonFiniteEmbeddings, RuntimeError),
        (runtime.TritonUnavailable, ConnectionError),
    ]:
        assert issubclass(kind, TtmrError) and issubclass(kind, builtin), kind


def test_a_missing_dependency_names_the_extra_to_install_from_the_checkout():
    from runtime.errors import missing_dependency

    err = missing_dependency("LanceDB", extra="catalog", needed_for="the catalog", item="a.wav")
    assert isinstance(err, ImportError) and (err.package, err.extra) == ("LanceDB", "catalog")
    assert str(err) == (
        "a.wav: LanceDB is not installed (the catalog needs it): "
        "pip install -e '.[catalog]' in the ttmr-runtime checkout"
    )
    assert err.reason.startswith("LanceDB is not installed") and err.msg == str(err)


def test_a_model_folder_without_a_manifest_is_a_model_folder_error(tmp_path):
    with pytest.raises(runtime.ModelFolderError, match=r"has no manifest\.json"):
        runtime.Embedder(tmp_path)
