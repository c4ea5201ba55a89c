"""A model folder as the runtime trusts it: ``manifest.json`` parsed and checked, and every
file it names inside the folder. A tampered or half-copied folder is refused when the
``Embedder`` is made, naming the file, rather than failing deep inside a library later."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from runtime.errors import InputError

MANIFEST_FORMAT = 2  # what export/to_onnx.py writes; another format is another layout
FAMILIES = ("ttmrpp", "clap", "muscall")
TEXT_PADDING = ("longest", "max_length")


def read_manifest(model_dir: Path) -> dict:
    """``manifest.json``, checked by ``check_manifest``."""
    path = model_dir / "manifest.json"
    if not path.is_file():
        raise InputError(
            f"model folder {str(model_dir)!r} has no manifest.json: export one with "
            "export/to_onnx.py (or set TTMR_MODEL_DIR)"
        )
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a JSON manifest ({err})") from None
    check_manifest(manifest, path)
    return manifest


def check_manifest(manifest: object, path: Path) -> None:
    """The parts of the manifest the runtime reads, with their types and ranges."""
    need(manifest, "format", int, path)
    if manifest["format"] != MANIFEST_FORMAT:
        raise InputError(
            f"{path}: manifest format {manifest['format']}, but this runtime reads format "
            f"{MANIFEST_FORMAT}: export the model again with this version's export/to_onnx.py"
        )
    if need(manifest, "family", str, path) not in FAMILIES:
        raise InputError(f"{path}: unknown model family {manifest['family']!r} (not {FAMILIES})")
    audio, text = need(manifest, "audio", dict, path), need(manifest, "text", dict, path)
    for section, name in ((audio, "audio"), (text, "text")):
        need(section, "file", str, path, name)
        tensors(section, "inputs", path, name)
        for output in tensors(section, "outputs", path, name):
            shape = need(output, "shape", list, path, f"{name}.outputs")
            if len(shape) != 2 or not positive(shape[1]):
                raise InputError(f"{path}: {name}.outputs: shape {shape} is not [batch, width]")
    for key in ("sample_rate", "window_samples"):
        if not positive(need(audio, key, int, path, "audio")):
            raise InputError(f"{path}: audio.{key} must be positive, got {audio[key]}")
    need(audio, "preprocessing", dict, path, "audio")
    need(text, "tokenizer", str, path, "text")
    need(text, "pad_token_id", int, path, "text")
    if need(text, "padding", str, path, "text") not in TEXT_PADDING:
        raise InputError(f"{path}: text.padding {text['padding']!r} not in {TEXT_PADDING}")
    if text["padding"] == "max_length" and not positive(need(text, "max_length", int, path)):
        raise InputError(f"{path}: text.max_length must be positive, got {text['max_length']}")


def need(section: object, key: str, kind: type, path: Path, where: str = "") -> object:
    """``section[key]``, which must be a ``kind`` (a bool is no int here)."""
    label = f"{where}.{key}" if where else key
    if not isinstance(section, dict) or key not in section:
        raise InputError(f"{path}: incomplete manifest: no {label}")
    value = section[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InputError(f"{path}: {label} must be a {kind.__name__}, got {value!r}")
    return value


def tensors(section: dict, key: str, path: Path, where: str) -> list[dict]:
    """A list of ``{"name": …}`` tensor descriptions."""
    described = need(section, key, list, path, where)
    for tensor in described:
        need(tensor, "name", str, path, f"{where}.{key}")
    return described


def positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def inside(model_dir: Path, name: str, what: str) -> Path:
    """The file ``name`` of the folder. A name that leads out of it (``..``, an absolute
    path) is refused; a link the folder's owner made is followed, as folders that link
    their graphs from elsewhere (``to_triton.py --link``) need."""
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise InputError(f"{model_dir / 'manifest.json'}: {what} {name!r} is outside the folder")
    path = model_dir / name
    if not path.is_file():
        raise InputError(f"{model_dir}: {what} {name!r} is missing (a partial copy?)")
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
            raise InputError(f"{path}: not an ONNX graph (truncated or corrupt)") from None
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
