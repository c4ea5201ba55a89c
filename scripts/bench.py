"""Measure the runtime against the PyTorch reference, in one run, on the same weights and inputs.

    python scripts/bench.py --model-dir models/demo [--threads 2] [--json bench.json]
                            [--sections cpu,backends,catalog] [--batches 1,16,64]
                            [--source DEST=PATH ...]
    python scripts/bench.py --markdown [bench.json ...]   # the tables of earlier runs

Works on a model folder of any family. The reference rows load the family's PyTorch
reference from the files the folder was exported from: a ``--demo`` folder keeps them in its
``checkpoint/``; for another folder name them with ``--source``, one per ``to_onnx.py``
option by its ``dest`` (``--source checkpoint=run/best_model.pth.tar --source config=…``).
Without them (or with other weights than the manifest's) those rows are skipped, with why.

Five sections, each a markdown table or a line, all of it written to JSON as well:
- cpu: the reference against onnxruntime fp32 and INT8 on this CPU, timed in turns in one
  process (medians; ratios are reference time / row time), peak RSS of a 60-minute track
  (``--memory-minutes``), and INT8's accuracy against fp32.
- backends: every row of scripts/bench_rows.py this machine can run (the others are listed
  with the reason), each in a fresh process: audio windows/s at each batch, text queries/s
  at batch 1 and 64, p50/p99 latency of one query and of one 30-s track, peak host and
  device memory, and the cosine of its embeddings to the CPU reference's.
- index: ``ttmr index`` on --index-files synthetic MP3s of --index-seconds (decoding and
  resampling included) against the same profile's graphs alone (bench_index.py); with
  --index-windows N, ``index --windows N`` against every window on 10- and 60-minute mixes.
- serve: ``ttmr serve`` in its own process: text queries/s of 1 client against 32 concurrent
  clients, and 8 concurrent audio uploads against ``embed_audio`` in process (bench_serve.py).
- catalog (no model): search in a synthetic catalog of --catalog-rows 128-d rows with the
  ANN index, p50/p99 ms per query and recall@10 against exact search (bench_catalog.py).

``--markdown`` prints the documentation's performance tables from bench.json files (one per
model family), each captioned with its machine, CPU flags, date and library versions.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

if not __package__:  # run as a file (python scripts/bench.py): find the package scripts
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np

from runtime.embedder import BATCH_SIZE
from runtime.engines.cpu import describe_cpu
from runtime.manifest import Manifest, read_manifest
from scripts.bench_catalog import catalog_section, catalog_table
from scripts.bench_index import index_lines, index_section, windows_lines, windows_section
from scripts.bench_peaks import gemm_peaks
from scripts.bench_rows import (
    REFERENCE,
    ROWS,
    WHOLE_GRAPH_BF16,
    Row,
    build,
    model_windows,
    row_embedder,
    unavailable,
)
from scripts.bench_serve import serve_lines, serve_section

# Before each timed call: the previous row's idle threads (onnxruntime's spinning pool,
# torch's OpenMP) would otherwise still be busy-waiting on the cores the next row needs.
SETTLE_SECONDS = 0.1
CPU_PLACES = ("torch-cpu", "cpu", "openvino", "openvino-whole")
# The rows whose accuracy against exact fp32 is printed.
LOWER_PRECISION_ROWS = ("ORT CPU int8", "OpenVINO CPU int8", "OpenVINO CPU bf16", WHOLE_GRAPH_BF16)
QUERY = "a calm solo piano piece in D major with soft strings"  # its token count is printed
_WORDS = (
    "calm energetic dark bright piano guitar drums strings synth jazz rock techno folk slow fast"
)


def interleaved_medians(work: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each callable, timed in turns (one of each per round), so that the
    load of a noisy machine falls on every row alike and the ratios stay fair."""
    for run in work.values():
        run()  # warm-up: first-call allocations and lazy session creation are not measured
    times: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(repeats):
        for name, run in work.items():
            time.sleep(SETTLE_SECONDS)
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def queries(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = _WORDS.split()
    return [" ".join(rng.choice(words, size=int(rng.integers(4, 20)))) for _ in range(count)]


def measure(rows: dict[str, Row], track: np.ndarray, windows: int, texts, repeats) -> dict:
    """The CPU section's three timings of every row: audio per window (a whole track),
    one query, a batch of queries."""
    audio = interleaved_medians(
        {name: partial(row.track, track) for name, row in rows.items()}, repeats
    )
    one = interleaved_medians(
        {name: partial(row.texts, [QUERY]) for name, row in rows.items()}, repeats * 10
    )
    batch = interleaved_medians(
        {name: partial(row.texts, texts) for name, row in rows.items()}, repeats
    )
    return {
        name: {
            "audio_ms_per_window": 1e3 * audio[name] / windows,
            "text_ms_one_query": 1e3 * one[name],
            "text_ms_per_query_batched": 1e3 * batch[name] / len(texts),
        }
        for name in rows
    }


def accuracy_to_fp32(
    model_dir: Path, name: str, tracks: int, query_count: int, threads: int
) -> dict:
    """Cosine of runtime row ``name``'s joint embeddings (int8, bf16) to ORT CPU fp32's, and
    top-10 agreement of text→track retrieval on a synthetic catalog (of one-window tracks at
    the model's rate)."""
    from export.synthetic import random_track

    audio, seconds = read_manifest(model_dir).audio, window_seconds(model_dir)
    catalog = [random_track(seed, seconds, audio.sample_rate) for seed in range(tracks)]
    texts = queries(query_count, seed=1)
    results = {}
    for each in ("ORT CPU fp32", name):
        embedder = row_embedder(each, model_dir, threads, BATCH_SIZE)
        results[each] = (
            embedder.embed_audio(catalog, sample_rate=audio.sample_rate, normalize=True),
            embedder.embed_text(texts, normalize=True),
        )
    (audio32, text32), (audio8, text8) = results.values()
    top = 10

    def top_k(text, audio):
        return np.argsort(-(text @ audio.T), axis=1)[:, :top]

    overlap = [
        len(set(a) & set(b)) / top
        for a, b in zip(top_k(text32, audio32), top_k(text8, audio8), strict=True)
    ]
    return {
        "audio_cosine_min": float((audio32 * audio8).sum(1).min()),
        "audio_cosine_mean": float((audio32 * audio8).sum(1).mean()),
        "text_cosine_min": float((text32 * text8).sum(1).min()),
        "top10_agreement": float(np.mean(overlap)),
        "tracks": tracks,
        "queries": query_count,
    }


def window_seconds(model_dir: Path) -> float:
    """Seconds of audio in one of the model's windows."""
    audio = read_manifest(model_dir).audio
    return audio.window_samples / audio.sample_rate


def write_long_track(path: Path, minutes: float, rate: int) -> None:
    """A 16-bit WAV of ``minutes`` of synthetic music (one minute repeated), written in
    blocks, so that writing it costs the caller little memory."""
    import soundfile as sf

    from export.synthetic import random_track

    minute = random_track(0, 60.0, rate)
    frames = round(minutes * 60 * rate)
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as out:
        for start in range(0, frames, len(minute)):
            out.write(minute[: frames - start])


def peak_memory_mb(model_dir: Path, precision: str, threads: int, minutes: float = 60) -> float:
    """Peak resident memory of a fresh process that loads the model, embeds one track of
    ``minutes`` at the model's rate (a WAV file, with the Embedder's default batch size) and
    a sentence.

    Read from VmHWM, the high-water mark of the process's own memory: ``ru_maxrss`` would
    carry over the parent's size at fork (Linux keeps it across exec).
    """
    with tempfile.TemporaryDirectory() as scratch:
        track = Path(scratch) / "long.wav"
        write_long_track(track, minutes, read_manifest(model_dir).audio.sample_rate)
        script = f"""
from pathlib import Path
from runtime import Embedder
cpu = ["CPUExecutionProvider"]
e = Embedder({str(model_dir)!r}, providers=cpu, threads={threads}, precision={precision!r})
e.embed_audio([{str(track)!r}])
e.embed_text(["a calm piano piece"])
print(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
"""
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"memory probe failed: {done.stderr.strip()[-500:]}")
    return int(done.stdout.split()[-1]) / 1024


