"""The GPU run's preparation, proven on this CPU: the wheels cut into pieces and joined back
(scripts/gpu_pieces.py, on stand-in wheels of a few kB, not the 255 MB download), and
scripts/gpu_check.sh run end to end without a GPU on the small model."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scripts.gpu_pieces import PIECE_SUMS, SMALL, WHEEL_SUMS, PieceError, join, split

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def wheels(tmp_path) -> Path:
    """One 'big' wheel of 10 000 random bytes and two small ones."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    rng = np.random.default_rng(0)
    (folder / "big-1.0-cp312-cp312-manylinux_2_28_x86_64.whl").write_bytes(rng.bytes(10_000))
    (folder / "tiny-2.0-py3-none-any.whl").write_bytes(rng.bytes(300))
    (folder / "exact-3.0-py3-none-any.whl").write_bytes(rng.bytes(4_000))
    return folder


def test_pieces_are_at_most_the_limit_and_join_back_into_the_same_wheels(wheels, tmp_path):
    pieces = tmp_path / "pieces"
    written = split(wheels, pieces, max_bytes=4_000)
    big = "big-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    assert sorted(p.name for p in pieces.glob(f"{big}.*")) == [f"{big}.{i:03d}" for i in range(3)]
    assert {p.name for p in (pieces / SMALL).iterdir()} == {
        "tiny-2.0-py3-none-any.whl",
        "exact-3.0-py3-none-any.whl",
    }
    assert max(p.stat().st_size for p in written) <= 4_000
    listed = (pieces / PIECE_SUMS).read_text().splitlines()
    assert len(listed) == len(written) == 5
    for folder, sums in ((pieces, PIECE_SUMS), (wheels, WHEEL_SUMS)):  # sha256sum reads them
        done = subprocess.run(["sha256sum", "--check", sums], cwd=folder, capture_output=True)
        assert done.returncode == 0, done.stdout
    joined = join(pieces, tmp_path / "joined")
    assert sorted(p.name for p in joined) == sorted(p.name for p in wheels.glob("*.whl"))
    for path in joined:
        assert path.read_bytes() == (wheels / path.name).read_bytes()


def test_split_twice_leaves_the_same_pieces_and_no_stale_ones(wheels, tmp_path):
    pieces = tmp_path / "pieces"
    split(wheels, pieces, max_bytes=1_000)
    first = {p.relative_to(pieces): p.read_bytes() for p in pieces.rglob("*") if p.is_file()}
    split(wheels, pieces, max_bytes=4_000)
    split(wheels, pieces, max_bytes=1_000)
    again = {p.relative_to(pieces): p.read_bytes() for p in pieces.rglob("*") if p.is_file()}
    assert again == first


def test_a_missing_or_altered_piece_stops_the_join_naming_it(wheels, tmp_path):
    pieces = tmp_path / "pieces"
    split(wheels, pieces, max_bytes=4_000)
    big = next(pieces.glob("big-*.001"))
    data = bytearray(big.read_bytes())
    data[7] ^= 1
    big.write_bytes(bytes(data))
    with pytest.raises(PieceError, match=r"\.001: altered in transfer"):
        join(pieces, tmp_path / "joined")
    big.unlink()
    with pytest.raises(PieceError, match=r"\.001: missing"):
        join(pieces, tmp_path / "joined")


def test_the_command_line_splits_and_joins(wheels, tmp_path):
    script = [sys.executable, str(ROOT / "scripts" / "gpu_pieces.py")]
    pieces, joined = tmp_path / "pieces", tmp_path / "joined"
    cut = subprocess.run([*script, "split", str(wheels), str(pieces), "--max-bytes", "3000"])
    assert cut.returncode == 0
    glued = subprocess.run([*script, "join", str(pieces), str(joined)], capture_output=True)
    assert glued.returncode == 0 and glued.stdout.count(b"joined and checked") == 3
    (pieces / PIECE_SUMS).unlink()
    refused = subprocess.run([*script, "join", str(pieces), str(joined)], capture_output=True)
    assert refused.returncode == 1 and b"pieces.sha256: missing" in refused.stderr


def test_device_memory_is_unknown_where_nvidia_smi_cannot_say_or_does_not_list_us(
    tmp_path, monkeypatch
):
    """ "[N/A]" (a GPU in a virtual machine) and a process nvidia-smi does not list read as
    unknown (None), never as 0 MB and never as a crash after the timing."""
    from scripts.bench import device_memory_mb

    fake = tmp_path / "nvidia-smi"
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    for listing, expected in (
        (f"{os.getpid()}, [N/A]", None),
        ("1, 300 MiB", None),
        (f"1, 300 MiB\n{os.getpid()}, 512 MiB", 512.0),
    ):
        fake.write_text(f"#!/bin/sh\nprintf '{listing}\\n'\n")
        fake.chmod(0o755)
        assert device_memory_mb() == expected


def test_bench_rows_are_named_and_none_that_could_run_starts_after_the_stop_time(
    small_model_dir, tmp_path
):
    from scripts.bench import main, row_names

    assert row_names("ORT CPU fp32, ORT CUDA fp16") == ["ORT CPU fp32", "ORT CUDA fp16"]
    with pytest.raises(argparse.ArgumentTypeError, match="no rows \\['ORT TPU'\\]"):
        row_names("ORT CPU fp32,ORT TPU")
    out = tmp_path / "bench.json"
    argv = ["--model-dir", str(small_model_dir), "--sections", "backends", "--json", str(out)]
    rows = "ORT CPU fp32,ORT CPU int8,PyTorch eager CPU fp32"
    assert main([*argv, "--rows", rows, "--stop-at", "0"]) == 0
    assert json.loads(out.read_text())["backends"] == {
        "rows": {},
        "skipped": {
            "ORT CPU fp32": "not run (time limit)",
            "ORT CPU int8": "no int8 graphs: run export/quantize.py",
            "PyTorch eager CPU fp32": "not run (time limit)",
        },
    }


@pytest.mark.slow
def test_gpu_check_on_a_cpu_says_no_gpu_and_writes_the_table_with_its_cpu_rows(
    small_fp16_dir, tmp_path
):
    """The whole script on this machine, the small model, a short limit: exit 0 within the
    limit, "no GPU", each CPU row measured (the reference's cosine to itself is 1) or
    stopped by the limit on a loaded machine (never failed), every GPU row "not run (no
    GPU)", and the logs."""
    out, limit = tmp_path / "out", 240
    command = ["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(out), "--limit", str(limit)]
    command += ["--model-dir", str(small_fp16_dir), "--quick"]
    started = time.monotonic()
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:]
    assert time.monotonic() - started < limit + 20
    assert "gpu_check: no GPU" in done.stdout
    table = (out / "table.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith(("| PyTorch", "| ORT"))]
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines}
    for name in ("PyTorch eager CPU fp32", "ORT CPU fp32"):
        cells = rows[name].split(" | ")
        assert cells[1] == "stopped at the time limit" or float(cells[1]) > 0, rows[name]
    if "stopped" not in rows["PyTorch eager CPU fp32"]:
        assert rows["PyTorch eager CPU fp32"].endswith("| 1.000000 | 1.000000 |")
    for name in (
        "PyTorch eager CUDA fp32",
        "PyTorch eager CUDA fp16 autocast",
        "ORT CUDA fp32 (cuDNN search HEURISTIC)",
        "ORT CUDA fp16 (cuDNN search EXHAUSTIVE)",
    ):
        assert rows[name].startswith(f"| {name} | not run (no GPU) |")
    assert {"gpu_check.log", "tests.log", "bench.json"} <= {p.name for p in out.iterdir()}
