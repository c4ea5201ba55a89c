"""``ttmr eval …``: known answers from hand-made embeddings, end-to-end runs on the demo model,
and one-line refusals of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

import runtime.evaluate.commands as commands
from export import synthetic
from runtime import Embedder
from runtime.catalog.npz import NpzCatalog
from runtime.cli.main import main
from runtime.evaluate.instruments import instrument_files
from runtime.evaluate.metrics import ranking_metrics, unit_rows
from runtime.manifest import RANDOM_WEIGHTS_NOTE

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
E1, E2, E3 = np.eye(3)


class HandMadeEmbedder:
    """Stands in for ``Embedder``: sentences and files (by name) get the vectors given, per
    space, so that every metric has a value worked out by hand."""

    model_dir = Path("hand-made")
    batch_size = 2
    precision = "fp32"

    def __init__(self, text: dict, audio: dict | None = None):
        self.manifest = SimpleNamespace(random_weights=False)  # what the reports read
        self.text, self.audio = text, audio or {}  # {space: {sentence or file name: vector}}

    def embed_text(self, texts, *, space="joint", normalize=False):
        return by_space(space, lambda s: unit_rows(np.array([self.text[s][t] for t in texts])))

    def load_tracks(self, items, sample_rate):
        return [Path(item).name for item in items]

    def embed_tracks(self, tracks, space="joint"):
        return by_space(space, lambda s: np.array([self.audio[s][name] for name in tracks]))


def by_space(space, rows_of) -> np.ndarray | dict[str, np.ndarray]:
    """As the Embedder answers: one array for a space by name, ``{space: array}`` for several."""
    if isinstance(space, str):
        return rows_of(space).astype(np.float32)
    return {name: rows_of(name).astype(np.float32) for name in space}


def both_spaces(vectors: dict) -> dict:
    return {"joint": vectors, "encoder": vectors}


@pytest.fixture
def hand_made(monkeypatch):
    """Installs a ``HandMadeEmbedder`` in place of the model the commands would load."""

    def install(text: dict, audio: dict | None = None) -> None:
        model = HandMadeEmbedder(text, audio)
        monkeypatch.setattr(commands, "embedder_from", lambda args: model)

    return install


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# --- retrieval ------------------------------------------------------------------------------


@pytest.fixture
def one_hot_catalog(tmp_path) -> tuple[Path, Path]:
    """Four tracks with one-hot embeddings, so a query's cosine with track i is its i-th
    coordinate over its length: a query vector is the order it ranks the tracks in."""
    music = (tmp_path / "music").resolve()
    names = ["a.wav", "b.wav", "sub/c.wav", "d.flac"]
    catalog = NpzCatalog(
        [str(music / name) for name in names], [10.0] * 4, list(np.eye(4, dtype=np.float32))
    )
    catalog.save(tmp_path / "catalog.npz")
    return tmp_path / "catalog.npz", music


def test_retrieval_of_captions_at_known_ranks(one_hot_catalog, hand_made, tmp_path, capsys):
    catalog, music = one_hot_catalog
    truth = tmp_path / "captions.csv"
    truth.write_text(
        "\ufeffcaption,track\n"  # with the byte-order mark spreadsheets write
        "first,a\n"  # a file stem
        "second,b.wav\n"  # a file name
        f"third,{music / 'd.flac'}\n"  # a path
    )
    hand_made(
        {
            "joint": {
                "first": [0.9, 0.1, 0.2, 0.3],  # a ranked 1st
                "second": [0.9, 0.8, 0.1, 0.0],  # b ranked 2nd
                "third": [0.4, 0.3, 0.2, 0.1],  # d ranked 4th
            }
        }
    )
    out = tmp_path / "report.json"
    code, printed, _ = run(
        ["eval", "retrieval", str(catalog), str(truth), "--out", str(out)], capsys
    )
    assert code == 0
    report = json.loads(out.read_text())
    captions = report["captions"]
    assert [q["first_relevant_rank"] for q in captions["per_query"]] == [1, 2, 4]
    assert captions["recall@1"] == pytest.approx(1 / 3)
    assert captions["recall@5"] == captions["recall@10"] == 1.0
    assert captions["mrr"] == captions["map@10"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    assert captions["median_rank"] == 2.0
    assert "tags" not in report
    assert "0.3333" in printed and "0.5833" in printed


def test_retrieval_of_tags_gives_hand_computed_aucs(one_hot_catalog, hand_made, tmp_path, capsys):
    catalog, music = one_hot_catalog
    truth = tmp_path / "truth.json"
    truth.write_text(
        json.dumps({"tags": {"t": ["a", "sub/c.wav"], "u": ["d"]}, "captions": {"x": ["b"]}})
    )
    hand_made(
        {
            "joint": {
                "music with t": [0.9, 0.8, 0.7, 0.6],  # positives a, c at ranks 1 and 3
                "music with u": [0.1, 0.2, 0.3, 0.4],  # positive d first
                "x": [0.0, 1.0, 0.0, 0.0],
            }
        }
    )
    out = tmp_path / "report.json"
    args = ["eval", "retrieval", str(catalog), str(truth), "--out", str(out)]
    args += ["--root", str(music), "--tag-template", "music with {tag}"]
    assert run(args, capsys)[0] == 0
    tags = json.loads(out.read_text())["tags"]
    assert [t["query"] for t in tags["per_query"]] == ["t", "u"]
    assert [t["positives"] for t in tags["per_query"]] == [2, 1]
    assert [t["roc_auc"] for t in tags["per_query"]] == pytest.approx([3 / 4, 1.0])
    assert [t["pr_auc"] for t in tags["per_query"]] == pytest.approx([(1 + 2 / 3) / 2, 1.0])
    assert tags["roc_auc"] == pytest.approx(7 / 8)
    assert tags["pr_auc"] == pytest.approx(11 / 12)


# --- triplets -------------------------------------------------------------------------------


def test_triplets_pass_or_fail_per_setting_and_space(hand_made, tmp_path, capsys):
    for name in ["flute/f1.wav", "flute/f2.wav", "oboe/o1.wav", "violin/v1.wav"]:
        touch(tmp_path / "sol" / name)
    triplets = tmp_path / "triplets.csv"
    triplets.write_text(
        "anchor,positive,negative\n"
        "flute,oboe,violin\n"  # line 2
        "# a comment line, skipped\n"
        "flute,violin,oboe\n"  # line 4: the reverse of line 2
        "sol/flute/f1.wav,sol/oboe/o1.wav,sol/violin/v1.wav\n"  # line 5: files only
        "flute,oboe,trumpet\n"  # line 6: no trumpet audio
    )
    text = {
        "joint": {"flute": E1, "oboe": E1 + E2, "violin": E2, "trumpet": E3},
        "encoder": {"flute": E1, "oboe": E2, "violin": E2, "trumpet": E3},  # ties fail
    }
    audio = {
        # the flute's audio is the mean of f1 and f2: (e1 + e2) / √2
        "joint": {"f1.wav": E1, "f2.wav": E2, "o1.wav": E1, "v1.wav": E3},
        "encoder": {"f1.wav": E1, "f2.wav": E2, "o1.wav": E3, "v1.wav": E1},
    }
    hand_made(text, audio)
    out = tmp_path / "report.json"
    args = ["eval", "triplets", str(triplets), "--out", str(out), "--template", "{instrument}"]
    args += ["--audio-dir", str(tmp_path / "sol"), "--resamples", "500", "--seed", "3"]
    assert run(args, capsys)[0] == 0
    report = json.loads(out.read_text())
    found = {(r["setting"], r["space"]): (r["triplets"], r["accuracy"]) for r in report["results"]}
    assert found == {
        ("text-text", "joint"): (3, pytest.approx(2 / 3)),
        ("text-text", "encoder"): (3, 0.0),
        ("audio-audio", "joint"): (3, pytest.approx(2 / 3)),
        ("audio-audio", "encoder"): (3, pytest.approx(1 / 3)),
        ("text-audio", "joint"): (2, 0.5),
    }
    assert [row["line"] for row in report["per_triplet"]] == [2, 4, 5, 6]
    line5 = report["per_triplet"][2]
    assert line5["text-text/joint"] is None and line5["audio-audio/joint"] is True
    assert report["terms_without_audio"] == ["trumpet"]
    for result in report["results"]:
        assert result["ci_low"] <= result["accuracy"] <= result["ci_high"]
    assert run(args, capsys)[0] == 0
    assert json.loads(out.read_text())["results"] == report["results"]  # seeded


def test_triplets_without_audio_report_audio_settings_as_not_measured(hand_made, tmp_path, capsys):
    hand_made(both_spaces({"flute": E1, "oboe": E1 + E2, "violin": E2}))
    triplets = tmp_path / "t.csv"
    triplets.write_text("anchor,positive,negative\nflute,oboe,violin\n")
    out = tmp_path / "report.json"
    args = ["eval", "triplets", str(triplets), "--out", str(out), "--template", "{instrument}"]
    code, printed, _ = run(args, capsys)
    assert code == 0
    results = json.loads(out.read_text())["results"]
    assert [r["accuracy"] for r in results] == [1.0, 1.0, None, None, None]
    assert [r["triplets"] for r in results] == [1, 1, 0, 0, 0]
    assert printed.count("—") == 6  # accuracy and interval of the three audio rows


# --- instruments ----------------------------------------------------------------------------


def test_instruments_confusion_and_accuracies_from_known_similarities(hand_made, tmp_path, capsys):
    for name in ["flute/a.wav", "flute/b.wav", "oboe/c.wav"]:
        touch(tmp_path / "music" / name)
    hand_made(
        {"joint": {"flute": E1, "oboe": E2}},
        {"joint": {"a.wav": E1, "b.wav": E2 + 0.1 * E1, "c.wav": E2}},  # b looks like an oboe
    )
    out = tmp_path / "report"
    args = ["eval", "instruments", str(tmp_path / "music"), "--out", str(out)]
    assert run([*args, "--template", "{instrument}"], capsys)[0] == 0
    report = json.loads((out / "instruments.json").read_text())
    assert report["instruments"] == ["flute", "oboe"]
    assert report["confusion"] == [[1, 1], [0, 1]]
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert [p["predicted"] for p in report["predictions"]] == ["flute", "oboe", "oboe"]
    for plot in ("confusion.png", "similarities.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_instrument_labels_from_folders_at_a_level_and_from_file_names(tmp_path):
    for name in ["Winds/Flute/ordinario/Fl-ord-C4-mf.wav", "Brass/Horn/ordinario/Hn-ord-A2.wav"]:
        touch(tmp_path / "audio" / name)
    names = json.loads((EXAMPLES / "tinysol_names.json").read_text())
    by_folder = instrument_files(tmp_path / "audio", "folder", 1, names)
    assert list(by_folder) == ["flute", "french horn"]
    assert list(instrument_files(tmp_path / "audio", "filename", 0, names)) == list(by_folder)
    assert list(instrument_files(tmp_path / "audio", "folder", 0)) == ["brass", "winds"]
    assert list(instrument_files(tmp_path / "audio", "filename")) == ["fl", "hn"]


# --- the demo model, end to end -------------------------------------------------------------


@pytest.fixture(scope="module")
def single_notes(tmp_path_factory) -> Path:
    """A TinySOL-like folder (``<family>/<instrument>/ordinario/<note>.wav``) of short
    synthetic notes, one or two per instrument: a window each."""
    folder = tmp_path_factory.mktemp("sol") / "audio"
    notes = {
        ("Winds", "Flute"): [(523.0, 1), (659.0, 1)],
        ("Winds", "Oboe"): [(440.0, 7)],
        ("Winds", "Clarinet_Bb"): [(392.0, 5)],
        ("Strings", "Violin"): [(587.0, 9)],
        ("Brass", "Trumpet_C"): [(349.0, 12)],
    }
    for (family, instrument), tones in notes.items():
        for number, (frequency, harmonics) in enumerate(tones):
            path = folder / family / instrument / "ordinario" / f"{instrument}-{number}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sound = synthetic.notes([frequency], 2.0, synthetic.RATE, harmonics)
            sf.write(path, 0.3 * sound, synthetic.RATE)
    return folder


@pytest.fixture(scope="module", params=["ttmrpp", "clap"])
def family_model_dir(request) -> Path:
    """The small model of each family (TTMR++'s with random weights, CLAP's from a Hugging
    Face folder): eval must work unchanged with both."""
    fixture = {"ttmrpp": "small_model_dir", "clap": "small_clap_model_dir"}[request.param]
    return request.getfixturevalue(fixture)


@pytest.fixture(scope="module")
def family_model(family_model_dir) -> Embedder:
    return Embedder(family_model_dir)


def test_retrieval_on_each_family_equals_metrics_of_its_embeddings(
    family_model_dir, family_model, tmp_path, capsys
):
    synthetic.main(str(tmp_path / "music"))
    catalog, out = tmp_path / "catalog", tmp_path / "retrieval.json"
    model = ["--model-dir", str(family_model_dir)]
    assert main(["index", str(tmp_path / "music"), "--out", str(catalog), *model]) == 0
    truth = EXAMPLES / "demo_ground_truth.json"
    code, printed, _ = run(
        ["eval", "retrieval", str(catalog), str(truth), "--out", str(out), *model], capsys
    )
    random_weights = family_model.manifest.random_weights
    assert code == 0 and (RANDOM_WEIGHTS_NOTE in printed) is random_weights
    report = json.loads(out.read_text())
    assert report["tracks"] == 5 and report["model"]["random_weights"] is random_weights
    captions = json.loads(truth.read_text())["captions"]
    tracks = NpzCatalog.load(catalog)
    stems = [Path(path).stem for path in tracks.paths]
    relevant = np.array(
        [[stem in {Path(i).stem for i in ids} for stem in stems] for ids in captions.values()]
    )
    scores = family_model.embed_text(list(captions), normalize=True) @ unit_rows(tracks.matrix()).T
    expected = ranking_metrics(scores, relevant)
    assert {k: report["captions"][k] for k in expected} == pytest.approx(expected, abs=1e-6)
    assert [t["positives"] for t in report["tags"]["per_query"]] == [2, 2, 1, 1]
    for value in ("roc_auc", "pr_auc"):
        assert 0.0 <= report["tags"][value] <= 1.0


def test_triplets_on_each_family_in_every_setting(
    family_model_dir, family_model, single_notes, tmp_path, capsys
):
    out = tmp_path / "triplets.json"
    args = ["eval", "triplets", str(EXAMPLES / "instrument_triplets.csv"), "--out", str(out)]
    args += ["--audio-dir", str(single_notes), "--level", "1"]
    args += ["--names", str(EXAMPLES / "tinysol_names.json"), "--model-dir", str(family_model_dir)]
    assert run(args, capsys)[0] == 0
    report = json.loads(out.read_text())
    with_audio = {"flute", "oboe", "clarinet", "violin", "trumpet"}
    rows = report["per_triplet"]
    all_audio = sum({r["anchor"], r["positive"], r["negative"]} <= with_audio for r in rows)
    sides_audio = sum({r["positive"], r["negative"]} <= with_audio for r in rows)
    counts = {(r["setting"], r["space"]): r["triplets"] for r in report["results"]}
    assert counts[("text-text", "joint")] == counts[("text-text", "encoder")] == len(rows) == 25
    assert counts[("audio-audio", "joint")] == counts[("audio-audio", "encoder")] == all_audio
    assert counts[("text-audio", "joint")] == sides_audio > all_audio > 0
    assert set(report["terms_without_audio"]).isdisjoint(with_audio)
    # the first triplet's text-text outcomes, recomputed from the model's own embeddings
    first = rows[0]
    prompts = [f"the sound of a {first[role]}" for role in ("anchor", "positive", "negative")]
    for space in ("joint", "encoder"):
        anchor, positive, negative = family_model.embed_text(prompts, space=space, normalize=True)
        assert first[f"text-text/{space}"] == bool(anchor @ positive > anchor @ negative)


def test_instruments_on_each_family_write_report_and_plots(
    family_model_dir, single_notes, tmp_path, capsys
):
    out = tmp_path / "instruments"
    args = ["eval", "instruments", str(single_notes), "--out", str(out), "--level", "1"]
    args += ["--names", str(EXAMPLES / "tinysol_names.json"), "--model-dir", str(family_model_dir)]
    assert run(args, capsys)[0] == 0
    report = json.loads((out / "instruments.json").read_text())
    assert report["instruments"] == ["clarinet", "flute", "oboe", "trumpet", "violin"]
    assert report["prompts"][0] == "the sound of a clarinet"
    confusion = np.array(report["confusion"])
    assert confusion.sum() == report["files"] == 6
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / 6)
    for prediction in report["predictions"]:
        best = int(np.argmax(prediction["similarities"]))
        assert prediction["predicted"] == report["instruments"][best]
    for plot in ("confusion.png", "similarities.png"):
        assert (out / plot).stat().st_size > 1000


# --- bad input ------------------------------------------------------------------------------


@pytest.fixture
def bad_inputs(tmp_path, small_model_dir, monkeypatch) -> Path:
    """A catalog of two tracks, a music folder and assorted broken input files."""
    monkeypatch.setenv("TTMR_MODEL_DIR", str(small_model_dir))
    names = ["x/song.wav", "y/song.wav", "z/other.wav"]
    catalog = NpzCatalog(
        [str(tmp_path / name) for name in names], [1.0] * 3, [np.ones(16, np.float32)] * 3
    )
    catalog.save(tmp_path / "catalog.npz")
    files = {
        "unknown.csv": "caption,track\nsome caption,nosuchtrack\n",
        "ambiguous.csv": "caption,track\nsome caption,song\n",
        "header.csv": "query,track\nsome caption,other\n",
        "everywhere.json": json.dumps({"tags": {"all": catalog.paths}}),
        "shape.json": json.dumps({"captions": ["not", "a", "mapping"]}),
        "truth.txt": "caption,track\n",
        "short_row.csv": "anchor,positive,negative\nflute,oboe\n",
        "missing_audio.csv": "anchor,positive,negative\nflute,oboe,gone.wav\n",
        "unusable.csv": "anchor,positive,negative\nflute,oboe,violin\nflute,oboe,v.wav\n",
        "names.json": json.dumps({"Other": "other"}),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    touch(tmp_path / "v.wav")
    touch(tmp_path / "one" / "flute" / "a.wav")
    touch(tmp_path / "flat" / "a.wav")
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("")
    return tmp_path


BAD_INPUT = [
    (["retrieval", "{d}/none.npz", "{d}/unknown.csv"], "none.npz"),
    (["retrieval", "{d}/catalog.npz", "{d}/none.csv"], "none.csv"),
    (["retrieval", "{d}/catalog.npz", "{d}/unknown.csv"], "unknown track id 'nosuchtrack'"),
    (["retrieval", "{d}/catalog.npz", "{d}/ambiguous.csv"], "file stem of 2 catalog tracks"),
    (["retrieval", "{d}/catalog.npz", "{d}/header.csv"], "header caption,track or tag,track"),
    (["retrieval", "{d}/catalog.npz", "{d}/everywhere.json"], "tag 'all' is on every"),
    (["retrieval", "{d}/catalog.npz", "{d}/shape.json"], "'captions' must map"),
    (["retrieval", "{d}/catalog.npz", "{d}/truth.txt"], "must be a .csv or a .json"),
    (["retrieval", "{d}/catalog.npz", "{d}/unknown.csv", "--tag-template", "{x}"], "{tag}"),
    (["triplets", "{d}/none.csv"], "none.csv"),
    (["triplets", "{d}/short_row.csv"], "line 2: expected 3 non-empty cells"),
    (["triplets", "{d}/missing_audio.csv"], "line 2: audio file 'gone.wav' does not exist"),
    (["triplets", "{d}/unusable.csv"], "line 3: no setting can use this triplet"),
    (["triplets", "{d}/short_row.csv", "--resamples", "0"], "resamples must be at least 1"),
    (["triplets", "{d}/short_row.csv", "--confidence", "1.5"], "confidence level"),
    (["triplets", "{d}/short_row.csv", "--template", "no placeholder"], "{instrument}"),
    (["instruments", "{d}/empty"], "holds no audio files"),
    (["instruments", "{d}/nowhere"], "is not a folder"),
    (["instruments", "{d}/one"], "at least two instruments"),
    (["instruments", "{d}/flat"], "a.wav: only 0 folder(s)"),
    (["instruments", "{d}/one", "--names", "{d}/names.json"], "label 'flute' is not in"),
    (["instruments", "{d}/one", "--names", "{d}/none.json"], "none.json"),
    (["instruments", "{d}/one", "--level", "-1"], "level must be 0 or more"),
]


@pytest.mark.parametrize(("args", "named"), BAD_INPUT)
def test_bad_eval_input_exits_2_with_one_line_naming_it(bad_inputs, args, named, capsys):
    out = bad_inputs / ("report" if args[0] == "instruments" else "report.json")
    argv = ["eval", *(a.format(d=bad_inputs) if "{d}" in a else a for a in args)]
    code, _, err = run([*argv, "--out", str(out)], capsys)
    assert code == 2
    assert err.startswith("ttmr: error:") and err.count("\n") == 1
    assert named in err
    assert not out.exists()  # no partial report


def test_instruments_refuses_a_file_as_its_output_folder(bad_inputs, capsys):
    args = ["eval", "instruments", str(bad_inputs / "one"), "--out", str(bad_inputs / "a_file")]
    code, _, err = run(args, capsys)
    assert code == 2 and "must be a folder" in err


def test_python_dash_m_runtime_eval_exits_2_without_a_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "eval", "triplets", str(tmp_path / "none.csv")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("ttmr: error: the following arguments are required: --out")
