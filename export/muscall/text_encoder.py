"""MusCALL's text tower: a small pre-norm causal transformer, trained from scratch.

Parameter names match a run's ``textual_head.*`` keys. Only the causal mask applies (the
padding mask is ignored, as upstream), so a row's result never depends on what follows its
pooled token, padding included; the pooled token is the one with the highest id of the row
(CLIP's end-of-text token, the highest id of its vocabulary).
"""

from __future__ import annotations

import torch
from torch import nn

from export.muscall.config import TextConfig


class PreNorm(nn.Module):
    """``x + fn(norm(x))`` is taken by the caller; this is ``fn(norm(x))``."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class CausalAttention(nn.Module):
    """One fused ``to_qkv`` (no bias), scaled dot products with an additive causal mask,
    ``out_projection`` (with bias)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out_projection = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        head_dim = dim // self.heads
        qkv = self.to_qkv(x).view(batch, length, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]
        position = torch.arange(length, device=x.device)
        future = position[None, :] > position[:, None]  # a comparison, not Trilu, in ONNX
        mask = torch.zeros(length, length, dtype=x.dtype, device=x.device)
        scores = query @ key.transpose(-1, -2) * head_dim**-0.5
        scores = scores + mask.masked_fill(future, float("-inf"))
        attended = torch.softmax(scores, dim=-1) @ value
        return self.out_projection(attended.transpose(1, 2).reshape(batch, length, dim))


class FeedForward(nn.Module):
    """Linear → exact (erf) GELU → Linear; index 2 is upstream's dropout (no weights)."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Identity(), nn.Linear(4 * dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class Transformer(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        dim = config.hidden_size
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(dim, CausalAttention(dim, config.num_attention_heads)),
                    PreNorm(dim, FeedForward(dim)),
                ]
            )
            for _ in range(config.num_hidden_layers)
        )
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, feed_forward in self.layers:
            x = x + attention(x)
            x = x + feed_forward(x)
        return self.norm_out(x)


class TextTransformer(nn.Module):
    """``input_ids [B, L]`` (``L ≤ max_position_embeddings``) → the pooled hidden state
    ``[B, hidden]``: the encoder space."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.transformer = Transformer(config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = self.position_embedding.weight[: input_ids.shape[1]]
        hidden = self.transformer(self.token_embedding(input_ids) + positions)
        pooled = input_ids.argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), pooled]
