"""A model folder as the runtime trusts it: ``manifest.json`` parsed and checked, and every
file it names inside the folder. A tampered or half-copied folder is refused when the
``Embedder`` is made, naming the file, rather than failing deep inside a library later."""

from __future__ import annotations

import json
from pathlib import Path

from runtime.errors import InputError

MANIFEST_FORMAT = 2  # what export/to_onnx.py writes; another format is another layout
FAMILIES = ("ttmrpp", "clap")
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
    """The file ``name`` of the folder; a name that leads outside it (``../``, an absolute
    path, a link out) or that is not a file is refused."""
    folder = model_dir.resolve()
    path = (folder / name).resolve()
    if not path.is_relative_to(folder) or Path(name).is_absolute():
        raise InputError(f"{model_dir / 'manifest.json'}: {what} {name!r} is outside the folder")
    if not path.is_file():
        raise InputError(f"{model_dir}: {what} {name!r} is missing (a partial copy?)")
    return path
