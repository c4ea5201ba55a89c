"""runtime.manifest: one typed reader and writer of ``manifest.json``, its format checked,
and a runtime that needs nothing but the manifest to run a family it has never heard of."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import runtime
from export.synthetic import random_track
from runtime.errors import InputError
from runtime.manifest import FORMAT, Manifest, read_manifest, write_manifest


@pytest.mark.parametrize("prefix", ["", "clap_"])
def test_reading_and_writing_back_keeps_the_file(request, prefix, tmp_path):
    """The typed manifest holds everything the file says, in the exporter's layout."""
    model_dir = request.getfixturevalue(f"small_{prefix}model_dir")
    written = (model_dir / "manifest.json").read_text()
    manifest = read_manifest(model_dir)
    assert manifest.to_json() == json.loads(written)
    assert write_manifest(tmp_path, manifest) == tmp_path / "manifest.json"
    assert (tmp_path / "manifest.json").read_text() == written


def test_sections_tools_add_read_back_typed(small_fp16_dir):
    manifest = read_manifest(small_fp16_dir)
    assert manifest.fp16 is not None and manifest.int8 is None and manifest.tensorrt == {}
    floor = {"floor": "floor.onnx"}  # TTMR++'s floor graph: float32 at every precision
    assert manifest.graph_files("fp16") == {
        "audio": "audio.fp16.onnx",
        "text": "text.fp16.onnx",
        **floor,
    }
    assert manifest.graph_files("int8") is None
    assert manifest.graph_files("fp32") == {"audio": "audio.onnx", "text": "text.onnx", **floor}


@pytest.mark.parametrize(
    ("version", "says"),
    [(FORMAT - 1, "export the model again"), (FORMAT + 1, "written by a newer exporter")],
)
def test_another_format_is_one_clear_error(small_model_dir, version, says):
    content = json.loads((small_model_dir / "manifest.json").read_text())
    with pytest.raises(InputError, match=f"manifest format {version}, but this version reads "):
        Manifest.from_json({**content, "format": version})
    with pytest.raises(InputError, match=says):
        Manifest.from_json({**content, "format": version})


def test_unknown_fields_of_a_tool_section_are_refused(small_fp16_dir):
    content = json.loads((small_fp16_dir / "manifest.json").read_text())
    content["fp16"]["dither"] = True
    with pytest.raises(InputError, match=r"fp16: unknown fields \['dither'\]"):
        Manifest.from_json(content)


def test_the_writer_refuses_what_the_reader_would(small_model_dir, tmp_path):
    manifest = read_manifest(small_model_dir)
    broken = manifest.replace(text=dataclasses.replace(manifest.text, padding="x"))
    with pytest.raises(InputError, match=r"text\.padding 'x' not in"):
        write_manifest(tmp_path, broken)
    assert not (tmp_path / "manifest.json").exists()


def test_a_family_the_runtime_never_heard_of_runs_on_its_manifest(small_model_dir, tmp_path):
    """The runtime knows no family by name: what the manifest describes is what it does."""
    folder = Path(shutil.copytree(small_model_dir, tmp_path / "model"))
    manifest = read_manifest(folder)
    write_manifest(folder, manifest.replace(family="some_new_family"))
    tracks, texts = [random_track(1, 12.0), random_track(2, 3.0, 44100)], ["piano", ""]
    new, known = runtime.Embedder(folder), runtime.Embedder(small_model_dir)
    assert new.manifest.family == "some_new_family"
    np.testing.assert_array_equal(
        new.embed_audio(tracks[:1], sample_rate=22050),
        known.embed_audio(tracks[:1], sample_rate=22050),
    )
    np.testing.assert_array_equal(
        new.embed_audio(tracks[1:], sample_rate=44100),
        known.embed_audio(tracks[1:], sample_rate=44100),
    )
    np.testing.assert_array_equal(new.embed_text(texts), known.embed_text(texts))
