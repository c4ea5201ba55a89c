"""What an evaluation leaves behind: a JSON report on disk and a short table on stdout."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from runtime.files import write_atomically


def write_json(path: Path, report: dict) -> None:
    """The report as indented UTF-8 JSON, written atomically: an interrupted run leaves the
    previous report whole."""
    write_report(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


def write_report(path: Path, text: str) -> None:
    """``text`` as ``path`` (UTF-8), replaced whole or not at all."""
    write_atomically(path, lambda fh: fh.write(text.encode("utf-8")))


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned first column, right-aligned numbers (4 decimals), one space-padded line
    per row."""
    cells = [list(header)] + [
        [value if isinstance(value, str) else format_number(value) for value in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for first, *rest in cells:
        numbers = [cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True)]
        print("  ".join([first.ljust(widths[0]), *numbers]))


def format_number(value: object) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