def query_tokens(model_dir: Path) -> int:
    """How many tokens the model's own tokenizer makes of ``QUERY`` (with ``<s>``, ``</s>``)."""
    from runtime.text import TextBatcher

    batcher = TextBatcher.from_manifest(model_dir, read_manifest(model_dir).text)
    _, feed = next(batcher.batches([QUERY], 1))
    return feed["input_ids"].shape[1]


def text_matmul_floor(model_dir: Path, tokens: int, threads: int, repeats: int) -> dict:
    """The fp32 text tower's weight MatMuls alone, in a graph of nothing else, on ``tokens``
    rows: the part of one query that tuning the graph around them cannot remove."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from runtime.engines.onnxruntime import session_options

    model = onnx.load(str(model_dir / read_manifest(model_dir).text.file))
    weights = {init.name: init for init in model.graph.initializer if len(init.dims) == 2}
    matrices = [
        weights[n.input[1]]
        for n in model.graph.node
        if n.op_type == "MatMul" and n.input[1] in weights
    ]
    sizes = sorted({matrix.dims[0] for matrix in matrices})
    nodes = [
        helper.make_node("MatMul", [f"x{matrix.dims[0]}", matrix.name], [f"y{i}"])
        for i, matrix in enumerate(matrices)
    ]
    value = partial(helper.make_tensor_value_info, elem_type=TensorProto.FLOAT)
    graph = helper.make_graph(
        nodes,
        "text_weight_matmuls",
        [value(f"x{k}", shape=[tokens, k]) for k in sizes],
        [value(node.output[0], shape=None) for node in nodes],
        matrices,
    )
    floor = helper.make_model(graph, opset_imports=model.opset_import)
    session = ort.InferenceSession(
        floor.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    feed = {f"x{k}": rng.standard_normal((tokens, k), np.float32) for k in sizes}
    seconds = interleaved_medians({"matmuls": partial(session.run, None, feed)}, repeats)
    flops = 2 * tokens * sum(int(np.prod(matrix.dims)) for matrix in matrices)
    return {"matmuls": len(matrices), "ms": 1e3 * seconds["matmuls"], "gflops": flops / 1e9}


def reference_flops(model_dir: Path, given: dict | None) -> dict[str, float] | None:
    """FLOPs of one window and of one query in the reference (PyTorch's FlopCounterMode);
    None where the reference cannot be loaded."""
    from scripts.bench_rows import load_reference, reference_problem

    if reference_problem(model_dir, given):
        return None
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = load_reference(model_dir, given).reference
    window = torch.zeros(1, read_manifest(model_dir).audio.preprocessing.window_samples)
    tokens = model.tokenize([QUERY])
    counted = {}
    for part, run in {
        "window": lambda: model.audio_encode(window),
        "query": lambda: model.text_encode_ids(tokens["input_ids"], tokens["attention_mask"]),
    }.items():
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            run()
        counted[part] = float(counter.get_total_flops())
    return counted


def onnx_flops(path: Path, input_shape: list[int]) -> float:
    """FLOPs of an ONNX graph's Conv, MatMul and Gemm nodes (2 per multiply-add) with every
    input of ``input_shape``, from ONNX's shape inference: what the exported graph does,
    which can be less than the reference (TTMR++'s one-query attention pool)."""
    import onnx

    model = onnx.load(str(path))
    fixed = [(value, input_shape) for value in model.graph.input]
    fixed += [(value, input_shape[:1]) for value in model.graph.output]  # the batch
    for value, shape in fixed:
        for dim, size in zip(value.type.tensor_type.shape.dim, shape, strict=False):
            dim.ClearField("dim_param")
            dim.dim_value = size
    del model.graph.value_info[:]
    graph = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        shapes[value.name] = [dim.dim_value for dim in value.type.tensor_type.shape.dim]
    total = 0
    for node in graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        first, weight = shapes[node.input[0]], shapes[node.input[1]]
        if node.op_type == "Conv":
            inner = int(np.prod(weight[1:]))
        elif node.op_type == "Gemm":
            transposed = any(a.name == "transB" and a.i for a in node.attribute)
            inner = weight[1] if transposed else weight[0]
        else:
            inner = first[-1]
        total += 2 * int(np.prod(shapes[node.output[0]])) * inner
    return float(total)


def graph_flops(model_dir: Path, tokens: int) -> dict[str, float]:
    """FLOPs of one window in the fp32 audio graph and of one ``tokens``-long query in the
    fp32 text graph."""
    files = read_manifest(model_dir).graph_files("fp32")
    return {
        "window": onnx_flops(model_dir / files["audio"], [1]),
        "query": onnx_flops(model_dir / files["text"], [1, tokens]),
    }


def peak_share(rows: dict, flops: dict, peaks: dict) -> list[str]:
    """Each row's achieved GFLOP/s (audio per window, one query) and its share of the peak
    of the row's precision (int8 rows: of the int8 peak, though their float parts are not);
    none where that peak is None (no units for it). ``flops``: the reference's (for the
    PyTorch rows; None where it cannot be loaded) and the exported graphs'."""
    lines = []
    for name, row in rows.items():
        work = flops["reference"] if ROWS[name].place.startswith("torch") else flops["graphs"]
        if work is None:
            continue
        precision = next((p for p in ("bf16", "int8") if p in name), "fp32")
        peak = peaks[precision]["gflops"]
        cells = []
        for part, key in (("window", "audio_ms_per_window"), ("query", "text_ms_one_query")):
            rate = work[part] / (row[key] / 1e3) / 1e9
            share = f" ({100 * rate / peak:.0f}% of {precision} peak)" if peak else ""
            cells.append(f"{part} {rate:.0f} GFLOP/s{share}")
        lines.append(f"{name}: " + ", ".join(cells))
    return lines


def cpu_table(rows: dict, reference: dict | None) -> str:
    """``reference``: the reference row's timings, or None (its ratios are then "–")."""
    lines = [
        "| row | audio ms/window | × ref | text ms, 1 query | × ref "
        "| text ms/query, batch 32 | × ref |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        cells = []
        for key in ("audio_ms_per_window", "text_ms_one_query", "text_ms_per_query_batched"):
            ratio = "–" if reference is None else f"{reference[key] / row[key]:.2f}×"
            cells += [f"{row[key]:.1f}", ratio]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_section(args: argparse.Namespace, manifest: Manifest) -> dict:
    """The reference, ORT CPU fp32 and int8 in one process, timed in turns."""
    from export.synthetic import random_track

    seconds = window_seconds(args.model_dir) * args.windows
    track = random_track(7, seconds, manifest.audio.sample_rate)
    names = [name for name, spec in ROWS.items() if spec.place in CPU_PLACES]
    skipped = {
        name: why for name in names if (why := unavailable(name, args.model_dir, args.source))
    }
    rows = {}
    for name in (name for name in names if name not in skipped):
        try:  # the Embedder's default batch size: what a user gets (the reference takes all)
            rows[name] = build(name, args.model_dir, args.threads, BATCH_SIZE, args.source)
        except ValueError as err:  # the reference's files are not this folder's weights
            skipped[name] = str(err)
    timings = measure(rows, track, args.windows, queries(32, seed=0), args.repeats)
    print(cpu_table(timings, timings.get(REFERENCE)))
    peaks = gemm_peaks(args.threads)
    print(
        "measured GEMM peak, GFLOP/s (the best engine): "
        + ", ".join(
            f"{p} {v['gflops']:.0f} ({v['engine']})" if v["gflops"] else f"{p} – (no units)"
            for p, v in peaks.items()
        )
    )
    tokens = query_tokens(args.model_dir)
    flops = {
        "reference": reference_flops(args.model_dir, args.source),
        "graphs": graph_flops(args.model_dir, tokens),
    }
    for who, work in flops.items():
        if work:
            print(
                f"FLOPs, {who}: {work['window'] / 1e9:.1f} G per window, "
                f"{work['query'] / 1e9:.2f} G per query"
            )
    print("\n".join(peak_share(timings, flops, peaks)))
    floor = text_matmul_floor(args.model_dir, tokens, args.threads, args.repeats * 10)
    result = {
        "rows": timings,
        "skipped": skipped,
        "query_tokens": tokens,
        "text_matmuls": floor,
        "gemm_peaks": peaks,
        "flops": flops,
        "vs_fp32": {},
    }
    print(
        f"one query = {tokens} tokens; the fp32 text tower's {floor['matmuls']} weight MatMuls "
        f"alone (a graph of nothing else): {floor['ms']:.1f} ms, "
        f"{1e3 * floor['gflops'] / floor['ms']:.0f} GFLOP/s"
    )
    for precision in ("fp32", "int8"):
        if f"ORT CPU {precision}" in rows:
            minutes = args.memory_minutes
            mb = peak_memory_mb(args.model_dir, precision, args.threads, minutes)
            result[f"peak_rss_mb_{minutes:g}min_track_{precision}"] = mb
            print(f"peak RSS, load + embed a {minutes:g}-minute track ({precision}): {mb:.0f} MB")
    for name in (name for name in LOWER_PRECISION_ROWS if name in rows):
        accuracy = accuracy_to_fp32(args.model_dir, name, args.tracks, args.queries, args.threads)
        result["vs_fp32"][name] = accuracy
        print(
            f"{name} vs ORT fp32: audio cosine min {accuracy['audio_cosine_min']:.5f} "
            f"(mean {accuracy['audio_cosine_mean']:.5f}), text cosine min "
            f"{accuracy['text_cosine_min']:.5f}, "
            f"top-10 agreement {accuracy['top10_agreement']:.3f} "
            f"({accuracy['tracks']} tracks, {accuracy['queries']} queries)"
        )
    return result


def timed(run: Callable[[], object], min_runs: int, min_seconds: float) -> list[float]:
    """Seconds of each call after a warm-up call: at least ``min_runs`` calls, and more
    until ``min_seconds`` have passed (100 at most)."""
    run()
    times: list[float] = []
    while len(times) < min_runs or (sum(times) < min_seconds and len(times) < 100):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def device_memory_mb() -> float | None:
    """GPU memory this process holds (allocators keep their peak), from nvidia-smi; None
    where nvidia-smi does not list the process or cannot say ("[N/A]" in a virtual machine)."""
    query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"]
    try:
        listing = subprocess.run(query, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in listing.splitlines():
        pid, _, used = line.partition(",")
        if pid.strip() == str(os.getpid()):
            try:
                return float(used.split()[0])
            except (IndexError, ValueError):
                return None
    return None


def bench_inputs(model_dir: Path, batches: list[int]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The same windows (of one track, preprocessed as the manifest says), sentences and
    30-s track (at the model's rate) for every row."""
    from export.synthetic import random_track

    rate = read_manifest(model_dir).audio.sample_rate
    long = random_track(7, window_seconds(model_dir) * max(batches), rate)
    return model_windows(model_dir, long), queries(64, seed=0), random_track(9, 30.0, rate)


def row_process(args: argparse.Namespace) -> int:
    """``--row NAME``: time one row in this fresh process; write its JSON and embeddings."""
    batches = [int(b) for b in args.batches.split(",")]
    windows, texts, track = bench_inputs(args.model_dir, batches)
    row = build(args.row, args.model_dir, args.threads, max(64, *batches), args.source)
    result = {}
    for batch in batches:
        seconds = statistics.median(timed(partial(row.windows, windows[:batch]), 3, 2.0))
        result[f"audio_windows_per_s_batch_{batch}"] = batch / seconds
    for batch in (1, 64):
        seconds = statistics.median(timed(partial(row.texts, texts[:batch]), 3, 2.0))
        result[f"text_queries_per_s_batch_{batch}"] = batch / seconds
    for what, run, runs in (
        ("query", partial(row.texts, [QUERY]), args.latency_runs),
        ("track_30s", partial(row.track, track), max(10, args.latency_runs // 5)),
    ):
        ms = 1e3 * np.array(timed(run, runs, 0.0))
        result[f"{what}_ms_p50"], result[f"{what}_ms_p99"] = np.percentile(ms, [50, 99])
    result["host_peak_mb"] = (
        int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024
    )
    result["device_mb"] = device_memory_mb()
    np.savez(args.out / "embeddings.npz", windows=row.windows(windows[:16]), texts=row.texts(texts))
    (args.out / "result.json").write_text(json.dumps(result))
    return 0


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).min())


def backends_section(args: argparse.Namespace) -> dict:
    """Every row this machine can run (of ``--rows``), each in a fresh process (so memory is
    its own); a row that would start after ``--stop-at`` is not run, one still running
    then is stopped, and the rows measured before are kept."""
    rows, skipped, embeddings = {}, {}, {}

    def left() -> float | None:
        return None if args.stop_at is None else args.stop_at - time.time()

    for name in args.rows or ROWS:
        reason = unavailable(name, args.model_dir, args.source)
        if reason:
            skipped[name] = reason
            continue
        if left() is not None and left() <= 0:
            skipped[name] = "not run (time limit)"
            continue
        print(f"  {name} …", flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            command = [sys.executable, __file__, "--row", name, "--out", scratch]
            command += ["--model-dir", str(args.model_dir), "--threads", str(args.threads)]
            command += ["--batches", args.batches, "--latency-runs", str(args.latency_runs)]
            for dest, path in args.source.items():
                command += ["--source", f"{dest}={path}"]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=left())
            except subprocess.TimeoutExpired:
                skipped[name] = "stopped at the time limit"
                continue
            if done.returncode:
                said = done.stderr.strip().splitlines() or ["(nothing on stderr)"]
                print("\n".join(f"    {line}" for line in said[-30:]), flush=True)
                skipped[name] = f"failed: {said[-1]}"
                continue
            rows[name] = json.loads((Path(scratch) / "result.json").read_text())
            with np.load(Path(scratch) / "embeddings.npz") as saved:
                embeddings[name] = dict(saved)
    for name, row in rows.items():
        for part in ("windows", "texts"):
            row[f"cosine_to_reference_{part}"] = (
                cosine_min(embeddings[REFERENCE][part], embeddings[name][part])
                if REFERENCE in embeddings
                else None
            )
    print(backends_table(rows, args.batches.split(",")))
    for line in speedups(rows, args.batches.split(",")[-1]):
        print(line)
    return {"rows": rows, "skipped": skipped}


def backends_table(rows: dict, batches: list[str]) -> str:
    head = [f"audio win/s @{b}" for b in batches] + ["text q/s @1", "text q/s @64"]
    head += ["1 query ms p50/p99", "30-s track ms p50/p99", "host MB", "GPU MB"]
    head += ["cos audio", "cos text"]
    lines = ["| row | " + " | ".join(head) + " |", "|---" + "|---:" * len(head) + "|"]
    for name, row in rows.items():
        cells = [f"{row[f'audio_windows_per_s_batch_{b}']:.1f}" for b in batches]
        cells += [f"{row[f'text_queries_per_s_batch_{b}']:.1f}" for b in (1, 64)]
        for what in ("query", "track_30s"):
            cells.append(f"{row[f'{what}_ms_p50']:.1f} / {row[f'{what}_ms_p99']:.1f}")
        device = row["device_mb"]
        cells += [f"{row['host_peak_mb']:.0f}", "–" if device is None else f"{device:.0f}"]
        for part in ("windows", "texts"):
            cosine = row[f"cosine_to_reference_{part}"]
            cells.append("–" if cosine is None else f"{cosine:.6f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speedups(rows: dict, batch: str) -> list[str]:
    """Audio throughput at the largest batch against the eager rows on the same device."""
    key = f"audio_windows_per_s_batch_{batch}"
    eager = {
        "cpu": [REFERENCE],
        "cuda": ["PyTorch eager CUDA fp32", "PyTorch eager CUDA fp16 autocast"],
    }
    lines = []
    for name, row in rows.items():
        if name.startswith("PyTorch"):
            continue
        device = "cpu" if " CPU " in name else "cuda"
        ratios = [f"{row[key] / rows[e][key]:.2f}× {e}" for e in eager[device] if e in rows]
        if ratios:
            lines.append(f"audio @{batch}: {name} = " + ", ".join(ratios))
    return lines


# The libraries whose versions a run records, for the tables' captions.
VERSIONED = ("numpy", "onnxruntime", "openvino", "torch", "lancedb")
SONG_SECONDS = 240  # the lead table's songs are 4 minutes long


def library_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def caption(result: dict, section: dict | None = None) -> str:
    """What a table was measured on: the run's model, machine (CPU and flags), date and
    versions; a section that carries its own date or machine (merged runs) says so."""
    section = section or {}
    # A section of another run (its own date) does not share this run's versions.
    known = section.get("versions", {}) if "date" in section else result.get("versions", {})
    versions = ", ".join(f"{k} {v}" for k, v in known.items())
    model = f"model {result.get('model')}" if result.get("family") else "no model"
    parts = [
        model + (" (random weights)" if result.get("random_weights") else ""),
        section.get("machine", result.get("machine", "machine not recorded")),
        section.get("date", result.get("date", "date not recorded")),
    ]
    note = [result["source"]] if result.get("source") else []  # e.g. transcribed, not written
    return "*" + "; ".join(parts + ([versions] if versions else []) + note) + "*"


def best_profile(result: dict) -> tuple[str, dict] | None:
    """The fastest runtime row of the cpu section on audio (not a PyTorch row)."""
    rows = result.get("cpu", {}).get("rows", {})
    ours = {name: row for name, row in rows.items() if not name.startswith("PyTorch")}
    if not ours:
        return None
    name = min(ours, key=lambda n: ours[n]["audio_ms_per_window"])
    return name, ours[name]


def songs_per_hour(index: dict) -> float | None:
    """``ttmr index``'s sustained rate (decoding included, start-up left out) in songs of
    SONG_SECONDS per hour: windows/s times the audio seconds per window."""
    rate = index.get("index_sustained_windows_per_s") or index.get("index_windows_per_s")
    if not rate:
        return None
    audio_seconds_per_window = index["files"] * index["seconds_per_file"] / index["windows"]
    return rate * audio_seconds_per_window * 3600 / SONG_SECONDS


def lead_table(results: list[dict]) -> str:
    """What users feel, one row per run: the best profile, its ``ttmr index`` rate, one
    query's latency and its ratios to the PyTorch reference."""
    lines = [
        f"| family | best profile | `ttmr index`, {SONG_SECONDS // 60}-min songs/hour "
        "| one query ms | audio × PyTorch | query × PyTorch |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for result in results:
        best = best_profile(result)
        if best is None:
            continue
        name, row = best
        reference = result["cpu"]["rows"].get(REFERENCE)
        songs = songs_per_hour(result["index"]) if "index" in result else None
        cells = [
            result.get("family") or "?",
            name,
            "–" if songs is None else f"{songs:,.0f}",
            f"{row['text_ms_one_query']:.1f}",
        ]
        for key in ("audio_ms_per_window", "text_ms_one_query"):
            cells.append("–" if reference is None else f"{reference[key] / row[key]:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def accuracy_table(vs_fp32: dict) -> str:
    lines = [
        "| profile | audio cosine min (mean) | text cosine min | top-10 agreement |",
        "|---|---:|---:|---:|",
    ]
    for name, a in vs_fp32.items():
        lines.append(
            f"| {name} | {a['audio_cosine_min']:.5f} ({a['audio_cosine_mean']:.5f}) "
            f"| {a['text_cosine_min']:.5f} | {a['top10_agreement']:.3f} |"
        )
    return "\n".join(lines)


def markdown_report(results: list[dict]) -> str:
    """The performance page's tables from bench.json results: the lead table, search over
    the catalog, then each run's engine tables, each under its caption."""
    out = ["## What users feel", "", lead_table(results), ""]
    out += [caption(r) for r in results if best_profile(r)] + [""]
    for result in results:
        if "catalog" in result:
            c = result["catalog"]
            out += [
                f"Search over {c['rows']:,} rows ({c['width']}-d, ANN index): p50 "
                f"{c['search_ms_p50']:.1f} ms, p99 {c['search_ms_p99']:.1f} ms, recall@10 "
                f"{c['recall_at_10']:.3f}.",
                "",
                caption(result, c),
                "",
            ]
    for result in results:
        title = result.get("family") or "catalog (no model)"
        out += [f"## {title}", "", caption(result), ""]
        if "cpu" in result:
            cpu = result["cpu"]
            out += [
                "### CPU, in one process",
                "",
                cpu_table(cpu["rows"], cpu["rows"].get(REFERENCE)),
                "",
            ]
            if cpu.get("vs_fp32"):
                out += ["Accuracy against fp32:", "", accuracy_table(cpu["vs_fp32"]), ""]
        if "backends" in result and result["backends"]["rows"]:
            rows = result["backends"]["rows"]
            first = next(iter(rows.values()))
            prefix = "audio_windows_per_s_batch_"
            batches = [key[len(prefix) :] for key in first if key.startswith(prefix)]
            out += ["### Each row in its own process", "", backends_table(rows, batches), ""]
        if "index" in result:
            out += ["### `ttmr index`", "", index_lines(result["index"]), ""]
        if "catalog" in result:
            out += ["### Catalog search", "", catalog_table(result["catalog"]), ""]
        for section in ("cpu", "backends"):
            for row, why in result.get(section, {}).get("skipped", {}).items():
                out.append(f"- skipped ({section}): {row}: {why}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def row_names(text: str) -> list[str]:
    """``--rows A,B`` → the row names, each one of ``ROWS``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ROWS]
    if unknown:
        raise argparse.ArgumentTypeError(f"no rows {unknown}; the rows are {list(ROWS)}")
    return names


def source_file(text: str) -> tuple[str, Path]:
    """``--source DEST=PATH`` → ``(dest, path)``."""
    dest, sep, path = text.partition("=")
    if not (sep and dest and path):
        raise argparse.ArgumentTypeError(f"expected DEST=PATH (checkpoint=run/x.pth), got {text!r}")
    return dest.replace("-", "_"), Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models/demo"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--sections", default="cpu,backends", help="cpu, backends, index, serve, catalog"
    )
    parser.add_argument("--index-files", type=int, default=40, help="index: MP3 files")
    parser.add_argument("--index-seconds", type=float, default=30.0, help="index: their length")
    parser.add_argument(
        "--index-windows",
        type=int,
        default=0,
        help="index: also time 'index --windows N' on 10- and 60-minute mixes (0: not)",
    )
    parser.add_argument("--precision", default="fp32", help="index, serve: the profile's precision")
    parser.add_argument("--backend", default="auto", help="index, serve: the profile's backend")
    parser.add_argument("--windows", type=int, default=4, help="cpu: the model's windows per track")
    parser.add_argument(
        "--source",
        type=source_file,
        action="append",
        default=[],
        metavar="DEST=PATH",
        help="a file the reference is loaded from, by to_onnx.py option dest (default: a demo's)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="cpu: timed rounds")
    parser.add_argument(
        "--memory-minutes", type=float, default=60, help="cpu: the peak-RSS track's length"
    )
    parser.add_argument("--tracks", type=int, default=300, help="synthetic catalog size (accuracy)")
    parser.add_argument("--queries", type=int, default=300, help="text queries (accuracy)")
    parser.add_argument("--batches", default="1,16,64", help="backends: audio batch sizes")
    parser.add_argument("--latency-runs", type=int, default=100, help="backends: one-query runs")
    parser.add_argument(
        "--rows",
        type=row_names,
        help="backends: only these rows, comma-separated, in this order (default: every row)",
    )
    parser.add_argument(
        "--stop-at",
        type=float,
        help="backends: a time (seconds since the epoch) after which no row runs",
    )
    parser.add_argument("--catalog-rows", type=int, default=1_000_000, help="catalog: rows")
    parser.add_argument("--json", type=Path, default=Path("bench.json"))
    parser.add_argument(
        "--markdown",
        nargs="*",
        type=Path,
        metavar="BENCH_JSON",
        help="print these runs' tables as markdown (default: bench.json) and exit",
    )
    parser.add_argument("--row", choices=sorted(ROWS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.source = dict(args.source)
    if args.row:
        return row_process(args)
    if args.markdown is not None:
        files = args.markdown or [Path("bench.json")]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            parser.error(f"no bench results at {', '.join(missing)}: run the bench first")
        print(markdown_report([json.loads(f.read_text()) for f in files]), end="")
        return 0
    sections = args.sections.split(",")
    with_model = {"cpu", "backends", "index", "serve"} & set(sections)
    manifest = read_manifest(args.model_dir) if with_model else None
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{describe_cpu()}, {args.threads} threads",
        "model": str(args.model_dir),
        "family": manifest and manifest.family,
        "random_weights": manifest and manifest.random_weights,
        "versions": library_versions(),
    }
    if "cpu" in sections:
        print(f"CPU: {args.model_dir} on {result['machine']} …", flush=True)
        result["cpu"] = cpu_section(args, manifest)
    if "backends" in sections:
        print(f"Backends: {args.model_dir}, each row in its own process …", flush=True)
        result["backends"] = backends_section(args)
    if "index" in sections:
        print(f"Index: {args.model_dir} on {result['machine']} …", flush=True)
        result["index"] = index_section(
            args.model_dir,
            args.threads,
            args.precision,
            args.backend,
            args.index_files,
            args.index_seconds,
        )
        print(index_lines(result["index"]))
        if args.index_windows:
            profile = (args.model_dir, args.threads, args.precision, args.backend)
            result["index"]["windows_mode"] = windows_section(*profile, args.index_windows)
            print(windows_lines(result["index"]["windows_mode"]))
    if "serve" in sections:
        print(f"Serve: {args.model_dir} on {result['machine']} …", flush=True)
        texts = queries(192, seed=4)
        profile = (args.precision, args.backend)
        result["serve"] = serve_section(args.model_dir, args.threads, texts, *profile)
        print(serve_lines(result["serve"]))
    if "catalog" in sections:
        print(f"Catalog: {args.catalog_rows:,} synthetic rows on {describe_cpu()} …", flush=True)
        result["catalog"] = catalog_section(args.catalog_rows, queries=100)
        print(catalog_table(result["catalog"]))
    for section in ("cpu", "backends"):
        for row, why in result.get(section, {}).get("skipped", {}).items():
            print(f"skipped ({section}): {row}: {why}")
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
