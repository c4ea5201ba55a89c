"""A tampered, truncated or half-copied model folder is refused with an InputError naming
the file when the Embedder is made, never a traceback from inside json, onnxruntime or
tokenizers, and never a file outside the folder."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import runtime
import runtime.engines.folder
from export.synthetic import random_track


@pytest.fixture
def folder(small_model_dir, tmp_path) -> Path:
    """A copy of the small model to tamper with."""
    return Path(shutil.copytree(small_model_dir, tmp_path / "model"))


def edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def write_raw_manifest(content: bytes):
    return lambda folder: (folder / "manifest.json").write_bytes(content)


def change(mutate):
    return lambda folder: edit_manifest(folder, mutate)


TAMPERED = {
    "malformed JSON": (write_raw_manifest(b'{"format": 2,'), r"manifest\.json: not a JSON"),
    "non-UTF-8 bytes": (write_raw_manifest(b'{"family": "\xff"}'), r"manifest\.json: not a JSON"),
    "not an object": (write_raw_manifest(b"[1, 2]"), r"manifest\.json: incomplete manifest"),
    "no audio section": (change(lambda m: m.pop("audio")), r"incomplete manifest: no audio"),
    "no text file": (change(lambda m: m["text"].pop("file")), r"no text\.file"),
    "family not a name": (change(lambda m: m.update(family="../x")), r"not a family name"),
    "family not a string": (change(lambda m: m.update(family=7)), r"family must be a str"),
    "older format": (change(lambda m: m.update(format=1)), r"manifest format 1, but"),
    "newer format": (change(lambda m: m.update(format=4)), r"manifest format 4, but"),
    "format 2 (a track-id graph)": (
        change(lambda m: m.update(format=2)),
        r"manifest format 2, but this version reads format 3: export the model again",
    ),
    "window_samples 0": (
        change(lambda m: m["audio"].update(window_samples=0)),
        r"audio\.window_samples must be positive",
    ),
    "window_samples negative": (
        change(lambda m: m["audio"].update(window_samples=-220500)),
        r"audio\.window_samples must be positive",
    ),
    "window_samples a string": (
        change(lambda m: m["audio"].update(window_samples="220500")),
        r"audio\.window_samples must be a int",
    ),
    "sample_rate true": (
        change(lambda m: m["audio"].update(sample_rate=True)),
        r"audio\.sample_rate must be a int",
    ),
    "unknown preprocessing step": (
        change(lambda m: m["audio"]["preprocessing"].update(dither=True)),
        r"audio\.preprocessing is malformed",
    ),
    "unknown padding": (
        change(lambda m: m["text"].update(padding="sideways")),
        r"text\.padding 'sideways' not in",
    ),
    "output without a width": (
        change(lambda m: m["audio"]["outputs"][0].update(shape=["batch"])),
        r"audio\.outputs: shape \['batch'\] is not \[batch, width\]",
    ),
    "graph outside the folder": (
        change(lambda m: m["audio"].update(file="../../../../../../etc/passwd")),
        r"the audio graph '\.\./.*/etc/passwd' is outside the folder",
    ),
    "absolute graph path": (
        change(lambda m: m["text"].update(file="/etc/passwd")),
        r"the text graph '/etc/passwd' is outside the folder",
    ),
    "tokenizer outside the folder": (
        change(lambda m: m["text"].update(tokenizer="../../../../../../etc/passwd")),
        r"the tokenizer '.*etc/passwd' is outside the folder",
    ),
    "graph missing": (lambda f: (f / "audio.onnx").unlink(), r"'audio\.onnx' is missing"),
    "floor graph missing": (lambda f: (f / "floor.onnx").unlink(), r"'floor\.onnx' is missing"),
    "floor output with a width": (
        change(lambda m: m["floor"]["outputs"][0].update(shape=["batch", 1])),
        r"floor\.outputs: shape \['batch', 1\] is not \[batch\]",
    ),
    "malformed tokenizer": (
        lambda f: (f / "tokenizer.json").write_text('{"model": 42}'),
        r"tokenizer\.json: not a tokenizer\.json",
    ),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_tampered_folder_is_refused_when_the_embedder_is_made(folder, case):
    tamper, message = TAMPERED[case]
    tamper(folder)
    with pytest.raises(runtime.InputError, match=message):
        runtime.Embedder(folder)


def test_a_graph_linked_from_elsewhere_is_followed(folder, tmp_path):
    """Only names are checked: a link the folder's owner made is theirs to make."""
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(folder / "audio.onnx", outside)
    (folder / "audio.onnx").symlink_to(outside)
    model = runtime.Embedder(folder)
    assert np.isfinite(model.embed_audio([random_track(1, 2.0)], sample_rate=22050)).all()


def test_truncated_graph_is_refused_naming_the_file(folder):
    graph = folder / "audio.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    with pytest.raises(runtime.InputError, match=r"audio\.onnx: not an ONNX graph \(truncated"):
        runtime.Embedder(folder)


def test_a_graph_onnxruntime_cannot_load_is_refused_naming_the_file(folder):
    """Whole, with the right inputs, yet corrupt inside: refused when it is first loaded."""
    graph = folder / "text.onnx"
    data = bytearray(graph.read_bytes())
    for name in (b"MatMul", b"Gather", b"Add"):  # the graph's operators become unknown ones
        data = data.replace(name, b"X" * len(name))
    graph.write_bytes(bytes(data))
    model = runtime.Embedder(folder)
    with pytest.raises(runtime.InputError, match=r"text\.onnx: not a graph onnxruntime can"):
        model.embed_text(["piano"])


def test_swapped_graphs_are_refused_naming_the_file(folder):
    (folder / "audio.onnx").rename(folder / "swap")
    (folder / "text.onnx").rename(folder / "audio.onnx")
    (folder / "swap").rename(folder / "text.onnx")
    with pytest.raises(runtime.InputError, match=r"audio\.onnx: inputs .* not the audio tower"):
        runtime.Embedder(folder)


def test_a_cold_embedder_shared_by_8_threads_loads_each_graph_once(small_model_dir, monkeypatch):
    """Eight threads hitting a new Embedder at once: one session per graph, not eight."""
    opened: list[str] = []
    real_session = runtime.engines.folder.OnnxRuntimeSession

    def slow_session(path, *args, **kwargs):
        opened.append(Path(path).name)
        time.sleep(0.2)  # widen the window in which a second thread could also open it
        return real_session(path, *args, **kwargs)

    monkeypatch.setattr(runtime.engines.folder, "OnnxRuntimeSession", slow_session)
    model = runtime.Embedder(small_model_dir)
    track = random_track(2, 3.0)
    results: list = [None] * 8
    start = threading.Barrier(8)

    def work(number: int) -> None:
        start.wait()
        results[number] = (
            model.embed_audio([track], sample_rate=22050),
            model.embed_text(["a calm piano"]),
        )

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(opened) == ["audio.onnx", "floor.onnx", "text.onnx"]
    for audio, text in results[1:]:
        np.testing.assert_array_equal(audio, results[0][0])
        np.testing.assert_array_equal(text, results[0][1])


def test_texts_with_lone_surrogates_are_input_errors(small_model_dir):
    model = runtime.Embedder(small_model_dir)
    with pytest.raises(runtime.InputError, match=r"item 1: the text is not valid Unicode"):
        model.embed_text(["fine", "broken \ud800 text"])
