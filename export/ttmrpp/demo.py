"""The offline TTMR++ demo model: the published architecture with seeded random weights,
written in the upstream formats (``.pth`` + ``.yaml`` + a ``text_arch`` folder), so that
everything downstream is exercised exactly as with the real checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import yaml

from export.demo import (
    ROBERTA_BASE,
    jitter_norms,
    measure_batchnorm,
    scale_linears,
    write_text_arch,
)
from export.synthetic import random_track
from export.ttmrpp.hparams import PUBLISHED, HParams
from export.ttmrpp.reference import TTMRpp, track_windows


def randomise(model: TTMRpp) -> None:
    """Random weights that still carry the input through both towers.

    Default initialisations make a deep random network's output nearly constant, and then
    no test could tell one track or sentence from another. So: text projections preserve
    scale, and BatchNorm statistics are measured on synthetic audio (as a trained net's
    would be), then jittered so that folding them is still tested on arbitrary values.
    """
    with torch.no_grad():
        jitter_norms(model)
        # Residual branches enter small, as in trained ResNets: a random net whose sixteen
        # branches all add at full scale is chaotic and amplifies float32 rounding.
        for name, module in model.audio_encoder.named_modules():
            if name.endswith("bn3"):
                module.weight.uniform_(0.1, 0.3)
        scale_linears(model.text_encoder)
        pool = model.audio_encoder.attn_pool.positional_embedding
        pool.normal_(0.0, 1.0 / math.sqrt(pool.shape[-1]))
        audio = np.concatenate(
            [track_windows(random_track(s, 10.0), 22050, model.hp) for s in range(4)]
        )
        measure_batchnorm(model.audio_encoder, model.frontend(torch.from_numpy(audio)))


def checkpoint_files(folder: str | Path) -> tuple[Path, Path, Path]:
    """Where ``write_demo_checkpoint`` puts ``ttmrpp.pth``, ``ttmrpp.yaml`` and
    ``text_arch/`` (so that a demo folder's files can be found again)."""
    folder = Path(folder)
    return folder / "ttmrpp.pth", folder / "ttmrpp.yaml", folder / "text_arch"


def write_demo_checkpoint(
    folder: str | Path,
    seed: int = 0,
    hparams: dict | None = None,
    roberta: dict | None = None,
) -> tuple[Path, Path, Path]:
    """Write ``ttmrpp.pth``, ``ttmrpp.yaml`` and ``text_arch/`` under ``folder``.

    Defaults are the published sizes; tests pass smaller ``hparams`` / ``roberta``.
    Returns the three paths.
    """
    checkpoint, config, text_arch = checkpoint_files(folder)
    hp_dict = {**PUBLISHED, **(hparams or {})}
    text_config = write_text_arch(text_arch, {**ROBERTA_BASE, **(roberta or {})})
    torch.manual_seed(seed)
    model = TTMRpp(HParams.from_dict(hp_dict), text_config)
    randomise(model)
    state = model.state_dict()
    # The published file also carries training-only keys; loading must ignore them.
    state["logit_scale"] = torch.tensor([math.log(1 / hp_dict["temperature"])])
    state["loss_fct.logit_scale"] = state["logit_scale"].clone()
    torch.save({"state_dict": state, "epoch": 0}, checkpoint)
    config.write_text(yaml.safe_dump(hp_dict, sort_keys=True))
    return checkpoint, config, text_arch
