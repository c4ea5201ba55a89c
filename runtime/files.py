"""Writing the files the command line produces: whole or not at all, with the permissions a
user's other files get, and a one-line InputError naming the file when the disk is full, the
folder is read-only or the path is a folder."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from runtime.errors import InputError

ROW_FORMATS = (".npy", ".npz", ".json")


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``write`` into a temporary file beside ``path``, then rename it over ``path``: an
    interrupted or failed write leaves the old file (or none) and no temporary behind."""
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder: give a file name")
    scratch = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as fh:
            write(fh)
        os.chmod(scratch, 0o666 & ~current_umask())  # mkstemp makes it 0600
        os.replace(scratch, path)
    except OSError as err:
        raise InputError(f"cannot write {str(path)!r}: {err.strerror or err}") from None
    finally:
        if scratch is not None and os.path.exists(scratch):
            os.unlink(scratch)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_rows_file(path: Path) -> None:
    """Refuse an output name whose format is unknown before any work is done."""
    if path.suffix.lower() not in ROW_FORMATS:
        raise InputError(
            f"--out {str(path)!r}: unknown format {path.suffix or '(no extension)'!r}; "
            f"use one of {', '.join(ROW_FORMATS)}"
        )
    if path.is_dir():
        raise InputError(f"--out {str(path)!r} is a folder: give a file name")


def write_rows(path: Path, rows: np.ndarray, items: list[str]) -> None:
    """Embeddings by ``path``'s extension: ``.npy`` the rows alone, ``.npz`` the rows as
    ``embeddings`` with the ``items`` they belong to, ``.json`` a list of
    ``{"item", "embedding"}``."""
    check_rows_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        write_atomically(path, lambda fh: np.save(fh, rows))
    elif suffix == ".npz":
        write_atomically(path, lambda fh: np.savez(fh, embeddings=rows, items=np.array(items)))
    else:
        listed = [{"item": i, "embedding": r.tolist()} for i, r in zip(items, rows, strict=True)]
        write_atomically(path, lambda fh: fh.write(json.dumps(listed).encode()))
