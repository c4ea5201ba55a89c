"""Peak resident memory of the full-size model, measured as scripts/bench.py reports it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench import peak_memory_mb  # scripts/ is not a package

LIMIT_MB = 1536  # the bar for fp32: under 1.5 GB


@pytest.mark.slow
def test_fp32_process_embedding_a_3_minute_track_stays_under_1_5_gb(demo_model_dir):
    """A fresh process loads both full-size towers, embeds a 3-minute track (18 windows in
    one call, since they share the log-mel floor) and a sentence."""
    peak = peak_memory_mb(demo_model_dir, "fp32", threads=2)
    print(f"peak RSS {peak:.0f} MB")
    assert peak < LIMIT_MB
