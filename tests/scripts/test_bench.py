"""scripts/bench.py's CPU-section measurements that explain its table: the query's token
count and the text tower's weight-MatMul floor."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from runtime.engines.cpu import BF16_FLAGS, INT8_FLAGS, VECTOR_FLAGS, describe_cpu
from runtime.manifest import read_manifest
from scripts.bench import (
    QUERY,
    bench_inputs,
    cosine_min,
    main,
    onnx_flops,
    query_tokens,
    text_matmul_floor,
    window_seconds,
)
from scripts.bench_rows import REFERENCE, WHOLE_GRAPH_BF16, build, unavailable
from tests.helpers import SMALL_MUSCALL

BF16_AUTOCAST = "PyTorch eager CPU bf16 autocast"
ROOT = Path(__file__).resolve().parents[2]


def test_the_bench_runs_as_a_file_from_anywhere_as_well_as_imported(tmp_path):
    """``python scripts/bench.py`` (its neighbours found as the package ``scripts``, which
    this module imports without any path edits), from a folder outside the checkout."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: bench.py")


@pytest.mark.parametrize(
    "folder, reference",
    [
        ("small_model_dir", "small_reference"),
        # CLAP's and MusCALL's references pad to 77; their graphs read only the real tokens
        ("small_clap_model_dir", "small_clap_reference"),
        ("small_muscall_model_dir", "small_muscall_reference"),
    ],
)
def test_query_tokens_is_what_the_graph_reads_of_the_reference_tokens_of_the_query(
    folder, reference, request
):
    tokens = request.getfixturevalue(reference).tokenize([QUERY])
    assert query_tokens(request.getfixturevalue(folder)) == int(tokens["attention_mask"].sum())


