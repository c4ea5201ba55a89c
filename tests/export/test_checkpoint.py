"""Loading upstream checkpoints: exact keys, tolerated extras, and untrusted files."""

from __future__ import annotations

import shutil

import pytest
import torch

from export.checkpoint import CheckpointError, read_state_dict
from export.ttmrpp.reference import load_reference
from tests.helpers import Payload


@pytest.fixture
def small_files(small_export, tmp_path):
    """A private copy of the small demo checkpoint that a test may alter."""
    checkpoint, config, text_arch = small_export[1]
    copy = tmp_path / "ttmrpp.pth"
    shutil.copy(checkpoint, copy)
    return copy, config, text_arch


def rewrite(path, change) -> None:
    content = torch.load(path, weights_only=True)
    change(content["state_dict"])
    torch.save(content, path)


def test_demo_checkpoint_round_trips(small_export, small_reference):
    saved = torch.load(small_export[1][0], weights_only=True)["state_dict"]
    loaded = small_reference.state_dict()
    assert set(loaded) == set(saved) - {"logit_scale", "loss_fct.logit_scale"}
    for key, value in loaded.items():
        assert torch.equal(value, saved[key]), key


def test_checkpoint_with_position_ids_loads_the_same_model(small_files, small_reference):
    """The published checkpoint also holds RoBERTa's ``position_ids`` buffer (older
    transformers saved it): it is accepted and ignored, so the weights and the embeddings
    are those of the checkpoint without it."""
    rewrite(
        small_files[0],
        lambda s: s.update({"text_encoder.embeddings.position_ids": torch.arange(514)[None]}),
    )
    loaded = load_reference(*small_files)
    expected = small_reference.state_dict()
    assert set(loaded.state_dict()) == set(expected)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
    texts = ["a calm solo piano piece", ""]
    for got, want in zip(
        loaded.text_encode(texts), small_reference.text_encode(texts), strict=True
    ):
        assert torch.equal(got, want)


def test_wrong_shape_is_named(small_files):
    key = "audio_encoder.attn_pool.positional_embedding"
    rewrite(small_files[0], lambda s: s.update({key: torch.zeros(125, 256)}))
    with pytest.raises(CheckpointError, match=f"wrong shapes.*{key}"):
        load_reference(*small_files)


def test_missing_and_unexpected_keys_are_named(small_files):
    def change(state):
        del state["audio_projector.1.weight"]
        state["text_encoder.pooler.dense.weight"] = torch.zeros(32, 32)

    rewrite(small_files[0], change)
    with pytest.raises(CheckpointError) as raised:
        load_reference(*small_files)
    assert "missing keys ['audio_projector.1.weight']" in str(raised.value)
    assert "unexpected keys ['text_encoder.pooler.dense.weight']" in str(raised.value)


def test_pickled_callable_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        read_state_dict(path)
    assert not marker.exists()


def test_truncated_checkpoint_fails_clearly(small_export, tmp_path):
    data = small_export[1][0].read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_state_dict(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is a text file, not a checkpoint\n", b"PK\x03\x04garbage"],
    ids=["empty", "text", "broken-zip"],
)
def test_non_checkpoint_file_fails_clearly(tmp_path, content):
    path = tmp_path / "not.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_state_dict(path)


def test_checkpoint_without_state_dict_fails_clearly(tmp_path):
    path = tmp_path / "bare.pth"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="'state_dict'"):
        read_state_dict(path)


def test_missing_checkpoint_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_state_dict(tmp_path / "absent.pth")


def test_text_arch_must_be_local(small_export):
    checkpoint, config, _ = small_export[1]
    with pytest.raises(ValueError, match=r"text_arch 'roberta-base'.*no local RoBERTa"):
        load_reference(checkpoint, config)  # the yaml names roberta-base, which is not here
