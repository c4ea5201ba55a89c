"""Reading upstream ``.pth`` checkpoints safely and matching their keys exactly.

Checkpoints are untrusted files: they are read with ``weights_only=True``, so a pickled
callable is refused before anything runs.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the reason and the keys involved."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Return ``torch.load(path)["state_dict"]`` without ever unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        culprit = next((line for line in str(err).splitlines() if "GLOBAL" in line), None)
        if culprit is None:
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (unrecognised pickle content)"
            ) from None
        raise CheckpointError(
            f"{path}: refused: the file holds pickled objects other than tensors, which "
            f"could run code when loaded. {culprit.strip()}"
        ) from None
    except Exception as err:  # torch.load fails on arbitrary bytes in many ways
        reason = f"{type(err).__name__}: {err}".strip().splitlines()[0]
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(content, Mapping) or not isinstance(content.get("state_dict"), Mapping):
        raise CheckpointError(f"{path}: expected a dict with a 'state_dict' entry")
    state = dict(content["state_dict"])
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state_dict entries that are not tensors: {bad[:10]}")
    return state


def load_exactly(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    ignored: frozenset[str],
) -> None:
    """Copy ``state`` into ``module``; every key but ``ignored`` must match in name and shape."""
    expected = module.state_dict()
    given = {k: v for k, v in state.items() if k not in ignored}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong_shape = [
        f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(given) & set(expected))
        if given[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if wrong_shape:
        problems.append(f"wrong shapes {wrong_shape}")
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    module.load_state_dict(given, strict=True)


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
