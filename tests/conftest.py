"""Shared fixtures: a small model (fast) and the full-size demo model, each exported once."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import (
    SMALL_CLAP_AUDIO,
    SMALL_CLAP_TEXT,
    SMALL_HPARAMS,
    SMALL_MUSCALL,
    SMALL_ROBERTA,
    quantized_copy,
    ttmrpp_source,
)

# A full-size TTMR++ demo folder (to_onnx.py --demo) the demo fixtures use instead of
# exporting their own.
REUSED_DEMO = "TTMR_TEST_DEMO_DIR"


def _only_for_slow_tests(request: pytest.FixtureRequest) -> None:
    """A full-size demo takes minutes to export: only a test marked slow may ask for one,
    so that ``-m "not slow"`` stays on the small models. (A session fixture's request knows
    the test that set it up only as ``_pyfuncitem``.)"""
    test = request._pyfuncitem
    if test.get_closest_marker("slow") is None:
        pytest.fail(f"{test.nodeid} uses a full-size demo model: mark it slow", pytrace=False)


def _export(folder: Path, **demo_kwargs) -> tuple[Path, tuple[Path, Path, Path]]:
    from export.to_onnx import export_model
    from export.ttmrpp.demo import write_demo_checkpoint

    files = write_demo_checkpoint(folder / "checkpoint", **demo_kwargs)
    with contextlib.redirect_stdout(io.StringIO()):
        export_model("ttmrpp", ttmrpp_source(*files), folder, random_weights=True)
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
    from export.ttmrpp.reference import load_reference

    return load_reference(*small_export[1])


@pytest.fixture(scope="session")
def demo_export(tmp_path_factory, request):
    """The full-size published architecture with random weights, written by the real
    ``to_onnx.py --demo`` command: ``(model_dir, (checkpoint, config, text_arch), log)``."""
    _only_for_slow_tests(request)
    from export.to_onnx import main

    given = os.environ.get(REUSED_DEMO)
    if given:  # the demo scripts/gpu_check.sh exported already (its log is not kept)
        folder, log = Path(given), io.StringIO()
        assert (folder / "manifest.json").is_file(), f"{REUSED_DEMO}={given}: no manifest.json"
    else:
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
def demo_int8(demo_model_dir, tmp_path_factory):
    """The full-size demo with its INT8 graphs: ``(model_dir, what quantize.py printed)``."""
    return quantized_copy(demo_model_dir, tmp_path_factory.mktemp("demo_int8") / "model", 32)


@pytest.fixture(scope="session")
def demo_int8_dir(demo_int8):
    return demo_int8[0]


@pytest.fixture(scope="session")
def demo_reference(demo_export):
    from export.ttmrpp.reference import load_reference

    return load_reference(*demo_export[1])


@pytest.fixture(scope="session")
def small_clap_export(tmp_path_factory):
    """``(model_dir, hf_folder)``: a small random CLAP written as a Hugging Face folder and
    exported from it by ``to_onnx.py --family clap --hf-model``."""
    from export.clap.demo import write_demo_folder
    from export.to_onnx import main

    folder = tmp_path_factory.mktemp("small_clap")
    hf = write_demo_folder(
        folder / "hf", seed=1, audio=SMALL_CLAP_AUDIO, text=SMALL_CLAP_TEXT, projection_dim=32
    )
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            main(["--family", "clap", "--hf-model", str(hf), "--output", str(folder / "model")])
            == 0
        )
    return folder / "model", hf


@pytest.fixture(scope="session")
def small_clap_model_dir(small_clap_export) -> Path:
    return small_clap_export[0]


@pytest.fixture(scope="session")
def small_clap_reference(small_clap_export):
    from export.clap.reference import load_hf_folder

    return load_hf_folder(small_clap_export[1])


@pytest.fixture(scope="session")
def demo_clap_export(tmp_path_factory, request):
    """The full-size CLAP demo, written by the real ``to_onnx.py --family clap --demo``:
    ``(model_dir, log)``; its Hugging Face folder is ``model_dir / "checkpoint"``."""
    _only_for_slow_tests(request)
    from export.to_onnx import main

    folder = tmp_path_factory.mktemp("demo_clap")
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        assert main(["--family", "clap", "--demo", "--output", str(folder)]) == 0
    return folder, log.getvalue()


@pytest.fixture(scope="session")
def demo_clap_model_dir(demo_clap_export) -> Path:
    return demo_clap_export[0]


@pytest.fixture(scope="session")
def demo_clap_reference(demo_clap_export):
    from export.clap.reference import load_hf_folder

    return load_hf_folder(demo_clap_export[0] / "checkpoint")


@pytest.fixture(scope="session")
def small_muscall_export(tmp_path_factory):
    """``(model_dir, (checkpoint, config, tokenizer))``: a small random MusCALL run exported
    by ``to_onnx.py --family muscall --checkpoint … --config … --tokenizer …``."""
    from export.muscall.demo import write_demo_run
    from export.to_onnx import main

    folder = tmp_path_factory.mktemp("small_muscall")
    files = write_demo_run(folder / "run", seed=1, **SMALL_MUSCALL)
    args = ["--family", "muscall", "--output", str(folder / "model")]
    for option, path in zip(("--checkpoint", "--config", "--tokenizer"), files, strict=True):
        args += [option, str(path)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    return folder / "model", files


@pytest.fixture(scope="session")
def small_muscall_model_dir(small_muscall_export) -> Path:
    return small_muscall_export[0]


@pytest.fixture(scope="session")
def small_muscall_reference(small_muscall_export):
    from export.muscall.reference import load_reference

    return load_reference(*small_muscall_export[1])


@pytest.fixture(scope="session")
def demo_muscall_export(tmp_path_factory, request):
    """The full-size MusCALL demo, written by the real ``to_onnx.py --family muscall --demo``:
    ``(model_dir, (checkpoint, config, tokenizer), log)``."""
    _only_for_slow_tests(request)
    from export.to_onnx import main

    folder = tmp_path_factory.mktemp("demo_muscall")
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        assert main(["--family", "muscall", "--demo", "--output", str(folder)]) == 0
    run = folder / "checkpoint"
    files = (run / "best_model.pth.tar", run / "config.yaml", run / "clip_tokenizer")
    return folder, files, log.getvalue()


@pytest.fixture(scope="session")
def demo_muscall_model_dir(demo_muscall_export) -> Path:
    return demo_muscall_export[0]


@pytest.fixture(scope="session")
def demo_muscall_reference(demo_muscall_export):
    from export.muscall.reference import load_reference

    return load_reference(*demo_muscall_export[1])


# FP16 graphs (export/fp16.py) beside a fixture's fp32 ones.
def fp16_copy(model_dir: Path, folder: Path) -> Path:
    """The model folder with FP16 graphs added: fp32 files linked, the manifest copied."""
    from export.fp16 import write_fp16_graphs

    folder.mkdir()
    for path in model_dir.iterdir():
        if path.name == "manifest.json":
            shutil.copy(path, folder / path.name)
        else:
            (folder / path.name).symlink_to(path)
    with contextlib.redirect_stdout(io.StringIO()):
        write_fp16_graphs(folder)
    return folder


@pytest.fixture(scope="session")
def small_fp16_dir(small_model_dir, tmp_path_factory):
    return fp16_copy(small_model_dir, tmp_path_factory.mktemp("small_fp16") / "model")


@pytest.fixture(scope="session")
def demo_fp16_dir(demo_model_dir, tmp_path_factory):
    from runtime.manifest import read_manifest

    if read_manifest(demo_model_dir).graph_files("fp16"):  # a reused demo exported with --fp16
        return demo_model_dir
    return fp16_copy(demo_model_dir, tmp_path_factory.mktemp("demo_fp16") / "model")


@pytest.fixture(scope="session")
def demo_clap_fp16_dir(demo_clap_model_dir, tmp_path_factory):
    return fp16_copy(demo_clap_model_dir, tmp_path_factory.mktemp("demo_clap_fp16") / "model")


@pytest.fixture(scope="session")
def small_clap_fp16_dir(small_clap_export, tmp_path_factory):
    """Written by ``to_onnx.py --family clap --hf-model DIR --fp16``."""
    folder = tmp_path_factory.mktemp("small_clap_fp16") / "model"
    argv = ["--family", "clap", "--hf-model", str(small_clap_export[1]), "--output", str(folder)]
    from export.to_onnx import main

    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*argv, "--fp16"]) == 0
    return folder


@pytest.fixture(scope="session")
def small_muscall_fp16_dir(small_muscall_model_dir, tmp_path_factory):
    return fp16_copy(
        small_muscall_model_dir, tmp_path_factory.mktemp("small_muscall_fp16") / "model"
    )


@pytest.fixture(scope="session")
def demo_muscall_fp16_dir(demo_muscall_model_dir, tmp_path_factory):
    return fp16_copy(demo_muscall_model_dir, tmp_path_factory.mktemp("demo_muscall_fp16") / "model")


@pytest.fixture(scope="module")
def server(repository, tmp_path_factory):
    """scripts/serve.sh with its defaults (loopback) on free ports, serving the module's
    ``repository`` fixture; stopped with SIGTERM, which must end it cleanly (exit status 0)
    and leave no stub or shared-memory region."""
    from tests.triton_server import processes, regions, start_server, stop_server, stubs_of

    running = start_server(repository, tmp_path_factory.mktemp("triton_log") / "server.log")
    stubs = stubs_of(running.server_pid())
    assert stubs and set(stubs.values()) <= regions()
    yield running
    status = stop_server(running)
    assert status == 0, running.log.read_text()[-4000:]
    left = {pid for pid in stubs if pid in processes()}
    assert not left, f"stubs {left} outlived serve.sh"
    assert not set(stubs.values()) & regions(), "shared-memory regions outlived serve.sh"
