"""PNG figures of an instrument report. matplotlib is imported here only, and drawn through
its Agg canvas without pyplot, so nothing needs a display and ``import runtime`` stays light."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_confusion(report: dict, path: Path) -> None:
    """Rows: true instrument; columns: predicted; colour: share of the row; text: count."""
    names, counts = report["instruments"], np.array(report["confusion"])
    shares = counts / counts.sum(axis=1, keepdims=True)
    size = 2.5 + 0.45 * len(names)
    figure = new_figure(size + 1.0, size)
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of the instrument's files")
    for (row, column), count in np.ndenumerate(counts):
        if count:
            colour = "white" if shares[row, column] > 0.5 else "black"
            axes.text(column, row, str(count), ha="center", va="center", color=colour)
    axes.set_xticks(range(len(names)), names, rotation=60, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"zero-shot instruments: accuracy {report['accuracy']:.3f}")
    figure.savefig(path, dpi=120)


def plot_similarities(report: dict, path: Path) -> None:
    """Histograms of each file's cosine similarity to its own instrument's prompt and to the
    other prompts: the more they overlap, the less the prompts separate the instruments."""
    names = report["instruments"]
    similarities = np.array([p["similarities"] for p in report["predictions"]])
    truth = np.array([names.index(p["instrument"]) for p in report["predictions"]])
    own = np.zeros(similarities.shape, dtype=bool)
    own[np.arange(len(truth)), truth] = True
    figure = new_figure(7.0, 4.0)
    axes = figure.subplots()
    low, high = similarities.min(), similarities.max()
    bins = np.linspace(low, max(high, low + 1e-6), 41)
    axes.hist(similarities[~own], bins=bins, density=True, alpha=0.6, label="other prompts")
    axes.hist(similarities[own], bins=bins, density=True, alpha=0.6, label="own prompt")
    axes.set_xlabel("cosine similarity of a file to a prompt (joint space)")
    axes.set_ylabel("density")
    axes.set_title(f"prompt: {report['template']!r}")
    axes.legend()
    figure.savefig(path, dpi=120)
