"""The README, as a newcomer reads it: short, its examples near the top, and every command
and snippet it shows working as written (the Python example runs on the small demo model;
the command-line example and the four ways in parse with the real parsers)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from export.synthetic import random_track
from runtime.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
LINES = README.splitlines()


def code_blocks(language: str) -> list[tuple[int, str]]:
    """``(first line number, text)`` of each fenced block in that language."""
    blocks, start = [], None
    for number, line in enumerate(LINES, start=1):
        if start is None and line == f"```{language}":
            start = number
        elif start is not None and line == "```":
            blocks.append((start, "\n".join(LINES[start : number - 1])))
            start = None
    return blocks


def test_readme_is_short_with_examples_first_and_at_most_two_dated_lines():
    assert len(LINES) <= 300
    first_fence = next(n for n, line in enumerate(LINES, start=1) if line.startswith("```"))
    assert first_fence <= 60
    (python_at, python), *_ = code_blocks("python")
    cli_at, cli = next((n, b) for n, b in code_blocks("bash") if "ttmr search" in b)
    assert python_at <= 60 and cli_at <= 60
    assert len(python.splitlines()) <= 10 and len(cli.splitlines()) <= 6
    dated = [line for line in LINES if re.search(r"\b20\d\d-[01]\d-[0-3]\d\b", line)]
    assert len(dated) <= 2, dated


def test_readme_python_example_runs_on_the_demo_model(small_model_dir, tmp_path):
    (_, example), *_ = code_blocks("python")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "demo").symlink_to(small_model_dir)
    for seed, name in enumerate(re.findall(r'"([^"]+\.(?:mp3|flac))"', example)):
        sf.write(tmp_path / name, 0.5 * random_track(seed, 12.0, 44100), 44100)
    env = {k: v for k, v in os.environ.items() if k != "TTMR_MODEL_DIR"}
    ran = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert ran.returncode == 0, ran.stderr
    assert "onnxruntime, fp32" in ran.stdout  # model.describe()


def test_readme_command_line_example_parses_with_the_ttmr_parser():
    _, cli = next((n, b) for n, b in code_blocks("bash") if "ttmr search" in b)
    commands = [line.split("#")[0] for line in cli.splitlines() if line.startswith("ttmr ")]
    assert len(commands) == 5
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])  # a usage error raises InputError
        assert callable(args.run)


def test_readme_ways_in_work_as_written_and_agree_on_triton_repo(tmp_path):
    from export import to_onnx, to_triton

    block = next(b for _, b in code_blocks("bash") if "tritonserver" in b)
    lines = [line.split("#")[0].split() for line in block.splitlines()]
    by_tool = {words[1] if words[0] == "python" else words[0]: words for words in lines}
    to_onnx.parse_args(by_tool["export/to_onnx.py"][2:])
    written = to_triton.parse_args(by_tool["export/to_triton.py"][2:]).repository
    served = by_tool["tritonserver"][by_tool["tritonserver"].index("--model-repository") + 1]
    assert written == Path(served) == Path("triton_repo")
    assert "/triton_repo/" in (ROOT / ".gitignore").read_text().splitlines()
    # serve.sh with no repository serves triton_repo (absent here: refused, naming it).
    serve = subprocess.run(
        ["bash", str(ROOT / "scripts" / "serve.sh")], cwd=tmp_path, capture_output=True, text=True
    )
    assert serve.returncode == 2 and "no model repository at triton_repo" in serve.stderr


def test_readme_links_lead_to_pages_of_the_site():
    for target in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / target).is_file(), target
