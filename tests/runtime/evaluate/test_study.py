"""The ISMIR 2024 instrument study: the ontology and its distances, both triplet rules, the
zero-shot and class-mean metrics against scikit-learn and hand-computed values, scoring
precomputed embeddings, the cache, the whole study on each family's small model, and one-line
refusals of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    roc_auc_score,
    top_k_accuracy_score,
)

import runtime.evaluate.sources as sources
from runtime import Embedder, InputError
from runtime.catalog.npz import NpzCatalog
from runtime.cli.main import main
from runtime.engines.onnxruntime import OnnxRuntimeSession
from runtime.evaluate.embedding import embed_files
from runtime.evaluate.metrics import classification_metrics, predicted_classes, top_k_accuracy
from runtime.evaluate.ontology import UNRELATED, read_distance_table, read_ontology
from runtime.evaluate.study import Triplets, class_mean_scores, triplet_results
from runtime.evaluate.triplet_rules import inverted, make_triplets

# The study's 14 TinySOL instruments, by the names its prompts used.
STUDY_NAMES = [
    "bass tuba",
    "french horn",
    "trombone",
    "trumpet in c",
    "accordion",
    "contrabass",
    "violin",
    "viola",
    "violoncello",
    "bassoon",
    "clarinet in b-flat",
    "flute",
    "oboe",
    "alto saxophone",
]


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- the ontology and the triplet rules -----------------------------------------------------


def test_shipped_ontology_has_the_study_instruments_and_about_a_hundred_leaves():
    tree = read_ontology()
    assert len(tree.leaves) >= 100
    for name in STUDY_NAMES:
        tree.node(name)  # each is a name or an alias
    assert tree.node("Violoncello") is tree.node("cello")
    assert tree.node("violin").number == "321.322-71"


def test_ontology_distance_is_the_path_through_the_deepest_common_ancestor():
    tree = read_ontology()
    # chordophones > lutes > bowed lutes > violin / cello: 3 + 3 - 2 * 2 shared
    assert tree.distance("violin", "cello") == 2
    # chordophones > lutes > (bowed | plucked box) lutes > …: 3 + 3 - 2 * 1
    assert tree.distance("violin", "acoustic guitar") == 4
    assert tree.distance("violin", "flute") == UNRELATED  # chordophone against aerophone
    assert tree.distance("oboe", "oboe") == 0
    with pytest.raises(InputError, match="'kazooo' is not in the ontology"):
        tree.distance("violin", "kazooo")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("a\n   b\n", "line 2: indent with multiples of 2 spaces"),
        ("a\n    b\n", "line 2: indented 1 level(s) too deep"),
        ("a, x\n  b\n  X\n", "line 3: 'X' is already on line 1"),
        ("a\n  b,\n", "line 2: a name is empty"),
        ("# only a comment\n", "holds no instruments"),
    ],
)
def test_a_malformed_ontology_is_refused_naming_its_line(tmp_path, text, named):
    path = tmp_path / "tree.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=named.replace("(", r"\(").replace(")", r"\)")):
        read_ontology(path)


def test_ismir2024_rule_on_the_study_table_gives_its_237_triplets_67_inverted():
    terms, table = read_distance_table()
    assert terms == STUDY_NAMES
    triplets = make_triplets(table, "ismir2024")
    assert len(triplets) == 237
    assert int(inverted(table, triplets).sum()) == 67
    named = {tuple(terms[i] for i in t) for t in triplets}
    assert ("bass tuba", "french horn", "contrabass") in named  # an unrelated negative
    assert ("bass tuba", "trombone", "french horn") in named  # inverted: 4 against 2
    assert ("french horn", "bass tuba", "contrabass") not in named  # the positive comes first


def test_strict_rule_on_the_study_table_has_no_inverted_triplet():
    _, table = read_distance_table()
    triplets = make_triplets(table, "strict")
    assert triplets and not inverted(table, triplets).any()


# Four terms: a–b 2, a–c 4, b–c 4, and d unrelated to all.
SMALL_TABLE = np.array([[0, 2, 4, -1], [2, 0, 4, -1], [4, 4, 0, -1], [-1, -1, -1, 0]])


def test_both_rules_on_a_small_table_give_the_hand_listed_triplets():
    assert sorted(make_triplets(SMALL_TABLE, "strict")) == [
        (0, 1, 2),
        (0, 1, 3),
        (0, 2, 3),
        (1, 0, 2),
        (1, 0, 3),
        (1, 2, 3),
        (2, 0, 3),
        (2, 1, 3),
    ]
    study = sorted(make_triplets(SMALL_TABLE, "ismir2024"))
    assert study == [(0, 1, 3), (0, 2, 1), (0, 2, 3), (1, 2, 3)]
    assert inverted(SMALL_TABLE, study).tolist() == [False, True, False, False]


def test_make_triplets_writes_a_file_eval_triplets_reads(tmp_path, capsys):
    out = tmp_path / "study.csv"
    code, printed, _ = run(
        ["eval", "make-triplets", "--distances", "--rule", "ismir2024", "--out", str(out)], capsys
    )
    assert code == 0 and "237 triplets" in printed and "67 inverted" in printed
    rows = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert rows[0] == "anchor,positive,negative" and len(rows) == 238
    out = tmp_path / "hs.csv"
    args = ["eval", "make-triplets", "--terms", "violin,cello,flute", "--out", str(out)]
    assert run(args, capsys)[0] == 0
    # strict on the ontology: violin–cello 2, flute unrelated to both
    assert out.read_text().splitlines()[2:] == ["violin,cello,flute", "cello,violin,flute"]


# --- metrics --------------------------------------------------------------------------------


def test_zero_shot_metrics_equal_scikit_learn_on_random_scores():
    rng = np.random.default_rng(5)
    truth = np.repeat(np.arange(6), [5, 3, 4, 6, 2, 4])
    scores = rng.normal(size=(len(truth), 6)) + 0.8 * np.eye(6)[truth]
    metrics = classification_metrics(scores, truth)
    one_hot = np.eye(6)[truth]
    for k in range(1, 6):
        expected = top_k_accuracy_score(truth, scores, k=k, labels=range(6))
        assert metrics[f"top{k}"] == pytest.approx(expected)
    predicted = scores.argmax(axis=1)  # no ties in continuous random scores
    assert metrics["weighted_f1"] == pytest.approx(f1_score(truth, predicted, average="weighted"))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, predicted))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(one_hot, scores, average="macro"))
    expected_ap = average_precision_score(one_hot, scores, average="macro")
    assert metrics["average_precision"] == pytest.approx(expected_ap)


def test_a_tie_with_the_true_class_fails_top_k_and_the_prediction():
    scores = np.array([[0.5, 0.5, 0.1], [0.9, 0.2, 0.2], [0.3, 0.3, 0.3]])
    truth = np.array([1, 0, 2])
    assert top_k_accuracy(scores, truth, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(scores, truth, 2) == pytest.approx(2 / 3)  # row 3 ties all three
    assert predicted_classes(scores, truth).tolist() == [0, 0, 0]


def test_class_means_with_the_clip_included_and_left_out_by_hand():
    raw = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 3.0], [0.0, 1.0]])
    truth = np.array([0, 0, 1, 1])
    # means: class 0 (1, 1), class 1 (0, 2)
    s = 1 / np.sqrt(2)
    included = class_mean_scores(raw, truth, 2, leave_one_out=False)
    assert included == pytest.approx(np.array([[s, 0], [s, 1], [s, 1], [s, 1]]))
    # left out: the other clip of the class alone: (0, 2), (2, 0), (0, 1), (0, 3)
    left_out = class_mean_scores(raw, truth, 2, leave_one_out=True)
    assert left_out == pytest.approx(np.array([[0, 0], [0, 1], [s, 1], [s, 1]]))


def test_study_triplet_accuracy_by_hand_with_a_tie_failing():
    # rows in the collection's order a, b, c; the table's order is c, a, b
    text = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    triplets = Triplets(
        "strict",
        ["c", "a", "b"],
        [(1, 2, 0), (1, 0, 2), (0, 1, 2)],  # (a, b, c), (a, c, b), (c, a, b)
        np.array([False, True, False]),
    )
    (result,) = triplet_results(text, [2, 0, 1], [triplets], "joint")
    # a·b = 1 > a·c = 0 passes; a·c < a·b fails; c·a = 0 < c·b = 1 fails
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert result["accuracy_inverted"] == 0.0 and result["accuracy_others"] == 0.5
    tied = Triplets("strict", ["a", "b", "c"], [(1, 0, 2)], np.array([False]))
    (result,) = triplet_results(text, [0, 1, 2], [tied], "joint")  # b·a = b·c: a tie fails
    assert result["accuracy"] == 0.0


# --- precomputed embeddings -----------------------------------------------------------------


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


E1, E2 = np.eye(2)


@pytest.fixture
def precomputed(tmp_path) -> tuple[Path, Path]:
    """A TinySOL-like folder of four (empty) clips and hand-made embeddings for them and for
    every prompt the study writes, so that each number is known: flute prompts point along
    e1, violin prompts along e2, and so do the clips, except the second violin clip."""
    music = tmp_path / "audio"
    clips = {
        "Winds/Flute/ordinario/f1.wav": E1,
        "Winds/Flute/ordinario/f2.wav": E1 + 0.5 * E2,
        "Strings/Violin/ordinario/v1.wav": E2,
        "Strings/Violin/ordinario/v2.wav": E1 + 0.1 * E2,  # looks like a flute
    }
    for name in clips:
        touch(music / name)
    embeddings = tmp_path / "embeddings"
    embeddings.mkdir()
    for space in ("joint", "encoder"):
        rows = np.array(list(clips.values()), dtype=np.float32)
        np.savez(embeddings / f"audio_{space}.npz", embeddings=rows, items=np.array(list(clips)))
    sentences, rows = [], []
    for template in [
        "A {} track",
        "This is a recording of {}",
        "Solo musical instrument sound of {}",
        "Sound of {} musical instrument",
        "A no {} track",
    ]:
        pairs = [("flute", E1), ("violin", E2)]
        if "no" not in template:  # family prompts: woodwind like the flute, string the violin
            pairs += [("woodwind", E1), ("string", E2)]
        for name, vector in pairs:
            sentences.append(template.format(name))
            rows.append(vector if "no" not in template else -vector)
    np.save(embeddings / "text_joint.npy", np.array(rows, dtype=np.float32))
    (embeddings / "text_joint.txt").write_text("\n".join(sentences) + "\n")
    return music, embeddings


def test_study_scores_precomputed_embeddings_with_hand_computed_results(
    precomputed, tmp_path, capsys
):
    music, embeddings = precomputed
    out = tmp_path / "study"
    args = ["eval", "study", str(music), "--embeddings", str(embeddings), "--out", str(out)]
    code, printed, _ = run(args, capsys)
    assert code == 0
    report = json.loads((out / "study.json").read_text())
    assert report["instruments"] == {"flute": 2, "violin": 2}
    model = report["models"][0]
    # v2 goes to the flute: 3 of 4 right, the flute 2/2, the violin 1/2
    zero_shot = model["zero_shot"][0]
    assert zero_shot["prompts"] == "a-track" and zero_shot["top1"] == 0.75
    assert zero_shot["per_instrument"] == {"flute": 1.0, "violin": 0.5}
    assert zero_shot["confusion"] == [[2, 0], [1, 1]]
    # f1 and f2 predicted flute, one violin clip each way: F1 flute 0.8, violin 2/3
    assert zero_shot["weighted_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert model["positive_negative"]["top1"] == 0.75
    assert report["families"] == {"flute": "woodwind", "violin": "string"}
    family = model["family_zero_shot"][0]
    assert family["top1"] == 0.75 and family["per_instrument"] == {"string": 0.5, "woodwind": 1.0}
    assert model["positive_negative"]["negative_won"] == 0.0
    # no text in the encoder space: triplets in the joint space only, two instruments: none
    assert {t["space"] for t in model["triplets"]} == {"joint"}
    means = {(c["space"], c["leave_one_out"]): c["top1"] for c in model["class_means"]}
    assert set(means) == {(s, lo) for s in ("joint", "encoder") for lo in (False, True)}
    assert "| zero-shot, prompts a-track | top1 | 0.7500 |" in printed
    assert (out / "study.md").read_text() in printed
    for plot in ("per_instrument_accuracy.png", "confusion_1.png", "triplet_accuracy.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_triplets_score_precomputed_text_embeddings(precomputed, tmp_path, capsys):
    _, embeddings = precomputed
    triplets = tmp_path / "t.csv"
    triplets.write_text("anchor,positive,negative\nflute,flute,violin\nflute,violin,flute\n")
    out = tmp_path / "t.json"
    args = ["eval", "triplets", str(triplets), "--out", str(out), "--resamples", "10"]
    assert (
        run([*args, "--embeddings", str(embeddings), "--template", "A {instrument} track"], capsys)[
            0
        ]
        == 0
    )
    results = {(r["setting"], r["space"]): r for r in json.loads(out.read_text())["results"]}
    assert results[("text-text", "joint")]["accuracy"] == 0.5  # the first passes, not the second
    assert results[("text-text", "encoder")]["triplets"] == 0  # no encoder text given


def test_instruments_scores_precomputed_embeddings_too(precomputed, tmp_path, capsys):
    music, embeddings = precomputed
    out = tmp_path / "report"
    args = ["eval", "instruments", str(music), "--level", "1", "--out", str(out)]
    args += ["--embeddings", str(embeddings), "--template", "A {instrument} track"]
    assert run(args, capsys)[0] == 0
    report = json.loads((out / "instruments.json").read_text())
    assert report["confusion"] == [[2, 0], [1, 1]]
    assert report["model"] == {"embeddings": str(embeddings), "random_weights": False}


# --- the whole study on each family's small model -------------------------------------------

# Each family's small model (conftest's session fixtures): the study must run on all of them.
FAMILY_MODELS = ["small_model_dir", "small_clap_model_dir"]


@pytest.fixture(scope="module")
def family_models(request) -> list[Path]:
    return [request.getfixturevalue(name) for name in FAMILY_MODELS]


@pytest.fixture(scope="module")
def sol_clips(tmp_path_factory) -> Path:
    """Three TinySOL instruments, two one-second synthetic notes each."""
    folder = tmp_path_factory.mktemp("study_sol") / "audio"
    rate, t = 22050, np.arange(22050) / 22050
    for (family, name), base in {
        ("Winds", "Flute"): 523.0,
        ("Winds", "Oboe"): 440.0,
        ("Strings", "Violin"): 587.0,
    }.items():
        for number, overtones in enumerate((1, 6)):
            tone = sum(np.sin(2 * np.pi * base * k * t) / k for k in range(1, overtones + 1))
            path = folder / family / name / "ordinario" / f"{name}-{number}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.3 * np.exp(-3 * t) * tone, rate)
    return folder


def test_the_whole_study_runs_on_each_family_side_by_side_and_reuses_its_cache(
    family_models, sol_clips, tmp_path, monkeypatch, capsys
):
    folders = family_models
    out = tmp_path / "study"
    args = ["eval", "study", str(sol_clips), "--out", str(out)]
    for folder in folders:
        args += ["--model-dir", str(folder)]
    code, printed, _ = run(args, capsys)
    assert code == 0
    report = json.loads((out / "study.json").read_text())
    assert report["instruments"] == {"flute": 2, "oboe": 2, "violin": 2}
    assert report["distances"] == "the ISMIR 2024 study's TinySOL distance table"
    # violin unrelated to the winds, flute–oboe 6: strict keeps (flute, oboe, violin) and
    # (oboe, flute, violin). The study's rule, in its table's order (violin, flute, oboe),
    # keeps none: the violin's positives are unrelated, and the flute's one positive (oboe)
    # leaves it no negative after it.
    assert report["triplets"]["strict"]["rows"] == [
        ["flute", "oboe", "violin"],
        ["oboe", "flute", "violin"],
    ]
    assert report["triplets"]["ismir2024"]["rows"] == []
    assert len(report["models"]) == len(folders)
    for folder, model in zip(folders, report["models"], strict=True):
        assert model["model"]["model_dir"] == str(folder) and model["not_measured"] == []
        assert [z["prompts"] for z in model["zero_shot"]] == [
            "a-track",
            "recording",
            "solo",
            "sound-of",
        ]
        # the main set's top-1, recomputed from the model's own embeddings
        embedder = Embedder(folder)
        files = sorted(
            sol_clips.rglob("*.wav"), key=lambda p: (p.parent.parent.name.lower(), p.name)
        )
        clips = embedder.embed_audio(files, normalize=True)
        prompts = embedder.embed_text(
            [f"A {name} track" for name in ("flute", "oboe", "violin")], normalize=True
        )
        truth = np.repeat([0, 1, 2], 2)
        expected = np.mean((clips @ prompts.T).argmax(axis=1) == truth)
        assert model["zero_shot"][0]["top1"] == pytest.approx(expected)
        assert len(model["triplets"]) == 4 and len(model["class_means"]) == 4
    assert printed.count("| zero-shot, prompts a-track | top1 |") == 1
    header = next(line for line in printed.splitlines() if line.startswith("| test |"))
    assert header.count("|") == 3 + len(folders)
    # another prompt set: the audio comes from the cache, nothing is decoded again
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"plain": "{instrument}"}))

    def no_audio_work(*args, **kwargs):
        raise AssertionError("audio embedded again")

    monkeypatch.setattr(sources, "embed_files", no_audio_work)
    assert run([*args, "--prompts", str(prompts)], capsys)[0] == 0
    again = json.loads((out / "study.json").read_text())
    assert [z["prompts"] for z in again["models"][0]["zero_shot"]][-1] == "plain"
    assert again["models"][0]["class_means"] == report["models"][0]["class_means"]


def test_the_study_runs_each_clip_through_the_audio_and_floor_graphs_once(
    small_model_dir, sol_clips, tmp_path, monkeypatch, capsys
):
    """Both spaces come from one pass: every window of every clip is in exactly one call of
    the audio graph and one of the floor graph (TTMR++), not one per space."""
    calls: dict[str, int] = {}  # graph file → rows fed to it
    real_run = OnnxRuntimeSession.run

    def counted(self, names, feed):
        if "waveform" in feed:
            calls[self.path.name] = calls.get(self.path.name, 0) + len(feed["waveform"])
        return real_run(self, names, feed)

    monkeypatch.setattr(OnnxRuntimeSession, "run", counted)
    args = ["eval", "study", str(sol_clips), "--out", str(tmp_path / "study")]
    assert run([*args, "--model-dir", str(small_model_dir)], capsys)[0] == 0
    tracks = Embedder(small_model_dir).load_tracks(sorted(sol_clips.rglob("*.wav")), None)
    windows = sum(len(track.windows) for track in tracks)
    assert windows == len(tracks) == 6  # one-second clips: one window each
    assert calls == {"audio.onnx": windows, "floor.onnx": windows}


# --- bad input ------------------------------------------------------------------------------


@pytest.fixture
def bad_study(precomputed, tmp_path) -> Path:
    """Beside ``precomputed``'s files: collections with an unknown instrument and with a
    one-clip instrument, and a .npy whose names are one short."""
    touch(tmp_path / "unknown" / "Winds" / "Kazoo" / "x" / "a.wav")
    touch(tmp_path / "unknown" / "Winds" / "Kazoo" / "x" / "b.wav")
    touch(tmp_path / "unknown" / "Winds" / "Flute" / "x" / "c.wav")
    touch(tmp_path / "unknown" / "Winds" / "Flute" / "x" / "d.wav")
    touch(tmp_path / "lonely" / "Winds" / "Flute" / "x" / "a.wav")
    touch(tmp_path / "lonely" / "Winds" / "Flute" / "x" / "b.wav")
    touch(tmp_path / "lonely" / "Winds" / "Oboe" / "x" / "c.wav")
    mismatch = tmp_path / "mismatch"
    mismatch.mkdir()
    np.save(mismatch / "text_joint.npy", np.zeros((3, 2), dtype=np.float32))
    (mismatch / "text_joint.txt").write_text("one\ntwo\n")
    no_text = tmp_path / "no_text"
    no_text.mkdir()
    np.save(no_text / "text_joint.npy", np.zeros((1, 2), dtype=np.float32))
    (no_text / "text_joint.txt").write_text("something else\n")
    return tmp_path


BAD_STUDY = [
    (["{d}/unknown"], "label 'Kazoo' is not in the names file"),
    (
        ["{d}/unknown", "--plain-labels", "--distances", "{d}/tree.csv"],
        "instrument 'kazoo' is not in distance table",
    ),
    (
        ["{d}/unknown", "--plain-labels", "--ontology", "{d}/tree.txt"],
        "instrument 'kazoo' is not in the ontology",
    ),
    (["{d}/lonely"], "instrument 'oboe' has 1 file"),
    (["{d}/audio", "--embeddings", "{d}/mismatch"], "text_joint.npy: 3 rows but 2 names"),
    (["{d}/audio", "--embeddings", "{d}/no_text"], "has no row for 'A flute track' (18 of the 18"),
    (["{d}/audio", "--embeddings", "{d}/embeddings", "--prompts", "{d}/p.json"], "'defs'"),
]


@pytest.mark.parametrize(("args", "named"), BAD_STUDY)
def test_bad_study_input_exits_2_with_one_line_naming_it(bad_study, args, named, capsys):
    (bad_study / "tree.txt").write_text("aerophones\n  flute\n")
    (bad_study / "tree.csv").write_text("term,flute,oboe\nflute,0,2\noboe,2,0\n")
    (bad_study / "p.json").write_text(json.dumps({"defs": {"flute": "a flute"}}))
    out = bad_study / "out"
    argv = ["eval", "study", *(a.format(d=bad_study) for a in args), "--out", str(out)]
    if "--embeddings" not in argv:
        argv += ["--embeddings", str(bad_study / "embeddings")]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.startswith("ttmr: error:") and err.count("\n") == 1
    assert named in err
    assert not (out / "study.json").exists()


def test_make_triplets_refuses_an_unknown_term(tmp_path, capsys):
    args = ["eval", "make-triplets", "--distances", "--terms", "violin,kazoo"]
    code, _, err = run([*args, "--out", str(tmp_path / "t.csv")], capsys)
    assert code == 2 and "instrument 'kazoo' is not in distance table" in err


def test_retrieval_scores_precomputed_query_embeddings(tmp_path, capsys):
    paths = [str(tmp_path / name) for name in ["a.wav", "b.wav"]]
    catalog = NpzCatalog(paths, [10.0, 10.0], list(np.eye(2, dtype=np.float32)))
    catalog.save(tmp_path / "catalog.npz")
    (tmp_path / "truth.csv").write_text("caption,track\nfirst,b\n")
    embeddings = tmp_path / "embeddings"
    embeddings.mkdir()
    rows = np.array([[0.9, 0.1]], dtype=np.float32)  # ranks a first, b second
    np.savez(embeddings / "text_joint.npz", embeddings=rows, items=np.array(["first"]))
    out = tmp_path / "r.json"
    args = ["eval", "retrieval", str(tmp_path / "catalog.npz"), str(tmp_path / "truth.csv")]
    args += ["--out", str(out), "--root", str(tmp_path), "--embeddings", str(embeddings)]
    assert run(args, capsys)[0] == 0
    captions = json.loads(out.read_text())["captions"]
    assert captions["per_query"][0]["first_relevant_rank"] == 2 and captions["mrr"] == 0.5


def test_an_undecodable_clip_is_named_by_its_path(small_model_dir, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(InputError) as caught:
        embed_files(Embedder(small_model_dir), [bad], ["joint"])
    assert caught.value.item == str(bad)
    assert str(caught.value).startswith(f"{bad}: cannot decode audio")
    assert "item 0" not in str(caught.value)


def test_eval_commands_import_without_the_cli():
    code = "import sys, runtime.evaluate.commands; sys.exit('runtime.cli.main' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
