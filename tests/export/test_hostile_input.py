"""Hostile or broken exporter inputs: Hugging Face folders that ask to run their own code,
corrupt weights and configs, YAML with Python tags or ill-typed hyper-parameters. Each must
be refused as one line ``to_onnx.py: error: <file>: <reason>`` with exit code 2, never a
traceback, and nothing in them may run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from export.to_onnx import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def text_arch(small_export, tmp_path) -> Path:
    """A private copy of the small model's RoBERTa ``text_arch`` folder that a test may alter."""
    return Path(shutil.copytree(small_export[1][2], tmp_path / "text_arch"))


@pytest.fixture
def hf_folder(small_clap_export, tmp_path) -> Path:
    """A private copy of the small Hugging Face CLAP folder that a test may alter."""
    return Path(shutil.copytree(small_clap_export[1], tmp_path / "hf"))


@pytest.fixture
def ttmrpp_argv(small_export, tmp_path):
    """The exporter's arguments for the small TTMR++ model, with a ``config`` or
    ``text_arch`` of the test's own in place of the good one."""

    def argv(config: Path | None = None, text_arch: Path | None = None) -> list[str]:
        checkpoint, good_config, good_text_arch = small_export[1]
        return [
            "--checkpoint",
            str(checkpoint),
            "--config",
            str(config or good_config),
            "--text-arch",
            str(text_arch or good_text_arch),
            "--output",
            str(tmp_path / "o"),
        ]

    return argv


def clap_argv(folder: Path) -> list[str]:
    return ["--family", "clap", "--hf-model", str(folder), "--output", str(folder.parent / "o")]


@pytest.fixture
def folder_argv(ttmrpp_argv):
    """The exporter's arguments that read a Hugging Face folder by ``route``: as CLAP's
    ``--hf-model`` or as the ``--text-arch`` of TTMR++."""

    def argv(route: str, folder: Path) -> list[str]:
        return clap_argv(folder) if route == "hf-model" else ttmrpp_argv(text_arch=folder)

    return argv


