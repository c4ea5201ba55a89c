"""CLIP's tokenizer from a folder's ``vocab.json`` + ``merges.txt``, as MusCALL uses it.

MusCALL tokenises with transformers' (4.x) slow ``CLIPTokenizer`` (``encode(text,
max_length=77, truncation=True)``: text cleanup, lower case, CLIP's pre-tokenisation regex,
byte-level BPE with ``</w>``, start and end tokens added, the end token kept on truncation),
then pads with id 0. transformers 5 has only the ``tokenizers``-backed ``CLIPTokenizer``,
which expresses the same steps; it is built here from the two files (nothing fetched, no
code from the folder run), saved as ``tokenizer.json``, and tested equal to the slow one.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, normalizers
from transformers import CLIPTokenizer

from export.untrusted import read_json_object, read_text
from runtime.errors import InputError, first_line

PAD_ID = 0  # MusCALL pads token rows with 0, whatever token that is
SPECIAL = ("<|startoftext|>", "<|endoftext|>")
MAX_MERGES = 49152 - 256 - 2  # the slow tokenizer reads no more (CLIP's file has as many)
# The slow tokenizer's cleanup (without ftfy installed, as MusCALL's requirements have it):
# BERT's basic cleanup (control characters dropped, whitespace made spaces, CJK ideographs
# spaced out, no accent stripping), NFC, whitespace runs joined, lower case. transformers 5's
# CLIPTokenizer lacks the first step, so CJK text and control characters would differ.
SLOW_CLEANUP = normalizers.Sequence(
    [
        normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
        ),
        normalizers.NFC(),
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Lowercase(),
    ]
)


def load_tokenizer(folder: str | Path) -> CLIPTokenizer:
    """The CLIP tokenizer of ``folder``'s two files, which are untrusted: each must be
    readable text, the vocabulary a JSON object of ids holding CLIP's start and end tokens,
    each merge two tokens; a bad file is refused by name."""
    folder = Path(folder)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab = read_json_object(vocab_file)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in vocab.values()):
        raise InputError(f"{vocab_file}: not a vocabulary (token → integer id)")
    missing = [token for token in SPECIAL if token not in vocab]
    if missing:
        raise InputError(f"{vocab_file}: not CLIP's vocabulary (no {', '.join(missing)})")
    # As the slow tokenizer reads it: the first line is a version header.
    lines = read_text(merges_file).strip().split("\n")[1 : MAX_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    bad = next((n for n, merge in enumerate(merges, start=2) if len(merge) != 2), None)
    if bad is not None:
        raise InputError(f"{merges_file}: line {bad} is not a merge of two tokens")
    try:
        tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    except Exception as err:  # tokenizers raises bare Exceptions for inconsistent files
        raise InputError(f"{folder}: not a CLIP tokenizer ({first_line(err)})") from None
    tokenizer.backend_tokenizer.normalizer = SLOW_CLEANUP
    return tokenizer
