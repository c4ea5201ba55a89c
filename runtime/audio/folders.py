"""Music in a folder: every audio file below it, by the extensions the decoders read, and
what else it holds, so that ``ttmr index`` can say what it left out."""

from __future__ import annotations

import os
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from runtime.audio.reading import AUDIO_EXTENSIONS
from runtime.errors import InputError


@dataclass
class FolderScan:
    """What a folder holds: its audio files (resolved, each once, sorted) and how many
    other files it has, by extension, so that a caller can say what it left out."""

    files: list[Path]
    skipped: Counter[str]


def scan_folder(folder: Path) -> FolderScan:
    """Every audio file below ``folder``. Hidden files and folders (and macOS's ``._``
    sidecars) are passed over, links to folders are not followed (no loops), and
    anything that is not a regular file (a FIFO, a dangling or looping link) is skipped."""
    if not folder.is_dir():
        raise InputError(f"{str(folder)!r} is not a folder")
    found: set[Path] = set()
    skipped: Counter[str] = Counter()
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in names:
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.suffix.lower() not in AUDIO_EXTENSIONS:
                skipped[path.suffix.lower() or "(none)"] += 1
                continue
            try:
                resolved = path.resolve(strict=True)
            except (OSError, RuntimeError):  # dangling or looping link
                skipped[path.suffix.lower()] += 1
                continue
            if stat.S_ISREG(resolved.stat().st_mode):
                found.add(resolved)
            else:
                skipped[path.suffix.lower()] += 1
    return FolderScan(sorted(found), skipped)
