"""The table of scripts/gpu_check.sh: every row it asks for, measured or not, in markdown.

    python scripts/gpu_report.py OUT/table.md --bench OUT/bench.json
        [--exhaustive OUT/bench_exhaustive.json] [--no-gpu] [--note LINE ...]

``--bench``: scripts/bench.py's JSON with cuDNN's convolution search HEURISTIC (the
runtime's default); ``--exhaustive``: the onnxruntime CUDA rows again with EXHAUSTIVE. A row
without a measurement is listed with why ("not run (no GPU)", "not run (time limit)",
"failed: …"); a missing JSON (the bench never ran) marks all its rows not run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if not __package__:  # run as a file (python scripts/gpu_report.py): find the package scripts
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from scripts.bench import backends_table, speedups

CPU_ROWS = ["PyTorch eager CPU fp32", "ORT CPU fp32"]
TORCH_GPU_ROWS = ["PyTorch eager CUDA fp32", "PyTorch eager CUDA fp16 autocast"]
ORT_GPU_ROWS = ["ORT CUDA fp32", "ORT CUDA fp16"]
SEARCHES = {"bench": "HEURISTIC", "exhaustive": "EXHAUSTIVE"}
DEFAULT_BATCHES = ["1", "16", "64"]


def read_backends(path: Path | None) -> dict | None:
    """The backends section of a bench JSON, or None where there is none."""
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text()).get("backends")


def label(name: str, search: str) -> str:
    return f"{name} (cuDNN search {search})" if name in ORT_GPU_ROWS else name


def collect(runs: dict[str, dict | None], gpu: bool) -> tuple[dict, dict]:
    """``runs``: pass → its backends section (or None). Returns (measured rows, not run
    rows → why), by the table's labels, in the table's order."""
    wanted = {"bench": CPU_ROWS + TORCH_GPU_ROWS + ORT_GPU_ROWS, "exhaustive": ORT_GPU_ROWS}
    measured, missing = {}, {}
    for run, names in wanted.items():
        section = runs.get(run)
        for name in names:
            shown = label(name, SEARCHES[run])
            if section and name in section["rows"]:
                measured[shown] = section["rows"][name]
            elif not gpu and name not in CPU_ROWS:
                missing[shown] = "not run (no GPU)"
            elif section is None:
                missing[shown] = "not run (the bench did not run: time limit or failure)"
            else:
                missing[shown] = section["skipped"].get(name, "not run")
    return measured, missing


def batches_of(rows: dict) -> list[str]:
    keys = next(iter(rows.values()), {}) if rows else {}
    found = [k.rsplit("_", 1)[1] for k in keys if k.startswith("audio_windows_per_s_batch_")]
    return found or DEFAULT_BATCHES


def table(measured: dict, missing: dict) -> str:
    """bench.py's backends table, and a row for each row not run saying why."""
    batches = batches_of(measured)
    lines = backends_table(measured, batches).splitlines()
    columns = lines[1].count("|") - 2
    for name, why in missing.items():
        lines.append(f"| {name} | {why} |" + " – |" * (columns - 1))
    return "\n".join(lines)


def report(runs: dict[str, dict | None], gpu: bool, notes: list[str]) -> str:
    measured, missing = collect(runs, gpu)
    parts = ["# GPU check", "", *(f"- {note}" for note in notes), "", table(measured, missing)]
    batch = batches_of(measured)[-1]
    ratios = speedups(measured, batch)
    if ratios:
        parts += ["", *(f"- {line}" for line in ratios)]
    parts += [
        "",
        "Cosines are to the CPU reference's embeddings of the same run; the EXHAUSTIVE rows "
        "ran without it (–).",
    ]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", type=Path, help="the markdown file to write")
    parser.add_argument("--bench", type=Path, help="bench.json of the HEURISTIC pass")
    parser.add_argument("--exhaustive", type=Path, help="bench.json of the EXHAUSTIVE pass")
    parser.add_argument("--no-gpu", action="store_true", help="no GPU: its rows were not run")
    parser.add_argument("--note", action="append", default=[], help="a line above the table")
    args = parser.parse_args(argv)
    runs = {"bench": read_backends(args.bench), "exhaustive": read_backends(args.exhaustive)}
    text = report(runs, not args.no_gpu, args.note)
    args.table.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
