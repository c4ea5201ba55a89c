"""What the export commands share: progress lines that show as they happen, and expected
failures that end as one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

EXPECTED = (ValueError, FileNotFoundError)


def say(message: str) -> None:
    """A progress line, flushed at once: exports take minutes, and logs may be piped."""
    print(message, flush=True)


def run_command(prog: str, work: Callable[[], object], expected: tuple = EXPECTED) -> int:
    """Run ``work``; 0 when it finishes, 2 with ``prog: error: …`` when it fails as
    ``expected`` (bad input, a missing file, a graph the target cannot take)."""
    try:
        work()
    except expected as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return 0
