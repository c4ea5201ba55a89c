"""Code keeps one line of why, not a measurement log: no Python file under runtime/,
export/ or scripts/ carries a dated measurement (a date, a time of day, "measured on",
"one machine", "one-off"). Measurements live in the documentation's performance page."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATED = re.compile(
    r"\b20\d\d-[01]\d-[0-3]\d\b"  # an ISO date
    r"|\b\d{1,2}:\d\d(?:[–-]\d{1,2}:\d\d)? ?UTC\b"  # a time of day
    r"|\b(?:January|February|March|April|May|June|July|August|September|October|November"
    r"|December) 20\d\d\b"
    r"|measured on (?:this|that|one|a|our|the) (?:[\w']+ )?(?:machine|cpu|day|epyc|xeon)"
    r"|one machine|one-off|seen today|that day",
    re.IGNORECASE,
)


def dated_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if DATED.search(line)]


def test_the_pattern_catches_the_ways_measurements_were_dated():
    for line in (
        "# 25 % of its int8 time (batches of 8, 2026-12-04).",
        "# the runs of 14:59–15:10 UTC",
        "# OpenVINO's fp32 measured slower on one machine, faster on another",
        "# a one-off timing of the graph alone",
        "# measured on this project's machine, 2 threads",
        "# up to 0.009 apart, seen today",
    ):
        assert dated_lines(line), line
    for line in (
        "# an arena keeps one call's pages for the next (docs/performance.md)",
        "BatchNorm statistics measured on synthetic music",
    ):
        assert not dated_lines(line), line


def test_no_python_file_in_runtime_export_or_scripts_carries_a_dated_measurement():
    found = {
        str(path.relative_to(ROOT)): lines
        for folder in ("runtime", "export", "scripts")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (lines := dated_lines(path.read_text(encoding="utf-8")))
    }
    assert not found, found
