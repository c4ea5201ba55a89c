"""``eval study``: every test of the ISMIR 2024 instrument study ("I can listen but cannot
read") for one or several models, on a labelled instrument collection.

Per model: text triplets in each text space (both rules of ``triplet_rules``, on the main
prompt set), zero-shot classification in the joint space for every prompt set, the
positive/negative variant (each instrument's positive and ``A no {x} track`` prompts
together; a clip is right when its own positive prompt wins), the family prompts (each clip
among the instrument families), and the audio-only test in each audio space: every clip
against the L2-normalised means of each instrument's raw embeddings, with the clip inside
its own class's mean (as the study did) and left out of it."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import InputError
from runtime.evaluate.inputs import check_template, read_json
from runtime.evaluate.instruments import file_label
from runtime.evaluate.metrics import (
    classification_metrics,
    predicted_classes,
    top_k_accuracy,
    unit_rows,
)
from runtime.evaluate.ontology import read_distance_table, read_ontology, subtable
from runtime.evaluate.sources import EmbeddingSource, PrecomputedSource
from runtime.evaluate.triplet_rules import RULES, inverted, make_triplets

# The study's four prompt templates; its main set first.
PROMPT_SETS = {
    "a-track": "A {instrument} track",
    "recording": "This is a recording of {instrument}",
    "solo": "Solo musical instrument sound of {instrument}",
    "sound-of": "Sound of {instrument} musical instrument",
}
NEGATIVE = "A no {instrument} track"
TINYSOL_TABLE = "the ISMIR 2024 study's TinySOL distance table"
TINYSOL_FAMILIES = {
    "Brass": "brass",
    "Keyboards": "keyboard",
    "Strings": "string",
    "Winds": "woodwind",
}


@dataclass(frozen=True)
class Collection:
    """Labelled clips: instrument names (sorted), files, and each file's instrument index."""

    instruments: list[str]
    files: list[Path]
    truth: np.ndarray
    families: dict[str, str]  # instrument → family; empty: no family test

    @classmethod
    def from_groups(
        cls, groups: dict[str, list[Path]], families: dict[str, str] | None = None
    ) -> Collection:
        if len(groups) < 2:
            raise InputError(f"the study needs at least two instruments, found {list(groups)}")
        for name, files in groups.items():
            if len(files) < 2:
                raise InputError(
                    f"instrument {name!r} has {len(files)} file: leaving it out of its class "
                    "mean would leave the class empty; the study needs 2 or more per instrument"
                )
        names = list(groups)
        files = [path for name in names for path in groups[name]]
        truth = np.repeat(np.arange(len(names)), [len(groups[name]) for name in names])
        return cls(names, files, truth, families or {})


def instrument_families(
    groups: dict[str, list[Path]], music_dir: Path, level: int
) -> dict[str, str]:
    """Each instrument's family: the folder at ``level`` (TinySOL's ``Brass``, ``Keyboards``,
    ``Strings``, ``Winds`` at level 0 become the study's brass, keyboard, string, woodwind);
    every file of an instrument must lie in the same family folder."""
    music_dir = music_dir.resolve()
    families = {}
    for name, files in groups.items():
        found = {file_label(path, music_dir, "folder", level) for path in files}
        if len(found) != 1:
            raise InputError(f"instrument {name!r} lies in several family folders: {sorted(found)}")
        label = found.pop()
        families[name] = TINYSOL_FAMILIES.get(label, label.replace("_", " ").lower())
    return families


@dataclass(frozen=True)
class Triplets:
    """A rule's triplets over the collection's instruments, as indices into ``terms``."""

    rule: str
    terms: list[str]
    rows: list[tuple[int, int, int]]
    inverted: np.ndarray


def study_distances(
    instruments: list[str], distances: Path | None, ontology: Path | None
) -> tuple[str, list[str], np.ndarray]:
    """Where the tree distances come from, the instruments in that source's order, and their
    distance table. By default the study's own TinySOL table when it holds every instrument,
    else the shipped Hornbostel–Sachs ontology."""
    if ontology is None:
        terms, table = read_distance_table(distances)
        position = {term.casefold(): index for index, term in enumerate(terms)}
        if distances is not None or all(name.casefold() in position for name in instruments):
            where = f"distance table {str(distances)!r}" if distances else TINYSOL_TABLE
            subtable(terms, table, instruments, where)  # refuses an instrument not in it
            ordered = sorted(instruments, key=lambda name: position[name.casefold()])
            return where, ordered, subtable(terms, table, ordered, where)
    tree = read_ontology(ontology)
    return tree.source, list(instruments), tree.distances(list(instruments))


