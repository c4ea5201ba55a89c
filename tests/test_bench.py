"""scripts/bench.py's CPU-section measurements that explain its table: the query's token
count and the text tower's weight-MatMul floor."""

from __future__ import annotations

import sys
from pathlib import Path

from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench import QUERY, cpu_name, query_tokens, text_matmul_floor  # scripts/ is not a package


def test_query_tokens_is_what_the_reference_tokenizer_makes_of_the_query(
    small_model_dir, small_reference
):
    expected = small_reference.tokenize([QUERY])["input_ids"].shape[1]
    assert query_tokens(small_model_dir) == expected


def test_matmul_floor_times_every_weight_matmul_of_the_text_tower(small_model_dir, small_reference):
    """Each encoder layer has six weight MatMuls (Q, K, V, output, two feed-forward); the
    floor's work is counted from the reference's own Linear weights."""
    encoder = small_reference.text_encoder.encoder
    linear_weights = [m.weight.numel() for m in encoder.modules() if isinstance(m, nn.Linear)]
    floor = text_matmul_floor(small_model_dir, tokens=5, threads=1, repeats=2)
    assert floor["matmuls"] == 6 * len(encoder.layer) == len(linear_weights)
    assert floor["gflops"] == 2 * 5 * sum(linear_weights) / 1e9
    assert floor["ms"] > 0


def test_cpu_name_says_cores():
    assert cpu_name().split(", ")[1].endswith(" cores")
