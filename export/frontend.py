"""The log-mel power every family's exportable frontend builds on: a centred STFT as a
Cooley–Tukey DFT in three MatMul stages, ``|X|²`` and a mel filter bank, with only operators
TensorRT parses (no complex STFT). The families' frontends add their own scaling.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

LOG_FLOOR = 1e-10  # mel power below this is clamped before log10


def three_factors(n: int) -> tuple[int, int, int]:
    """``n = a * b * c``, largest first, as even as possible (16 × 8 × 8 for 1024): short
    stages round less."""
    options = [
        (a, b, n // (a * b))
        for a in range(1, n + 1)
        if n % a == 0
        for b in range(1, a + 1)
        if (n // a) % b == 0 and n // (a * b) <= b
    ]
    return min(options, key=lambda abc: (abc[0], sum(abc)))


def twiddles(n: np.ndarray, k: np.ndarray, size: int) -> np.ndarray:
    """``exp(-2πi n k / size)`` over the outer product of ``n`` and ``k``, complex128."""
    return np.exp(-2j * np.pi * np.multiply.outer(n, k) / size)


def complex_rows(matrix: np.ndarray) -> np.ndarray:
    """A complex ``[k, n]`` map as a real ``[(re, im) k, (n, re/im)]`` one: applied to rows
    ``(n, re/im)`` it gives rows ``(re/im, k)`` of the complex product."""
    k, n = matrix.shape
    real = np.zeros((2, k, n, 2))
    real[0, :, :, 0], real[0, :, :, 1] = matrix.real, -matrix.imag
    real[1, :, :, 0], real[1, :, :, 1] = matrix.imag, matrix.real
    return real.reshape(2 * k, 2 * n)


class MelPower(nn.Module):
    """``[B, N]`` waveforms → mel power ``[B, n_mels, frames]`` (periodic Hann, centred STFT
    with reflect padding, ``filters @ |STFT|²``) with operators TensorRT parses; the
    exportable frontends of every family build on it.

    The STFT is a Cooley–Tukey DFT in three MatMul stages (16 × 8 × 8 for ``n_fft = 1024``).
    In float32, three short stages round low-energy bands less than the float32 reference
    FFT does (two 32-point stages rounded more); ``dtype=torch.float64`` is there for
    references computed in float64. The Hann window and the twiddle factors are folded into
    the stage matrices, and every stage multiplies from the left, so between stages the data
    is only reshaped, never transposed. Only Gather, MatMul and elementwise operators are
    used. ``frames`` counts the frames computed from the first: a reference that drops
    trailing frames never pays for them.
    """

    def __init__(
        self,
        n_fft: int,
        hop: int,
        frames: int,
        filters: np.ndarray,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        a, b, c = three_factors(n_fft)
        # Sample n = b·c·n1 + c·n2 + n3 of a frame; bin k = k1 + a·k2 + a·b·k3. Bins above
        # the highest one a filter weighs are never needed (TTMR++'s Slaney bank gives the
        # Nyquist bin no weight), so only the k3 rows holding bins up to it are computed.
        n1, n2, n3 = np.arange(a), np.arange(b), np.arange(c)
        weighed = np.flatnonzero(np.any(filters != 0, axis=0))
        kept = (weighed.max() if weighed.size else 0) // (a * b) + 1
        # Gathered as [n3, n2, n1, frame]: stage 1 sums over n1 for each (n3, n2).
        sample = (
            n3[:, None, None, None]
            + c * n2[None, :, None, None]
            + b * c * n1[None, None, :, None]
            + hop * np.arange(frames)
        )
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
        stage1 = np.empty((c, b, 2 * a, a))  # per (n3, n2): rows (re/im, k1), columns n1
        for j in n3:
            for i in n2:
                offset = c * i + j
                dft = twiddles(n1, n1, a) * twiddles(offset, n1, n_fft)[None, :]
                dft = (window[b * c * n1 + offset][:, None] * dft).T
                stage1[j, i] = np.concatenate([dft.real, dft.imag])
        # Stage 2 sums over n2 for each n3 (rows (re/im, k2), columns (n2, re/im)).
        stage2 = np.stack(
            [complex_rows((twiddles(n2, n2, b) * twiddles(j, n2, b * c)[None, :]).T) for j in n3]
        )
        # Stage 3 sums over n3 (rows (re/im, k3), columns (n3, re/im)).
        stage3 = complex_rows(twiddles(n3, np.arange(kept), c).T)
        # The filters read the power in the order [k3, k2, k1].
        k3, k2, k1 = np.meshgrid(np.arange(kept), n2, n1, indexing="ij")
        bins = (k1 + a * k2 + a * b * k3).reshape(-1)
        in_range = bins <= n_fft // 2
        reordered = np.zeros((filters.shape[0], bins.size))
        reordered[:, in_range] = filters[:, bins[in_range]]
        stages = {"stage1": stage1.reshape(c * b, 2 * a, a), "stage2": stage2, "stage3": stage3}
        for name, value in stages.items():
            self.register_buffer(name, torch.from_numpy(value).to(dtype))
        self.register_buffer("filters", torch.from_numpy(reordered.astype(np.float32)))
        self.register_buffer("frame_index", torch.from_numpy(sample.reshape(-1)))
        self.factors, self.frames, self.kept = (a, b, c), frames, kept
        self.pad = n_fft // 2

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        (a, b, c), frames = self.factors, self.frames
        padded = nn.functional.pad(waveform[:, None, :], (self.pad, self.pad), mode="reflect")
        x = padded.flatten(1).index_select(1, self.frame_index)  # one Gather
        x = x.reshape(-1, c * b, a, frames).to(self.stage1.dtype)
        y = self.stage1 @ x  # [B, (n3 n2), (re/im k1), F]
        y = self.stage2 @ y.reshape(-1, c, 2 * b, a * frames)  # [B, n3, (re/im k2), (k1 F)]
        y = self.stage3 @ y.reshape(-1, 2 * c, b * a * frames)  # [B, (re/im k3), (k2 k1 F)]
        squares = (y * y).reshape(-1, 2, self.kept * b * a, frames)
        return self.filters @ squares.sum(dim=1).float()
