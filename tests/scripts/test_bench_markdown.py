"""``scripts/bench.py --markdown``: the documentation's performance tables come from the
bench's own bench.json, captioned with what they were measured on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.bench import main

DATA = Path(__file__).parent / "data"


def markdown(capsys, *files: str) -> str:
    assert main(["--markdown", *(str(DATA / f) for f in files)]) == 0
    return capsys.readouterr().out


def row(text: str, first_cell: str) -> list[str]:
    """The cells of the table row that starts with ``first_cell``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


def test_lead_row_gives_the_best_profiles_songs_per_hour_query_and_ratios(capsys):
    text = markdown(capsys, "bench_small.json")
    # 2 windows/s of 10 s of audio each: 20 s of music per second, 72,000 s an hour, 300
    # four-minute songs; int8 is the fastest runtime row: 100/25 ms audio, 30/10 ms query.
    assert row(text, "ttmrpp") == ["ttmrpp", "OpenVINO CPU int8", "300", "10.0", "4.00×", "3.00×"]


def test_every_table_is_captioned_with_machine_flags_date_and_versions(capsys):
    text = markdown(capsys, "bench_small.json")
    line = next(line for line in text.splitlines() if line.startswith("*model models/small"))
    for part in ("Test CPU, 2 cores, AVX-512, AVX-512 VNNI", "2030-01-02", "onnxruntime 9.9.9"):
        assert part in line
    assert "(random weights)" in line


def test_engine_tables_accuracy_index_and_skipped_rows_are_rendered(capsys):
    text = markdown(capsys, "bench_small.json")
    assert row(text, "ORT CPU fp32")[:3] == ["ORT CPU fp32", "50.0", "2.00×"]  # cpu table
    assert row(text, "OpenVINO CPU int8")[1:3] == ["25.0", "4.00×"]
    assert "| OpenVINO CPU int8 | 0.99950 (0.99980) | 0.99900 | 0.890 |" in text
    assert "| audio win/s @1 | audio win/s @16 |" in text  # the batches the run had
    assert "2.00 windows/s, 50%" in text  # index, sustained
    assert "- skipped (cpu): OpenVINO CPU bf16: no bf16 units on this CPU" in text


def test_a_catalog_run_adds_the_million_row_search_under_its_own_caption(capsys):
    text = markdown(capsys, "bench_small.json", "bench_catalog.json")
    assert "Search over 1,000,000 rows (128-d, ANN index): p50 39.4 ms, p99 83.3 ms" in text
    assert "*no model; Other CPU, 4 cores, 4 threads; 2030-01-03; lancedb 7.7.7*" in text
    assert "## catalog (no model)" in text


def test_a_section_from_another_run_keeps_its_own_date_and_machine(capsys, tmp_path):
    run = json.loads((DATA / "bench_small.json").read_text())
    catalog = json.loads((DATA / "bench_catalog.json").read_text())["catalog"]
    run["catalog"] = {**catalog, "date": "2029-05-06", "machine": "Old CPU, 2 cores"}
    (tmp_path / "merged.json").write_text(json.dumps(run))
    assert main(["--markdown", str(tmp_path / "merged.json")]) == 0
    text = capsys.readouterr().out
    # The run's versions (onnxruntime 9.9.9) are not claimed for the older section.
    assert "(random weights); Old CPU, 2 cores; 2029-05-06*" in text


def test_missing_results_are_a_usage_error_naming_the_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--markdown", str(tmp_path / "bench.json")])
    assert stop.value.code == 2
    assert f"no bench results at {tmp_path / 'bench.json'}" in capsys.readouterr().err
