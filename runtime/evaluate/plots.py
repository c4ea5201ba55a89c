"""PNG figures of the instrument evaluations. matplotlib is imported here only, and drawn through
its Agg canvas without pyplot, so nothing needs a display and ``import runtime`` stays light."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.files import write_atomically


def save(figure, path: Path) -> None:
    """The figure as ``path`` (its suffix names the format), replaced whole or not at all."""
    write_atomically(path, lambda fh: figure.savefig(fh, dpi=120, format=path.suffix[1:]))


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_confusion(names: list[str], counts: list, title: str, path: Path) -> None:
    """Rows: true instrument; columns: predicted; colour: share of the row; text: count."""
    counts = np.array(counts)
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
    axes.set_title(title)
    save(figure, path)


def plot_bars(groups: list[str], values: dict[str, list], title: str, path: Path) -> None:
    """Grouped bars: one group per label in ``groups``, one bar per model (None: no bar)."""
    figure = new_figure(3.0 + 0.5 * len(groups) * max(1, len(values)) ** 0.5, 4.5)
    axes = figure.subplots()
    width = 0.8 / max(1, len(values))
    for index, (model, heights) in enumerate(values.items()):
        positions = np.arange(len(groups)) + (index - (len(values) - 1) / 2) * width
        shown = [np.nan if h is None else h for h in heights]
        axes.bar(positions, shown, width=width, label=model)
    axes.set_xticks(range(len(groups)), groups, rotation=45, ha="right")
    axes.set_ylim(0.0, 1.0)
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.legend(fontsize="small")
    save(figure, path)


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
    save(figure, path)
