"""The documentation site: ``mkdocs build --strict`` passes (every link, anchor, API
reference and generated page resolved), and the generated command-line reference covers
every command the parser has."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
# the hooks need MkDocs, the docs extra
pytest.importorskip("mkdocs", reason="the docs extra (bash scripts/setup.sh installs it)")
from scripts.docs_hooks import cli_reference  # noqa: E402


def test_site_builds_in_strict_mode(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    for page in ("python-api", "cli", "performance", "exporting", "models", "triton"):
        assert (tmp_path / "site" / page / "index.html").is_file()
    api = (tmp_path / "site" / "python-api" / "index.html").read_text()
    for name in (
        "Embedder",
        "embed_audio",
        "embed_text",
        "TritonEmbedder",
        "InputError",
        "Catalog",
    ):
        assert f"{name}</" in api  # a rendered heading or signature, not just prose


def commands(parser: argparse.ArgumentParser, name: str = "ttmr") -> list[str]:
    found = [name]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                found += commands(sub, f"{name} {command}")
    return found


def test_cli_reference_has_a_section_for_every_command_with_its_options():
    reference = cli_reference()
    every = commands(build_parser())
    assert {"ttmr index", "ttmr search", "ttmr catalog export", "ttmr eval study"} <= set(every)
    for command in every:
        assert f"`{command}`\n" in reference
    assert "--ray-cpus" in reference and "--precision" in reference
