"""A model folder as the runtime trusts it: every file its manifest (``runtime.manifest``)
names inside the folder, and each graph whole and taking the inputs the manifest says. A
tampered or half-copied folder is refused when the ``Embedder`` is made, naming the file,
rather than failing deep inside a library later."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from runtime.errors import InputError, ModelFolderError


def model_dir_from(model_dir: str | os.PathLike | None) -> Path:
    """The argument, else ``$TTMR_MODEL_DIR``."""
    chosen = model_dir or os.environ.get("TTMR_MODEL_DIR")
    if not chosen:
        raise InputError("no model folder: pass model_dir=... or set TTMR_MODEL_DIR")
    return Path(chosen)


def inside(model_dir: Path, name: str, what: str) -> Path:
    """The file ``name`` of the folder. A name that leads out of it (``..``, an absolute
    path) is refused; a link the folder's owner made is followed, as folders that link
    their graphs from elsewhere (``to_triton.py --link``) need."""
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise ModelFolderError(
            f"{model_dir / 'manifest.json'}: {what} {name!r} is outside the folder"
        )
    path = model_dir / name
    if not path.is_file():
        raise ModelFolderError(f"{model_dir}: {what} {name!r} is missing (a partial copy?)")
    return path


def graph_inputs(path: Path) -> list[str]:
    """The input names of the ONNX graph in ``path``, found by walking the protobuf's fields
    and skipping the weights (onnx.load would read them all): a truncated file ends inside a
    field, and a text tower saved as ``audio.onnx`` names other inputs."""
    names = []
    with open(path, "rb") as fh:
        end = fh.seek(0, 2)
        fh.seek(0)
        try:
            graphs = [(start, length) for field, start, length in fields(fh, end) if field == 7]
            if len(graphs) != 1:
                raise EOFError
            graph_start, graph_length = graphs[0]
            fh.seek(graph_start)
            for field, start, length in fields(fh, graph_start + graph_length):
                if field == 11:  # GraphProto.input: ValueInfoProto, whose field 1 is the name
                    names += [
                        fh.read(n).decode() for f, _, n in fields(fh, start + length) if f == 1
                    ]
        except (EOFError, UnicodeDecodeError):
            raise ModelFolderError(f"{path}: not an ONNX graph (truncated or corrupt)") from None
    return names


def fields(fh: BinaryIO, end: int) -> Iterator[tuple[int, int, int]]:
    """``(field number, offset, length)`` of each length-delimited protobuf field from the
    file's position to ``end``; the file is left at the field's value while it is looked at,
    and moved past it after. EOFError where the bytes are not protobuf's."""
    while fh.tell() < end:
        key = varint(fh)
        wire = key & 7
        if wire == 0:
            varint(fh)
            continue
        length = {1: 8, 5: 4}.get(wire) or (varint(fh) if wire == 2 else -1)
        start = fh.tell()
        if length < 0 or start + length > end:
            raise EOFError
        if wire == 2:
            yield key >> 3, start, length
        fh.seek(start + length)


def varint(fh: BinaryIO) -> int:
    value = 0
    for shift in range(0, 64, 7):
        byte = fh.read(1)
        if not byte:
            raise EOFError
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    raise EOFError
