"""Measure the runtime against the PyTorch reference, in one run, on the same weights and inputs.

    python scripts/bench.py --model-dir models/demo [--threads 2] [--json bench.json]

Prints a markdown table (medians of repeated runs, the rows timed in turns; ratios are
reference time / row time) and the INT8 accuracy against fp32, and writes everything to
JSON. Rows that cannot run on this machine are listed with the reason.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

# Before each timed call: the previous row's idle threads (onnxruntime's spinning pool,
# torch's OpenMP) would otherwise still be busy-waiting on the cores the next row needs.
SETTLE_SECONDS = 0.1
QUERY = "a calm solo piano piece in D major with soft strings"  # 16 tokens with <s> </s>
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


def measure(rows: dict[str, tuple[Callable, Callable]], windows: int, texts, repeats) -> dict:
    """The three timings of every row (``embed_track()``, ``embed_texts(list)``): audio per
    window, one query, a batch of queries."""
    audio = interleaved_medians({name: track for name, (track, _) in rows.items()}, repeats)
    one = interleaved_medians(
        {name: partial(embed, [QUERY]) for name, (_, embed) in rows.items()}, repeats * 10
    )
    batch = interleaved_medians(
        {name: partial(embed, texts) for name, (_, embed) in rows.items()}, repeats
    )
    return {
        name: {
            "audio_ms_per_window": 1e3 * audio[name] / windows,
            "text_ms_one_query": 1e3 * one[name],
            "text_ms_per_query_batched": 1e3 * batch[name] / len(texts),
        }
        for name in rows
    }


def reference_row(model_dir: Path, windows: np.ndarray, threads: int) -> tuple:
    import torch

    from export.reference import load_reference

    torch.set_num_threads(threads)
    ckpt = model_dir / "checkpoint"
    model = load_reference(ckpt / "ttmrpp.pth", ckpt / "ttmrpp.yaml", ckpt / "text_arch")
    audio = torch.from_numpy(windows)
    return partial(model.audio_encode, audio), model.text_encode


def cpu_embedder(model_dir: Path, precision: str, threads: int, **options):
    from runtime import Embedder

    cpu = ["CPUExecutionProvider"]
    return Embedder(model_dir, providers=cpu, threads=threads, precision=precision, **options)


def runtime_row(model_dir: Path, precision: str, track: np.ndarray, args) -> tuple:
    embedder = cpu_embedder(model_dir, precision, args.threads, batch_size=args.windows)
    return partial(embedder.embed_audio, [track], sample_rate=22050), embedder.embed_text


def int8_accuracy(model_dir: Path, tracks: int, query_count: int, threads: int) -> dict:
    """Cosine of INT8 to fp32 joint embeddings, and top-10 agreement of text→track retrieval
    on a synthetic catalog."""
    from export.synthetic import random_track

    catalog = [random_track(seed, 10.0) for seed in range(tracks)]
    texts = queries(query_count, seed=1)
    results = {}
    for precision in ("fp32", "int8"):
        embedder = cpu_embedder(model_dir, precision, threads)
        results[precision] = (
            embedder.embed_audio(catalog, sample_rate=22050, normalize=True),
            embedder.embed_text(texts, normalize=True),
        )
    (audio32, text32), (audio8, text8) = results["fp32"], results["int8"]
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


def peak_memory_mb(model_dir: Path, precision: str, threads: int) -> float:
    """Peak resident memory of a fresh process that loads the model and embeds a 3-min track.

    Read from VmHWM, the high-water mark of the process's own memory: ``ru_maxrss`` would
    carry over the parent's size at fork (Linux keeps it across exec).
    """
    script = f"""
from pathlib import Path
from export.synthetic import random_track
from runtime import Embedder
cpu = ["CPUExecutionProvider"]
e = Embedder({str(model_dir)!r}, providers=cpu, threads={threads}, precision={precision!r})
e.embed_audio([random_track(0, 180.0)], sample_rate=22050)
e.embed_text(["a calm piano piece"])
print(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"memory probe failed: {done.stderr.strip()[-500:]}")
    return int(done.stdout.split()[-1]) / 1024


def cuda_reason() -> str | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "no CUDAExecutionProvider in this onnxruntime (CPU build or no GPU)"
    return None


def table(rows: dict, reference: dict) -> str:
    lines = [
        "| row | audio ms/window | × ref | text ms, 1 query | × ref "
        "| text ms/query, batch 32 | × ref |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        cells = []
        for key in ("audio_ms_per_window", "text_ms_one_query", "text_ms_per_query_batched"):
            cells += [f"{row[key]:.1f}", f"{reference[key] / row[key]:.2f}×"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models/demo"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--windows", type=int, default=4, help="10-s windows per audio call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tracks", type=int, default=300, help="synthetic catalog size (accuracy)")
    parser.add_argument("--queries", type=int, default=300, help="text queries (accuracy)")
    parser.add_argument("--json", type=Path, default=Path("bench.json"))
    args = parser.parse_args(argv)
    from export.synthetic import random_track

    manifest = json.loads((args.model_dir / "manifest.json").read_text())
    track = random_track(7, 10.0 * args.windows)
    from export.hparams import HParams
    from export.reference import track_windows

    windows = track_windows(track, 22050, HParams.from_dict(manifest["hparams"]))
    texts = queries(32, seed=0)
    print(f"Benchmarking {args.model_dir} on {args.threads} threads …", flush=True)
    reference_name = "PyTorch eager (reference)"
    callables = {reference_name: reference_row(args.model_dir, windows, args.threads)}
    skipped = {}
    for precision in ("fp32", "int8"):
        if precision == "int8" and "int8" not in manifest:
            skipped["runtime int8"] = "no INT8 graphs: run export/quantize.py first"
            continue
        callables[f"runtime ORT CPU {precision}"] = runtime_row(
            args.model_dir, precision, track, args
        )
    rows = measure(callables, len(windows), texts, args.repeats)
    reference = rows[reference_name]
    reason = cuda_reason()
    if reason:
        for row in ("ORT CUDA fp32", "ORT CUDA fp16", "TensorRT", "PyTorch eager CUDA"):
            skipped[row] = reason
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads",
        "model": str(args.model_dir),
        "random_weights": manifest.get("random_weights"),
        "rows": rows,
        "skipped": skipped,
    }
    print(table(rows, reference))
    for precision in ("fp32", "int8"):
        if f"runtime ORT CPU {precision}" in rows:
            mb = peak_memory_mb(args.model_dir, precision, args.threads)
            result[f"peak_rss_mb_3min_track_{precision}"] = mb
            print(f"peak RSS, load + embed a 3-minute track ({precision}): {mb:.0f} MB")
    if "int8" in manifest:
        accuracy = int8_accuracy(args.model_dir, args.tracks, args.queries, args.threads)
        result["int8_vs_fp32"] = accuracy
        print(
            f"INT8 vs fp32: audio cosine min {accuracy['audio_cosine_min']:.5f} "
            f"(mean {accuracy['audio_cosine_mean']:.5f}), text cosine min "
            f"{accuracy['text_cosine_min']:.5f}, "
            f"top-10 agreement {accuracy['top10_agreement']:.3f} "
            f"({accuracy['tracks']} tracks, {accuracy['queries']} queries)"
        )
    for row, why in skipped.items():
        print(f"skipped: {row}: {why}")
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