def test_onnx_flops_counts_the_graphs_convs_matmuls_and_gemms_at_the_given_shape(tmp_path):
    """A dynamic-batch graph Conv → Reshape → MatMul → Gemm (transposed weight), counted
    by hand at batch 3: 2 × outputs × inner length of each."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = {
        "conv": np.ones((4, 2, 3, 3), np.float32),  # 2 → 4 channels, 3×3, padded
        "matmul": np.ones((4 * 5 * 5, 6), np.float32),
        "gemm": np.ones((7, 6), np.float32),
        "flat": np.array([0, -1], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "matmul"], ["m"]),
        helper.make_node("Gemm", ["m", "gemm"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 7])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    conv = 2 * (3 * 4 * 5 * 5) * (2 * 3 * 3)
    matmul = 2 * (3 * 6) * (4 * 5 * 5)
    gemm = 2 * (3 * 7) * 6
    assert onnx_flops(path, [3, 2, 5, 5]) == conv + matmul + gemm


def test_matmul_floor_times_every_weight_matmul_of_the_text_tower(small_model_dir, small_reference):
    """Each encoder layer has six weight MatMuls (Q, K, V, output, two feed-forward); the
    floor's work is counted from the reference's own Linear weights."""
    encoder = small_reference.text_encoder.encoder
    linear_weights = [m.weight.numel() for m in encoder.modules() if isinstance(m, nn.Linear)]
    floor = text_matmul_floor(small_model_dir, tokens=5, threads=1, repeats=2)
    assert floor["matmuls"] == 6 * len(encoder.layer) == len(linear_weights)
    assert floor["gflops"] == 2 * 5 * sum(linear_weights) / 1e9
    assert floor["ms"] > 0


def test_cpu_line_says_cores_and_only_known_feature_names():
    _, cores, *features = describe_cpu().split(", ")
    assert cores.endswith(" cores")
    assert set(features) <= {*VECTOR_FLAGS.values(), *BF16_FLAGS.values(), *INT8_FLAGS.values()}


@pytest.fixture(params=["ttmrpp", "clap", "muscall"])
def folder_and_source(request) -> tuple[Path, dict[str, Path] | None]:
    """A small model folder of each family and what ``--source`` gives for it: nothing for
    TTMR++ (its files are in the folder's ``checkpoint/``, as a demo's), the files it was
    exported from (outside the folder) for CLAP and MusCALL."""
    if request.param == "ttmrpp":
        return request.getfixturevalue("small_model_dir"), None
    if request.param == "clap":
        folder, hf = request.getfixturevalue("small_clap_export")
        return folder, {"hf_model": hf}
    folder, files = request.getfixturevalue("small_muscall_export")
    return folder, dict(zip(("checkpoint", "config", "tokenizer"), files, strict=True))


@pytest.mark.parametrize(
    ("row", "least_cosine"),
    [("ORT CPU fp32", 0.9999), ("OpenVINO CPU fp32", 0.9999), (BF16_AUTOCAST, 0.99)],
)
def test_reference_and_other_rows_agree_on_every_family(folder_and_source, row, least_cosine):
    """The same windows, sentences and track through the family's PyTorch reference and
    through another row: fp32 rows must embed them alike (the export's own tolerance),
    bf16 autocast nearly so."""
    from export.synthetic import random_track

    model_dir, given = folder_and_source
    assert unavailable(REFERENCE, model_dir, given) is None
    reference = build(REFERENCE, model_dir, 1, 8, given)
    runtime = build(row, model_dir, 1, 8, given)
    windows, texts, _ = bench_inputs(model_dir, [2])
    rate = read_manifest(model_dir).audio.sample_rate
    track = random_track(3, 1.5 * window_seconds(model_dir), rate)  # a remainder to drop
    assert windows.shape == (2, read_manifest(model_dir).audio.window_samples)
    for run in ("windows", "texts"):
        given_in = windows if run == "windows" else texts[:5]
        ours, theirs = getattr(runtime, run)(given_in), getattr(reference, run)(given_in)
        assert cosine_min(ours, theirs) > least_cosine, run
    assert cosine_min(runtime.track(track), reference.track(track)[None]) > least_cosine


def test_reference_rows_are_skipped_with_the_reason_when_the_folder_lacks_its_files(
    small_muscall_model_dir,
):
    """A MusCALL folder exported from files elsewhere: no ``checkpoint/`` demo files, so the
    reference rows say which files are missing and how to name them; the runtime's run."""
    reason = unavailable(REFERENCE, small_muscall_model_dir)
    assert str(small_muscall_model_dir / "checkpoint" / "best_model.pth.tar") in reason
    assert "--source DEST=PATH (checkpoint, config, tokenizer)" in reason
    assert unavailable("PyTorch eager CUDA fp32", small_muscall_model_dir) == reason
    assert unavailable("ORT CPU fp32", small_muscall_model_dir) is None
    wrong = {"hf_model": small_muscall_model_dir}
    assert "hf_model is not a file MusCALL reads" in unavailable(
        REFERENCE, small_muscall_model_dir, wrong
    )


def test_a_reference_of_other_weights_than_the_manifests_is_refused(
    small_muscall_model_dir, tmp_path
):
    from export.muscall.demo import write_demo_run

    files = write_demo_run(tmp_path, seed=2, **SMALL_MUSCALL)
    other = dict(zip(("checkpoint", "config", "tokenizer"), files, strict=True))
    assert unavailable(REFERENCE, small_muscall_model_dir, other) is None  # files exist …
    with pytest.raises(ValueError, match=r"not the weights .* was exported from"):
        build(REFERENCE, small_muscall_model_dir, 1, 8, other)  # … but are not its weights


@pytest.mark.slow  # both sections end to end: about a minute
def test_bench_runs_unchanged_on_a_muscall_folder(small_muscall_export, tmp_path, capsys):
    """Issue 18: both sections on a MusCALL folder, the reference named by ``--source``."""
    model_dir, files = small_muscall_export
    out = tmp_path / "bench.json"
    argv = ["--model-dir", str(model_dir), "--threads", "1", "--json", str(out)]
    for dest, path in zip(("checkpoint", "config", "tokenizer"), files, strict=True):
        argv += ["--source", f"{dest}={path}"]
    argv += ["--windows", "1", "--repeats", "1", "--memory-minutes", "0.5"]
    argv += ["--tracks", "3", "--queries", "3", "--batches", "1,2", "--latency-runs", "2"]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    cpu = result["cpu"]
    fp32_rows = {REFERENCE, BF16_AUTOCAST, "ORT CPU fp32", "OpenVINO CPU fp32"}
    assert fp32_rows <= set(cpu["rows"])
    for row in ("ORT CPU int8", "OpenVINO CPU int8"):
        assert "no int8 graphs" in cpu["skipped"][row]
    for row in ("OpenVINO CPU bf16", WHOLE_GRAPH_BF16):
        assert row in cpu["rows"] or "bf16 units" in cpu["skipped"][row]
        assert (row in cpu["vs_fp32"]) == (row in cpu["rows"])
    assert cpu["gemm_peaks"]["fp32"]["gflops"] > 0 and cpu["flops"]["graphs"]["window"] > 0
    backends = result["backends"]["rows"]
    assert set(backends) >= {REFERENCE, "ORT CPU fp32"}
    assert backends["ORT CPU fp32"]["cosine_to_reference_windows"] > 0.9999
    assert backends["ORT CPU fp32"]["cosine_to_reference_texts"] > 0.9999
    assert result["cpu"]["peak_rss_mb_0.5min_track_fp32"] > 0
    assert "× ref" in capsys.readouterr().out


def test_index_section_times_the_command_and_the_graphs_on_the_same_mp3s(small_model_dir):
    from scripts.bench_index import index_lines, index_section

    result = index_section(small_model_dir, 1, "fp32", "auto", files=3, seconds=25.0)
    assert result["windows"] == 3 * 2  # 25 s of 10-s windows: the remainder is dropped
    assert result["index_windows_per_s"] > 0 and result["graph_windows_per_s"] > 0
    assert result["decode_ms_per_file_one_core"] > 0 and result["index_startup_seconds"] > 0
    assert result["profile"].startswith("onnxruntime, fp32")
    sustained = result["index_sustained_windows_per_s"]
    assert sustained is None or sustained > 0
    assert "% of the graphs alone" in index_lines(result)
    assert "s of start-up (one file alone)" in index_lines(result)


def test_gemm_peak_is_the_fastest_engines_rate_and_none_without_units(monkeypatch):
    """One library's GEMM is not the machine's limit (PyTorch's fp32 on AMD ran at half of
    onnxruntime's): the peak is the best engine's, named; no units, no peak."""
    from scripts import bench_peaks

    def sleeping(seconds):
        return {"fp32": partial(time.sleep, seconds), "int8": partial(time.sleep, seconds)}

    monkeypatch.setattr(bench_peaks, "torch_work", lambda size, threads: sleeping(0.04))
    monkeypatch.setattr(bench_peaks, "onnxruntime_work", lambda size, threads: sleeping(0.01))
    monkeypatch.setattr(bench_peaks, "openvino_work", lambda size, threads: {})
    no_bf16 = lambda flags: [] if "amx_bf16" in flags else ["some"]  # noqa: E731
    monkeypatch.setattr(bench_peaks, "named_flags", no_bf16)
    peaks = bench_peaks.gemm_peaks(1, size=100, repeats=2)
    assert peaks["fp32"]["engine"] == peaks["int8"]["engine"] == "onnxruntime"
    assert 0 < peaks["fp32"]["gflops"] <= 2 * 100**3 / 0.01 / 1e9
    assert peaks["bf16"] == {"gflops": None, "engine": None}


def test_windows_section_times_both_modes_on_a_mix_and_compares_their_embeddings(
    small_model_dir,
):
    from scripts.bench_index import windows_lines, windows_section

    result = windows_section(small_model_dir, 1, "fp32", "auto", 2, minutes=(1.0,))
    (row,) = result["mixes"].values()
    assert row["whole_s"] > 0 and row["windows_s"] > 0
    assert row["speedup"] == row["whole_s"] / row["windows_s"]
    assert -1 <= row["cosine"] < 0.999999  # 2 of 6 windows: not the whole-track mean
    assert "ttmr index --windows 2 on a 1-minute mix" in windows_lines(result)
