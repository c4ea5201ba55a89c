"""Reading the evaluation's input files (CSV tables, JSON, prompt templates) with errors that
name the file and line, so that a bad row stops the run before any model work."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from runtime.errors import InputError


def existing_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} does not exist")
    return path


def read_json(path: Path, what: str) -> object:
    try:
        return json.loads(existing_file(path, what).read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{what} {str(path)!r} is not valid JSON ({err})") from None


def read_table(
    path: Path, what: str, headers: tuple[tuple[str, ...], ...] | None
) -> tuple[tuple[str, ...], list[tuple[int, list[str]]]]:
    """A CSV file whose first row is one of ``headers`` (None: any header): that header,
    lower-cased, and the other rows as ``(line number, cells)``. Blank lines and lines
    starting with ``#`` are skipped; every other row must have one non-empty cell per
    column."""
    try:
        with existing_file(path, what).open(newline="", encoding="utf-8-sig") as fh:
            reader, lines = csv.reader(fh), []
            for cells in reader:
                cells = [cell.strip() for cell in cells]
                if any(cells) and not cells[0].startswith("#"):
                    lines.append((reader.line_num, cells))
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{what} {str(path)!r} is not a readable CSV file ({err})") from None
    header = tuple(cell.lower() for cell in lines[0][1]) if lines else ()
    if not header or (headers is not None and header not in headers):
        allowed = " or ".join(",".join(columns) for columns in headers or [["a header"]])
        raise InputError(f"{what} {str(path)!r}: the first row must be the header {allowed}")
    for line, cells in lines[1:]:
        if len(cells) != len(header) or not all(cells):
            raise InputError(
                f"{what} {str(path)!r}, line {line}: expected {len(header)} non-empty cells "
                f"({', '.join(header)}), got {cells}"
            )
    return header, lines[1:]


def check_template(template: str, field: str) -> str:
    """A prompt template with exactly the one placeholder ``{field}``."""
    try:
        filled = template.format_map({field: "\0"})
    except (KeyError, ValueError, IndexError) as err:
        raise InputError(
            f"prompt template {template!r} may hold only the placeholder {{{field}}} ({err!r})"
        ) from None
    if filled.count("\0") != 1:
        raise InputError(f"prompt template {template!r} must hold {{{field}}} exactly once")
    return template