def study_triplets(terms: list[str], table: np.ndarray) -> list[Triplets]:
    built = []
    for rule in RULES:
        rows = make_triplets(table, rule)
        built.append(Triplets(rule, terms, rows, inverted(table, rows)))
    return built


def read_prompt_sets(path: Path | None, instruments: list[str]) -> dict[str, list[str]]:
    """The study's templates, plus those of ``path`` (JSON: set name → a template with
    ``{instrument}``, or an object instrument → sentence, e.g. definitions), each filled in
    for every instrument."""
    sets: dict[str, object] = dict(PROMPT_SETS)
    if path is not None:
        extra = read_json(path, "prompt file")
        if not isinstance(extra, dict):
            raise InputError(f"prompt file {str(path)!r} must be a JSON object: set name → prompts")
        sets |= extra
    filled = {}
    for name, prompts in sets.items():
        if isinstance(prompts, str):
            template = check_template(prompts, "instrument")
            filled[name] = [template.format(instrument=i) for i in instruments]
        elif isinstance(prompts, dict):
            missing = [i for i in instruments if not isinstance(prompts.get(i), str)]
            if missing:
                raise InputError(
                    f"prompt set {name!r} has no sentence for instrument {missing[0]!r}"
                )
            filled[name] = [prompts[i] for i in instruments]
        else:
            raise InputError(f"prompt set {name!r} must be a template or an object of sentences")
    return filled


def class_mean_scores(
    raw: np.ndarray, truth: np.ndarray, classes: int, leave_one_out: bool
) -> np.ndarray:
    """Cosine of every clip to each class's mean raw embedding; with ``leave_one_out`` its own
    class's mean leaves the clip out."""
    raw = np.asarray(raw, dtype=np.float64)
    one_hot = (truth[:, None] == np.arange(classes)[None, :]).astype(np.float64)
    sums, counts = one_hot.T @ raw, one_hot.sum(axis=0)
    scores = unit_rows(raw) @ unit_rows(sums / counts[:, None]).T
    if leave_one_out:
        own = (sums[truth] - raw) / (counts[truth] - 1)[:, None]
        scores[np.arange(len(truth)), truth] = np.sum(unit_rows(raw) * unit_rows(own), axis=1)
    return scores


def triplet_results(
    text: np.ndarray, order: list[int], sets: list[Triplets], space: str
) -> list[dict]:
    """Accuracy of each rule's triplets on unit text rows (``order``: a term → its row)."""
    rows = unit_rows(text)[order]
    results = []
    for triplets in sets:
        a, p, n = (np.array([t[i] for t in triplets.rows], dtype=np.int64) for i in range(3))
        passed = np.sum(rows[a] * rows[p], axis=1) > np.sum(rows[a] * rows[n], axis=1)
        flipped = triplets.inverted
        results.append(
            {
                "rule": triplets.rule,
                "space": space,
                "triplets": len(triplets.rows),
                "inverted": int(flipped.sum()),
                "accuracy": share(passed),
                "accuracy_inverted": share(passed[flipped]),
                "accuracy_others": share(passed[~flipped]),
            }
        )
    return results


def share(outcomes: np.ndarray) -> float | None:
    return float(outcomes.mean()) if outcomes.size else None


def without_predictions(metrics: dict, names: list[str]) -> dict:
    per_class = metrics.pop("per_class_accuracy")
    metrics.pop("predicted")
    return metrics | {"per_instrument": dict(zip(names, per_class, strict=True))}


def zero_shot(
    clips: np.ndarray,
    text: np.ndarray,
    sets: dict[str, list[str]],
    truth: np.ndarray,
    labels: list[str],
) -> list[dict]:
    """Classification of unit ``clips`` by each set's prompts (rows of ``text``, in order)."""
    results, start = [], 0
    for name, sentences in sets.items():
        prompts = unit_rows(text[start : start + len(sentences)])
        metrics = classification_metrics(clips @ prompts.T, truth)
        results.append({"prompts": name, **without_predictions(metrics, labels)})
        start += len(sentences)
    return results


