"""``eval instruments``: zero-shot instrument recognition on a TinySOL-style folder.

Each file's instrument comes from a folder name (``level`` 0 is the first folder below the
music folder; TinySOL's ``audio/<family>/<instrument>/…`` wants level 1 below ``audio``) or
from the leading letters of the file name. An optional names file (JSON, label → name) turns
labels into the words the prompts use; without one a label's underscores and hyphens become
spaces and it is lower-cased. Every file is classified as the instrument whose prompt is
most similar to it in the joint space."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from runtime.audio.folders import scan_folder
from runtime.errors import InputError
from runtime.evaluate.inputs import read_json
from runtime.evaluate.metrics import confusion_matrix, predicted_classes, unit_rows
from runtime.evaluate.reports import print_table
from runtime.evaluate.sources import EmbeddingSource

LABEL_SOURCES = ("folder", "filename")
LEADING_LETTERS = re.compile(r"[^\W\d_]+")


def read_names(path: Path) -> dict[str, str]:
    names = read_json(path, "names file")
    if not isinstance(names, dict) or not all(
        isinstance(value, str) and value.strip() for value in names.values()
    ):
        raise InputError(f"names file {str(path)!r} must be a JSON object of label → name")
    return names


def file_label(path: Path, music_dir: Path, label_from: str, level: int) -> str:
    """The raw label of one file: a folder name, or the file name's leading letters."""
    if label_from == "filename":
        found = LEADING_LETTERS.match(path.stem)
        if not found:
            raise InputError(f"{path}: the file name does not start with letters")
        return found.group()
    if not path.is_relative_to(music_dir):
        raise InputError(f"{path}: a link out of {str(music_dir)!r}, so it has no folder label")
    folders = path.relative_to(music_dir).parts[:-1]
    if level >= len(folders):
        raise InputError(
            f"{path}: only {len(folders)} folder(s) below {str(music_dir)!r}, "
            f"so there is no folder name at level {level}"
        )
    return folders[level]


def instrument_files(
    music_dir: Path, label_from: str = "folder", level: int = 0, names: dict | None = None
) -> dict[str, list[Path]]:
    """Instrument name → its audio files, names sorted; every file must have a label."""
    if label_from not in LABEL_SOURCES:
        raise InputError(f"labels come from one of {LABEL_SOURCES}, got {label_from!r}")
    if level < 0:
        raise InputError(f"the folder level must be 0 or more, got {level}")
    music_dir = music_dir.resolve()
    files = scan_folder(music_dir).files
    if not files:
        raise InputError(f"{str(music_dir)!r} holds no audio files")
    grouped: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        label = file_label(path, music_dir, label_from, level)
        if names is None:
            name = re.sub(r"[_\-]+", " ", label).strip().lower()
        elif label in names:
            name = names[label].strip()
        else:
            raise InputError(f"{path}: its label {label!r} is not in the names file")
        grouped[name].append(path)
    return dict(sorted(grouped.items()))


def classify(audio: np.ndarray, prompts: np.ndarray, truth: np.ndarray) -> dict:
    """Zero-shot classification of ``audio`` rows by their most similar ``prompts`` row:
    accuracy, balanced accuracy (the mean of per-class accuracies), the confusion matrix
    (rows: true class, columns: predicted) and the similarity matrix. A file whose own prompt
    ties for the best counts as wrong."""
    similarities = unit_rows(audio) @ unit_rows(prompts).T
    predicted = predicted_classes(similarities, truth)
    confusion = confusion_matrix(truth, predicted, len(prompts))
    per_class = np.diag(confusion) / confusion.sum(axis=1)
    return {
        "accuracy": float(np.mean(predicted == truth)),
        "balanced_accuracy": float(per_class.mean()),
        "per_class_accuracy": per_class.tolist(),
        "confusion": confusion.tolist(),
        "predicted": predicted.tolist(),
        "similarities": similarities.tolist(),
    }


def evaluate_instruments(
    source: EmbeddingSource, groups: dict[str, list[Path]], template: str
) -> dict:
    """The report: per-instrument prompts, the classification and every file's prediction."""
    if len(groups) < 2:
        raise InputError(
            "zero-shot classification needs files of at least two instruments, "
            f"found {list(groups)}"
        )
    instruments = list(groups)
    files = [path for name in instruments for path in groups[name]]
    truth = np.repeat(np.arange(len(instruments)), [len(groups[name]) for name in instruments])
    prompts = [template.format(instrument=name) for name in instruments]
    audio = source.audio(files, ["joint"])["joint"]
    result = classify(audio, source.text(prompts, ["joint"])["joint"], truth)
    return {
        "template": template,
        "instruments": instruments,
        "prompts": prompts,
        "files": len(files),
        "accuracy": result["accuracy"],
        "balanced_accuracy": result["balanced_accuracy"],
        "per_instrument": [
            {"instrument": name, "files": len(groups[name]), "accuracy": accuracy}
            for name, accuracy in zip(instruments, result["per_class_accuracy"], strict=True)
        ],
        "confusion": result["confusion"],
        "predictions": [
            {
                "path": str(path),
                "instrument": instruments[true],
                "predicted": instruments[guess],
                "similarities": row,
            }
            for path, true, guess, row in zip(
                files, truth, result["predicted"], result["similarities"], strict=True
            )
        ],
    }


def print_instruments(report: dict) -> None:
    print(
        f"{report['files']} files, {len(report['instruments'])} instruments: accuracy "
        f"{report['accuracy']:.4f}, balanced accuracy {report['balanced_accuracy']:.4f}"
    )
    print_table(
        ["instrument", "files", "accuracy"],
        [[e["instrument"], e["files"], e["accuracy"]] for e in report["per_instrument"]],
    )
