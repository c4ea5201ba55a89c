"""MkDocs hooks (mkdocs.yml): the parts of the site generated from the code rather than
written, so that they cannot drift from it.

- ``<!-- generated: cli-reference -->`` in a page becomes the help of every ``ttmr``
  command, rendered from ``runtime.cli.main.build_parser()``.
- ``<!-- generated: bench-tables -->`` becomes ``scripts/bench.py --markdown``'s tables of
  the bench results: ``$TTMR_BENCH_JSON`` (paths joined by ``os.pathsep``), else the
  checkout's ``bench.json`` when a run left one, else the committed ``docs/bench/*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI_MARKER = "<!-- generated: cli-reference -->"
BENCH_MARKER = "<!-- generated: bench-tables -->"
HELP_COLUMNS = "100"  # argparse wraps help to $COLUMNS: fixed, so the page is the same anywhere


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if BENCH_MARKER in markdown:
        markdown = markdown.replace(BENCH_MARKER, bench_tables(bench_files()))
    return markdown


def cli_reference() -> str:
    """Every command's ``--help``, a heading each, in the parser's order."""
    from runtime.cli.main import build_parser

    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        sections: list[str] = []
        walk(build_parser(), "ttmr", 2, sections)
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before
    return "\n".join(sections)


def walk(parser: argparse.ArgumentParser, name: str, level: int, out: list[str]) -> None:
    out.append(f"{'#' * level} `{name}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                walk(sub, f"{name} {command}", min(level + 1, 4), out)


def bench_files() -> list[Path]:
    given = os.environ.get("TTMR_BENCH_JSON")
    if given:
        return [Path(p) for p in given.split(os.pathsep) if p]
    if (ROOT / "bench.json").is_file():
        return [ROOT / "bench.json"]
    return sorted((ROOT / "docs" / "bench").glob("*.json"))


def bench_tables(paths: list[Path]) -> str:
    sys.path.insert(0, str(ROOT))  # mkdocs loads this file by path: find the package scripts
    try:
        from scripts.bench import markdown_report
    finally:
        sys.path.remove(str(ROOT))
    return markdown_report([json.loads(p.read_text()) for p in paths])
