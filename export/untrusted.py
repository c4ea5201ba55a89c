"""Reading the files an export is given, which may be hostile or broken.

Every failure becomes an ``InputError`` whose one-line message names the file, so that the
command ends as ``to_onnx.py: error: <file>: <reason>``. A Hugging Face folder is checked
here before transformers reads it: one that asks to run code of its own (``auto_map``) is
refused, and transformers is never allowed remote code either (``trust_remote_code=False``),
so it never asks on stdin.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open

from runtime.errors import InputError, first_line

# Besides config.json, the JSON files of a folder through which transformers' Auto* classes
# import the folder's own Python modules (their ``auto_map``).
CODE_MAP_FILES = ("tokenizer_config.json", "preprocessor_config.json", "processor_config.json")


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path``; a missing, unreadable or non-UTF-8 file is refused by name."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err})") from None
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror})") from None


def read_json_object(path: Path) -> dict:
    """``path`` parsed as one JSON object, or refused by name."""
    try:
        content = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(content, dict):
        raise InputError(f"{path}: not a JSON object")
    return content


def check_hf_folder(folder: Path, model_type: str) -> None:
    """Refuse ``folder`` before transformers reads it: its JSON files must parse, none may
    ask to run the folder's own code, and ``config.json`` must be of ``model_type``."""
    config = folder / "config.json"
    contents = {config: read_json_object(config)}
    others = (folder / name for name in CODE_MAP_FILES)
    contents |= {path: read_json_object(path) for path in others if path.is_file()}
    for path, content in contents.items():
        if "auto_map" in content:
            raise InputError(
                f"{folder}: refused: it asks to run its own code ({path.name} has an "
                "auto_map), and code from a model folder is never run"
            )
    found = contents[config].get("model_type")
    if found != model_type:
        raise InputError(f"{config}: model_type {found!r}, expected {model_type!r}")


def check_safetensors(path: Path) -> None:
    """Read the header of a ``.safetensors`` file, so that a corrupt one is refused by name
    before transformers fails on it with a traceback."""
    try:
        with safe_open(path, framework="numpy"):
            pass
    except SafetensorError as err:
        raise InputError(f"{path}: not a readable safetensors file ({first_line(err)})") from None
