"""MusCALL's reference against facts checked without torchaudio or MusCALL's code: the mel
bank against librosa's HTK bank (zero filters included), the STFT normalisation against a
sine's analytic power, the per-clip 100-dB clamp, the text pooling rule, and the
independence of a text row from its padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.muscall.config import MusCALLConfig
from export.muscall.demo import MODEL_CONFIG
from export.muscall.frontend import TorchaudioLogMel, mel_filters
from tests.helpers import muscall_windows
from tests.muscall_oracle import htk_bank, log_mel

RATE, WINDOW = 16000, 320000
AUDIO = MusCALLConfig.from_dict(MODEL_CONFIG).audio
REFERENCE_DB_ATOL = 5e-4  # the reference's float32 torch.stft against float64; measured 6.7e-5


def test_mel_bank_is_htk_without_normalisation_and_its_top_12_filters_are_zero():
    bank = mel_filters(AUDIO)  # [bins, n_mels]
    assert bank.shape == (513, 128)
    np.testing.assert_allclose(bank, htk_bank(16000, 1024, 128, 0, 11025).T, rtol=0, atol=1e-12)
    zero = [m for m in range(128) if not bank[:, m].any()]
    assert zero == list(range(116, 128))  # f_max 11025 Hz is past Nyquist (8000 Hz)
    assert bank.max() == pytest.approx(1.0, abs=0.05)  # peaks near 1: no area normalisation


def test_demo_checkpoint_holds_the_recipes_frontend(small_muscall_reference):
    spec = small_muscall_reference.audio_backbone.spec
    assert torch.equal(spec.spectrogram.window, torch.hann_window(1024, periodic=True))
    np.testing.assert_allclose(spec.mel_scale.fb.numpy(), mel_filters(AUDIO), atol=1e-7)


def test_stft_is_divided_by_the_root_of_the_window_energy():
    # A sine on bin 64 (1000 Hz): |X| = A · sum(w) / 2 = 0.5 · 512 / 2, sum(w²) = 384.
    t = np.arange(WINDOW) / RATE
    sine = torch.from_numpy((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    power = TorchaudioLogMel(AUDIO).power(sine[None])[0]  # [bins, frames]
    middle = power[:, 10:-10]
    np.testing.assert_allclose(middle[64].numpy(), 128.0**2 / 384.0, rtol=1e-4)
    assert middle[64].min() > 100 * middle[70].max()  # the energy is in that bin


def test_reference_log_mel_follows_the_recipe():
    windows = muscall_windows(3, seed=1)
    windows[2, : WINDOW // 2] = 0.0  # digital silence: clamped
    got = TorchaudioLogMel(AUDIO)(torch.from_numpy(windows))[:, 0].numpy()
    expected = log_mel(windows, htk_bank(16000, 1024, 128, 0, 11025))
    assert got.shape == expected.shape == (3, 128, 626)
    np.testing.assert_allclose(got, expected, rtol=0, atol=REFERENCE_DB_ATOL)


def test_clamp_is_100_db_under_each_clips_own_maximum():
    frontend = TorchaudioLogMel(AUDIO)
    loud = muscall_windows(1, seed=2)[0]
    quiet = 1e-4 * loud
    quiet[: WINDOW // 2] = 0.0
    batch = frontend(torch.from_numpy(np.stack([loud, quiet])))[:, 0]
    alone = frontend(torch.from_numpy(quiet[None]))[0, 0]
    assert torch.equal(batch[1], alone)  # batch-mates never matter
    for clip in batch:  # the floor: 100 dB under the clip's maximum, or log10's 1e-10
        floor = max(clip.max().item() - 100.0, -100.0)
        assert clip.min().item() == pytest.approx(floor, abs=1e-4)
    assert batch[0].min() > -100.0  # the loud clip was clamped by its maximum
    assert batch[1].min() < batch[0].max() - 100.0  # and the quiet one never by the loud one's


def test_text_is_pooled_at_the_highest_token_id(small_muscall_reference):
    model = small_muscall_reference
    start, end = model.tokenizer.bos_token_id, model.tokenizer.eos_token_id
    words = model.tokenizer.encode("a calm piano", add_special_tokens=False)
    row = torch.tensor([[start, *words, end, 0, 0]])
    changed_after = row.clone()
    changed_after[0, -2:] = torch.tensor([words[0], words[1]])
    changed_before = row.clone()
    changed_before[0, 1] = words[-1]
    with torch.inference_mode():
        encoder = model.text_encode_ids(row)[1]
        assert torch.equal(model.text_encode_ids(changed_after)[1], encoder)
        assert not torch.allclose(model.text_encode_ids(changed_before)[1], encoder)
        # The rule is the highest id, not the last token: put the highest id mid-row.
        middle = torch.tensor([[start, words[0], end, *words[1:], end - 1]])
        np.testing.assert_allclose(
            model.text_encode_ids(middle)[1], model.text_encode_ids(middle[:, :3])[1], atol=1e-6
        )


def test_padding_never_changes_a_text_row(small_muscall_reference):
    model = small_muscall_reference
    texts = ["a calm solo piano piece in D", "rock", "", "distorted guitars " * 30]
    tokens = model.tokenize(texts)
    assert tokens["input_ids"].shape == (4, 77)
    lengths = tokens["attention_mask"].sum(1)
    assert (tokens["input_ids"][tokens["attention_mask"] == 0] == 0).all()  # padded with 0
    with torch.inference_mode():
        padded = model.text_encode_ids(tokens["input_ids"])[1]
        for row, length in enumerate(lengths.tolist()):
            alone = model.text_encode_ids(tokens["input_ids"][row : row + 1, :length])[1]
            np.testing.assert_allclose(alone[0], padded[row], atol=1e-6)
