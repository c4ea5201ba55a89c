"""Peak resident memory, measured as scripts/bench.py reports it: a fresh process loads the
model and embeds one long WAV at the Embedder's default batch size."""

from __future__ import annotations

import pytest

from runtime.engines.onnxruntime import session_options
from scripts.bench import peak_memory_mb

LIMIT_MB = 1536  # the bar for fp32: a 60-minute 22.05 kHz track under 1.5 GB


@pytest.mark.slow
def test_fp32_process_embedding_a_60_minute_track_stays_under_1_5_gb(demo_model_dir):
    """The full-size towers; the track's 360 windows go through in calls of 8."""
    peak = peak_memory_mb(demo_model_dir, "fp32", threads=2, minutes=60)
    print(f"peak RSS {peak:.0f} MB")
    assert peak < LIMIT_MB


@pytest.mark.slow  # end to end: kept out of the quick -m 'not slow' loop
def test_memory_beyond_the_decoded_track_does_not_grow_with_its_length(small_model_dir):
    """20 more minutes cost their decoded samples at 22.05 kHz (106 MB of float32) and
    little else; with a track's windows in one call they cost gigabytes of activations."""
    short = peak_memory_mb(small_model_dir, "fp32", threads=1, minutes=4)
    long = peak_memory_mb(small_model_dir, "fp32", threads=1, minutes=24)
    decoded = 20 * 60 * 22050 * 4 / 2**20
    print(f"peak RSS {short:.0f} MB (4 min), {long:.0f} MB (24 min); decoded 20 min {decoded:.0f}")
    assert long - short < decoded + 64


def test_onnxruntime_sessions_share_one_arena_and_plan_no_memory_pattern():
    """An arena saves faulting in fresh pages every call (int8 audio 25 % faster); one
    arena for all sessions, without a memory pattern per input shape, keeps the peak near
    the no-arena one (an arena per session held each one's peak; a pattern took the fp32
    peak above the bar above)."""
    options = session_options(2)
    assert options.enable_cpu_mem_arena
    assert options.get_session_config_entry("session.use_env_allocators") == "1"
    assert not options.enable_mem_pattern