def refusal(argv: list[str], capsys) -> str:
    """Run the exporter in-process; it must refuse with exit 2 and one line on stderr."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("to_onnx.py: error: ") and err.count("\n") == 1, err
    return err


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def ask_to_run_code(folder: Path, marker: Path, file: str = "config.json") -> None:
    """Make ``file`` of ``folder`` ask transformers to import the folder's ``evil.py``,
    which creates ``marker`` when it runs."""
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    auto_map = {
        "AutoConfig": "evil.EvilConfig",
        "AutoModel": "evil.EvilModel",
        "AutoTokenizer": ["evil.EvilTokenizer", None],
    }
    changes = {"auto_map": auto_map}
    if file == "config.json":
        changes["model_type"] = "evil-model"  # unknown to transformers, as in the issue
    edit_json(folder / file, **changes)


def export_answering_yes(argv: list[str]) -> subprocess.CompletedProcess:
    """The real command, with "y" waiting on stdin should anything ask whether to run code."""
    return subprocess.run(
        [sys.executable, "export/to_onnx.py", *argv],
        input="y\n",
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def assert_refused_without_running(done: subprocess.CompletedProcess, folder: Path, marker):
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"to_onnx.py: error: {folder}: ")
    assert "asks to run its own code" in done.stderr
    assert not marker.exists()


def test_text_arch_asking_to_run_its_own_code_is_refused_without_running_it(
    text_arch, ttmrpp_argv, tmp_path
):
    marker = tmp_path / "pwned"
    ask_to_run_code(text_arch, marker)
    done = export_answering_yes(ttmrpp_argv(text_arch=text_arch))
    assert_refused_without_running(done, text_arch, marker)


def test_hf_folder_asking_to_run_its_own_code_is_refused_without_running_it(hf_folder, tmp_path):
    marker = tmp_path / "pwned"
    ask_to_run_code(hf_folder, marker)
    done = export_answering_yes(clap_argv(hf_folder))
    assert_refused_without_running(done, hf_folder, marker)


def test_tokenizer_config_asking_to_run_its_own_code_is_refused(
    text_arch, ttmrpp_argv, tmp_path, capsys
):
    marker = tmp_path / "pwned"
    ask_to_run_code(text_arch, marker, file="tokenizer_config.json")
    err = refusal(ttmrpp_argv(text_arch=text_arch), capsys)
    assert f"{text_arch}: " in err and "asks to run its own code" in err
    assert not marker.exists()


def test_text_arch_of_another_model_type_is_refused_by_name(text_arch, ttmrpp_argv, capsys):
    edit_json(text_arch / "config.json", model_type="bert")
    err = refusal(ttmrpp_argv(text_arch=text_arch), capsys)
    assert f"{text_arch / 'config.json'}: model_type 'bert', expected 'roberta'" in err


def test_hf_folder_of_another_model_type_is_refused_by_name(text_arch, capsys):
    err = refusal(clap_argv(text_arch), capsys)
    assert f"{text_arch / 'config.json'}: model_type 'roberta', expected 'clap'" in err


@pytest.mark.parametrize("route", ["hf-model", "text-arch"])
def test_weights_only_folder_is_refused_naming_its_missing_config(
    route, hf_folder, folder_argv, tmp_path, capsys
):
    folder = tmp_path / "weights_only"
    folder.mkdir()
    shutil.copy(hf_folder / "model.safetensors", folder)
    err = refusal(folder_argv(route, folder), capsys)
    assert f"{folder / 'config.json'}: cannot be read" in err


def test_safetensors_with_a_garbage_header_is_refused_by_file(hf_folder, capsys):
    weights = hf_folder / "model.safetensors"
    weights.write_bytes((16).to_bytes(8, "little") + b"garbage!garbage!tensors")
    err = refusal(clap_argv(hf_folder), capsys)
    assert f"{weights}: not a readable safetensors file" in err


def test_pytorch_bin_that_is_not_tensors_is_refused_by_file(hf_folder, capsys):
    (hf_folder / "model.safetensors").unlink()
    weights = hf_folder / "pytorch_model.bin"
    weights.write_bytes(b"garbage, not a pickle of tensors")
    err = refusal(clap_argv(hf_folder), capsys)
    assert f"{weights}: not a readable PyTorch weights file" in err


BROKEN_JSON = {
    "invalid-json": (b'{"model_type": "clap",', "not valid JSON"),
    "non-utf8": (b'\xff\xfe{"model_type": "clap"}', "not UTF-8 text"),
    "not-an-object": (b'["model_type", "clap"]', "not a JSON object"),
}


@pytest.mark.parametrize("broken", BROKEN_JSON)
@pytest.mark.parametrize("route", ["hf-model", "text-arch"])
def test_broken_config_json_is_refused_by_file(
    route, broken, hf_folder, text_arch, folder_argv, capsys
):
    content, reason = BROKEN_JSON[broken]
    folder = hf_folder if route == "hf-model" else text_arch
    (folder / "config.json").write_bytes(content)
    err = refusal(folder_argv(route, folder), capsys)
    assert f"{folder / 'config.json'}: {reason}" in err


def test_yaml_python_tag_is_refused_without_running(ttmrpp_argv, tmp_path, capsys):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f'sr: !!python/object/apply:os.system ["touch {marker}"]\n')
    err = refusal(ttmrpp_argv(config=config), capsys)
    assert f"{config}: " in err and "python/object/apply:os.system" in err
    assert not marker.exists()


BROKEN_YAML = {
    "bad-syntax": (b"sr: [22050, 44100\nn_mels: 128\n", "not plain YAML"),
    "not-a-mapping": (b"- sr\n- n_mels\n", "not a YAML mapping"),
    "non-utf8": (b"sr: 22050\nn_mels: \xff\xfe\n", "not UTF-8 text"),
}


@pytest.mark.parametrize("broken", BROKEN_YAML)
def test_broken_yaml_is_refused_by_file(broken, ttmrpp_argv, tmp_path, capsys):
    content, reason = BROKEN_YAML[broken]
    config = tmp_path / "broken.yaml"
    config.write_bytes(content)
    err = refusal(ttmrpp_argv(config=config), capsys)
    assert f"{config}: {reason}" in err


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("sr", "abc", "not an integer"),
        ("n_mels", -3, "not positive"),
        ("width", 8.5, "not an integer"),
        ("n_fft", True, "not an integer"),
        ("duration", float("nan"), "not positive"),
        ("hop_size", "0.01", "not a number"),
        ("hop_size", 1e-6, "under one sample"),
        ("text_arch", 5, "not a string"),
    ],
)
def test_hyperparameter_of_wrong_type_or_range_is_refused_by_name(
    name, value, reason, small_export, ttmrpp_argv, tmp_path, capsys
):
    config = tmp_path / "bad.yaml"
    hparams = yaml.safe_load(small_export[1][1].read_text())
    config.write_text(yaml.safe_dump({**hparams, name: value}))
    err = refusal(ttmrpp_argv(config=config), capsys)
    assert f"{config}: hyper-parameter {name} " in err and reason in err
