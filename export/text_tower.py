"""What the families' RoBERTa text towers share: finding the config and tokenizer of a
``text_arch`` folder (untrusted, read locally), and RoBERTa's position ids in a form every
target can run."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer
from transformers.utils import cached_file

from export.untrusted import check_hf_folder
from runtime.errors import InputError, first_line


def roberta_position_ids(input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """RoBERTa's position ids (the pad id, plus the count of non-pad tokens so far; pads
    keep the pad id), counted in float32: TensorRT's ONNX CumSum is documented for float
    types only, and float32 counts exactly up to 2^24 tokens."""
    real = (input_ids != pad_token_id).float()
    return (torch.cumsum(real, dim=1) * real).long() + pad_token_id


def local_folder(name: str) -> Path:
    """``name`` itself when it is a folder, else its copy in the HF cache (never fetched):
    where every file of ``text_arch`` is read from."""
    if Path(name).is_dir():
        return Path(name)
    config = cached_file(name, "config.json", local_files_only=True)
    if config is None:
        raise OSError(f"no config.json for {name!r} in the Hugging Face cache")
    return Path(config).parent


def resolve_text_arch(name: str) -> tuple[object, object]:
    """Config and tokenizer of ``text_arch``: a local folder, or a copy already in the HF
    cache. Nothing is downloaded, and the folder is checked first (``check_hf_folder``):
    it is untrusted input, and none of its code may run."""
    try:
        folder = local_folder(name)
        check_hf_folder(folder, "roberta")
        options = {"local_files_only": True, "trust_remote_code": False}
        config = AutoConfig.from_pretrained(folder, **options)
        tokenizer = AutoTokenizer.from_pretrained(folder, **options)
    except InputError:
        raise
    except (OSError, ValueError) as err:
        raise ValueError(
            f"text_arch {name!r}: no local RoBERTa config/tokenizer found ({first_line(err)}). "
            "Pass a folder holding config.json and the tokenizer files (vocab.json + "
            "merges.txt or tokenizer.json); no weights are needed from it."
        ) from None
    return config, tokenizer