def family_prompt_sets(families: list[str]) -> dict[str, list[str]]:
    """The study's templates filled with the families; none with fewer than two."""
    if len(families) < 2:
        return {}
    return {name: [t.format(instrument=f) for f in families] for name, t in PROMPT_SETS.items()}


def study_model(
    source: EmbeddingSource,
    collection: Collection,
    prompts: dict[str, list[str]],
    triplets: list[Triplets],
) -> dict:
    """Every test for one embedding source (``sources.ModelSource`` or ``PrecomputedSource``)."""
    names, truth = collection.instruments, collection.truth
    negatives = {"negative": [NEGATIVE.format(instrument=name) for name in names]}
    families = sorted(set(collection.families.values()))
    family_sets = family_prompt_sets(families)
    groups = [prompts, negatives, family_sets]  # embedded in this order, one call
    sentences = [s for sets in groups for prompt_set in sets.values() for s in prompt_set]
    text_spaces, audio_spaces = source.spaces["text"], source.spaces["audio"]
    text = source.text(sentences, text_spaces)
    audio = source.audio(collection.files, audio_spaces)
    report: dict = {"name": source.name, "model": source.summary(), "not_measured": []}
    main = next(iter(prompts))  # its rows come first
    order = [names.index(term) for term in triplets[0].terms]
    report["triplets"] = [
        result
        for space in text_spaces
        for result in triplet_results(text[space][: len(names)], order, triplets, space)
    ]
    if "joint" in text_spaces and "joint" in audio_spaces:
        clips, joint = unit_rows(audio["joint"]), text["joint"]
        report["zero_shot"] = zero_shot(clips, joint, prompts, truth, names)
        count = sum(map(len, prompts.values()))
        both = np.concatenate([joint[: len(names)], joint[count : count + len(names)]])
        scores = clips @ unit_rows(both).T
        report["positive_negative"] = {
            "prompts": main,
            **{
                f"top{k}": top_k_accuracy(scores, truth, k) for k in range(1, min(5, len(both)) + 1)
            },
            "negative_won": float(np.mean(predicted_classes(scores, truth) >= len(names))),
        }
        if family_sets:
            of_clip = np.array([families.index(collection.families[names[t]]) for t in truth])
            rows = joint[count + len(names) :]
            report["family_zero_shot"] = zero_shot(clips, rows, family_sets, of_clip, families)
    else:
        report["not_measured"].append("zero-shot (needs joint-space text and audio)")
    report["class_means"] = []
    for space in audio_spaces:
        for leave_one_out in (False, True):
            scores = class_mean_scores(audio[space], truth, len(names), leave_one_out)
            metrics = without_predictions(classification_metrics(scores, truth), names)
            report["class_means"].append(
                {"space": space, "leave_one_out": leave_one_out, **metrics}
            )
    return report


def run_study(
    sources: list[EmbeddingSource],
    collection: Collection,
    prompts: dict[str, list[str]],
    distance_source: str,
    triplets: list[Triplets],
) -> dict:
    """The whole report: the collection, prompts and triplets used, and each model's tests."""
    # embeddings read from files first: a row they lack stops the run before any model work
    first = sorted(range(len(sources)), key=lambda i: not isinstance(sources[i], PrecomputedSource))
    done = {}
    for number, index in enumerate(first, start=1):
        if not isinstance(sources[index], PrecomputedSource):
            print(f"[{number}/{len(sources)}] {sources[index].name}", file=sys.stderr)
        done[index] = study_model(sources[index], collection, prompts, triplets)
    models = [done[index] for index in range(len(sources))]
    seen: dict[str, int] = {}
    for model in models:  # two folders of the same name stay apart in the tables
        seen[model["name"]] = seen.get(model["name"], 0) + 1
        if seen[model["name"]] > 1:
            model["name"] += f" ({seen[model['name']]})"
    return {
        "instruments": {
            n: int(np.sum(collection.truth == i)) for i, n in enumerate(collection.instruments)
        },
        "files": len(collection.files),
        "families": collection.families,
        "prompt_sets": prompts,
        "negative_template": NEGATIVE,
        "family_prompt_sets": family_prompt_sets(sorted(set(collection.families.values()))),
        "distances": distance_source,
        "triplets": {
            t.rule: {
                "count": len(t.rows),
                "inverted": int(t.inverted.sum()),
                "rows": [[t.terms[i] for i in row] for row in t.rows],
            }
            for t in triplets
        },
        "models": models,
    }
