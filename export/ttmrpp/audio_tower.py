"""CLIP's modified ResNet over a log-mel, with attention pooling: TTMR++'s audio encoder, and
MusCALL's.

Parameter names match TTMR++'s ``audio_encoder.*`` keys; MusCALL's ``audio_backbone.*`` differ
only in the pool's name and its positional embedding (``pool_name``, ``pool_positions``).
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

LAYER_BLOCKS = (3, 4, 6, 3)
LAYER_STRIDES = (1, 2, 2, 2)
EXPANSION = 4


def conv_bn(channels_in: int, channels_out: int, kernel: int, stride: int = 1):
    conv = nn.Conv2d(channels_in, channels_out, kernel, stride, padding=kernel // 2, bias=False)
    return conv, nn.BatchNorm2d(channels_out)


class Bottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(inplanes, planes, 1)
        self.conv2, self.bn2 = conv_bn(planes, planes, 3)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3, self.bn3 = conv_bn(planes, planes * EXPANSION, 1)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride > 1 or inplanes != planes * EXPANSION:
            conv, bn = conv_bn(inplanes, planes * EXPANSION, 1)
            # "-1" holds no parameters, so the checkpoint's keys are downsample.0 / .1.
            self.downsample = nn.Sequential(
                OrderedDict([("-1", nn.AvgPool2d(stride)), ("0", conv), ("1", bn)])
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def pool_tokens(x: torch.Tensor, positional_embedding: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` map → ``[B, 1 + HW, C]`` tokens: the map's mean first, then its cells
    (frequency-major), each plus the positional embedding."""
    tokens = x.flatten(2).transpose(1, 2)
    tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
    return tokens + positional_embedding


class AttentionPool(nn.Module):
    """Multi-head attention where only the mean token queries the flattened feature map
    (frequency-major), after a positional embedding of ``positions`` rows is added.

    TTMR++'s is ``[1, C]``: one vector added to every position, as in the published
    checkpoint (a quirk kept on purpose). MusCALL's has a row per token, which fixes the
    length of the input.
    """

    def __init__(self, channels: int, heads: int, output_dim: int, positions: int = 1):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.positional_embedding = nn.Parameter(torch.zeros(positions, channels))
        self.k_proj = nn.Linear(channels, channels)
        self.q_proj = nn.Linear(channels, channels)
        self.v_proj = nn.Linear(channels, channels)
        self.c_proj = nn.Linear(channels, output_dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = pool_tokens(x, self.positional_embedding)
        batch, length, channels = tokens.shape
        head_dim = channels // self.heads
        query = self.q_proj(tokens[:, :1]).view(batch, 1, self.heads, head_dim).transpose(1, 2)
        key = self.k_proj(tokens).view(batch, length, self.heads, head_dim).transpose(1, 2)
        value = self.v_proj(tokens).view(batch, length, self.heads, head_dim).transpose(1, 2)
        weights = torch.softmax(query @ key.transpose(-1, -2) * head_dim**-0.5, dim=-1)
        pooled = (weights @ value).transpose(1, 2).reshape(batch, channels)
        return self.c_proj(pooled)


class ModifiedResNet(nn.Module):
    """``[B, 1, n_mels, frames]`` log-mel → ``[B, audio_dim]`` encoder embedding; the pool is
    the attribute ``pool_name`` (its checkpoint's name)."""

    def __init__(
        self,
        width: int,
        heads: int,
        output_dim: int,
        pool_positions: int = 1,
        pool_name: str = "attn_pool",
    ):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(1, width // 2, 3, stride=2)
        self.conv2, self.bn2 = conv_bn(width // 2, width // 2, 3)
        self.conv3, self.bn3 = conv_bn(width // 2, width, 3)
        self.relu = nn.ReLU()
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        for index, (blocks, stride) in enumerate(
            zip(LAYER_BLOCKS, LAYER_STRIDES, strict=True), start=1
        ):
            planes = width * 2 ** (index - 1)
            layer = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * EXPANSION
            layer += [Bottleneck(inplanes, planes, 1) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*layer))
        self.pool_name = pool_name
        setattr(self, pool_name, AttentionPool(inplanes, heads, output_dim, pool_positions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.avgpool(self.relu(self.bn3(self.conv3(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return getattr(self, self.pool_name)(x)


class OneQueryPool(nn.Module):
    """An ``AttentionPool`` rewritten for inference graphs, equal to it in exact arithmetic:
    the one query is taken through the key projection and the attention weights through
    the value projection, so the keys and values of the ``L`` tokens are never computed
    (TTMR++'s 2048-channel pool: 2.1 GFLOP per window, 7 % of the tower, down to 0.05).

    Per head ``h``: ``q_h · (K_h t + k_h) = (K_hᵀ q_h) · t + q_h · k_h``, whose last term is
    the same for every token and so leaves the softmax unchanged; and ``Σ w (V_h t + v_h) =
    V_h (Σ w t) + v_h`` as the weights sum to 1.
    """

    def __init__(self, pool: AttentionPool):
        super().__init__()
        channels = pool.k_proj.in_features
        self.heads, self.head_dim = pool.heads, channels // pool.heads
        self.positional_embedding = pool.positional_embedding
        self.q_proj, self.c_proj = pool.q_proj, pool.c_proj
        shape = (self.heads, self.head_dim, channels)
        self.register_buffer("key", pool.k_proj.weight.detach().reshape(shape).clone())
        value = pool.v_proj.weight.detach().reshape(shape).transpose(1, 2).contiguous()
        self.register_buffer("value", value)  # [heads, C, head_dim]
        self.register_buffer("value_bias", pool.v_proj.bias.detach().reshape(shape[:2]).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = pool_tokens(x, self.positional_embedding)  # [B, L, C]
        batch = tokens.shape[0]
        # Heads lead in the products with the per-head weights: each head's weight multiplies
        # the whole batch in one GEMM, read once per call, not once per window. The query
        # token stays 3-D ([B, 1, C]) so that its projection exports as a MatMul, which the
        # static INT8 graph quantises.
        query = self.q_proj(tokens[:, :1]).view(batch, self.heads, self.head_dim).transpose(0, 1)
        keyed = (query @ self.key).transpose(0, 1)  # [B, heads, C]
        scores = keyed @ tokens.transpose(1, 2) * self.head_dim**-0.5  # [B, heads, L]
        mixed = torch.softmax(scores, dim=-1) @ tokens  # [B, heads, C]
        pooled = (mixed.transpose(0, 1) @ self.value).transpose(0, 1) + self.value_bias
        return self.c_proj(pooled.reshape(batch, -1))  # pooled: [B, heads, head_dim]


def inference_copy(encoder: ModifiedResNet) -> ModifiedResNet:
    """A copy of ``encoder`` for an inference graph: BatchNorm folded into the convolutions,
    the attention pool as a ``OneQueryPool``."""
    encoder = copy.deepcopy(encoder).eval()
    fold_batchnorm(encoder)
    setattr(encoder, encoder.pool_name, OneQueryPool(getattr(encoder, encoder.pool_name)))
    return encoder


def fold_batchnorm(module: nn.Module) -> None:
    """Fold every (Conv2d, BatchNorm2d) pair into the conv, in place, for inference graphs."""
    pairs = [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("0", "1")]
    for parent in module.modules():
        for conv_name, bn_name in pairs:
            conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                # In float64: folding in float32 alone shifts the output by ~3e-6.
                fused = nn.utils.fusion.fuse_conv_bn_eval(conv.eval().double(), bn.eval().double())
                setattr(parent, conv_name, fused.float())
                setattr(parent, bn_name, nn.Identity())
