"""The study's report as people read it: one markdown table with the models side by side
(the rows: every test and metric; pasted as is into a paper's notes or an issue) and its
figures."""

from __future__ import annotations

from pathlib import Path

ZERO_SHOT = ("top1", "top5", "weighted_f1", "roc_auc", "average_precision", "balanced_accuracy")
CLASS_MEANS = ("top1", "weighted_f1", "roc_auc", "average_precision", "balanced_accuracy")


def model_rows(model: dict) -> dict[tuple[str, str], float | None]:
    """(test, metric) → value, for one model's results."""
    rows: dict[tuple[str, str], float | None] = {}
    for t in model["triplets"]:
        test = f"text triplets, {t['rule']} rule ({t['triplets']}, {t['inverted']} inverted)"
        rows[(test, f"accuracy, {t['space']}")] = t["accuracy"]
    for kind, label in (("zero_shot", "zero-shot"), ("family_zero_shot", "families zero-shot")):
        for z in model.get(kind, []):
            for metric in ZERO_SHOT:
                rows[(f"{label}, prompts {z['prompts']}", metric)] = z.get(metric)
    if "positive_negative" in model:
        pn = model["positive_negative"]
        for metric in ("top1", "negative_won"):
            rows[(f"positive/negative, prompts {pn['prompts']}", metric)] = pn.get(metric)
    for c in model["class_means"]:
        mode = "leave-one-out" if c["leave_one_out"] else "clip included"
        for metric in CLASS_MEANS:
            rows[(f"audio class means, {c['space']}, {mode}", metric)] = c.get(metric)
    return rows


def markdown(report: dict) -> str:
    """One table: a row per test and metric, a column per model."""
    per_model = [model_rows(model) for model in report["models"]]
    keys = list(dict.fromkeys(key for rows in per_model for key in rows))
    names = [model["name"] for model in report["models"]]
    counts = ", ".join(f"{name} {count}" for name, count in report["instruments"].items())
    lines = [
        f"Instrument study: {report['files']} clips of {len(report['instruments'])} "
        f"instruments ({counts}); distances: {report['distances']}.",
        "",
        "| test | metric | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    for test, metric in keys:
        values = [rows.get((test, metric)) for rows in per_model]
        cells = ["—" if v is None else f"{v:.4f}" for v in values]
        lines.append(f"| {test} | {metric} | " + " | ".join(cells) + " |")
    random = [m["name"] for m in report["models"] if m["model"].get("random_weights")]
    if random:
        lines += ["", f"Random weights (meaningless numbers): {', '.join(random)}."]
    return "\n".join(lines) + "\n"


def plot_study(report: dict, out: Path) -> list[Path]:
    """Per-instrument accuracy (main prompt set), a confusion matrix per model, and triplet
    accuracy per rule and space; the files written."""
    from runtime.evaluate.plots import plot_bars, plot_confusion

    models = report["models"]
    written = []
    measured = [m for m in models if m.get("zero_shot")]
    if measured:
        names = list(report["instruments"])
        main = measured[0]["zero_shot"][0]["prompts"]
        bars = {
            m["name"]: [m["zero_shot"][0]["per_instrument"][n] for n in names] for m in measured
        }
        path = out / "per_instrument_accuracy.png"
        plot_bars(names, bars, f"zero-shot accuracy per instrument, prompts {main!r}", path)
        written.append(path)
        for index, model in enumerate(measured, start=1):
            first = model["zero_shot"][0]
            path = out / f"confusion_{index}.png"
            title = f"{model['name']}: prompts {main!r}, top-1 {first['top1']:.3f}"
            plot_confusion(names, first["confusion"], title, path)
            written.append(path)
    groups = list(
        dict.fromkeys(f"{t['rule']}, {t['space']}" for m in models for t in m["triplets"])
    )
    if groups:
        bars = {
            m["name"]: [
                next(
                    (t["accuracy"] for t in m["triplets"] if f"{t['rule']}, {t['space']}" == g),
                    None,
                )
                for g in groups
            ]
            for m in models
        }
        path = out / "triplet_accuracy.png"
        plot_bars(groups, bars, "text triplet accuracy per rule and space", path)
        written.append(path)
    return written
