"""``ttmr eval retrieval | triplets | instruments``: the evaluations on the command line.

Each command reads and checks all of its input before any model work, writes a JSON report
(and, for instruments, PNG plots) and prints a short table."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from runtime.arguments import Parser, embedder_from
from runtime.embedder import Embedder
from runtime.errors import InputError
from runtime.evaluate.inputs import check_template
from runtime.evaluate.instruments import (
    LABEL_SOURCES,
    evaluate_instruments,
    instrument_files,
    print_instruments,
    read_names,
)
from runtime.evaluate.metrics import check_bootstrap
from runtime.evaluate.reports import RANDOM_WEIGHTS_NOTE, model_summary, write_json
from runtime.evaluate.retrieval import evaluate_retrieval, print_retrieval
from runtime.evaluate.triplets import evaluate_triplets, print_triplets

DEFAULT_TEMPLATE = "the sound of a {instrument}"


def labelled_folder(args: argparse.Namespace, folder: Path) -> dict[str, list[Path]]:
    names = read_names(args.names) if args.names else None
    return instrument_files(folder, args.label, args.level, names)


def conclude(
    args: argparse.Namespace, model: Embedder, report: dict, out: Path, show: Callable
) -> None:
    """Records the model, writes the report, prints its table."""
    report["model"] = model_summary(model, args.precision)
    write_json(out, report)
    show(report)
    if report["model"]["random_weights"]:
        print(RANDOM_WEIGHTS_NOTE)


def run_retrieval(args: argparse.Namespace) -> None:
    template = check_template(args.tag_template, "tag")
    model = embedder_from(args)
    root = (args.root or Path.cwd()).resolve()
    report = evaluate_retrieval(model, args.catalog, args.ground_truth, root, template)
    conclude(args, model, report, args.out, print_retrieval)


def run_triplets(args: argparse.Namespace) -> None:
    template = check_template(args.template, "instrument")
    check_bootstrap(args.resamples, args.confidence)
    term_files = labelled_folder(args, args.audio_dir) if args.audio_dir else {}
    model = embedder_from(args)
    report = evaluate_triplets(
        model, args.triplets, template, term_files, args.resamples, args.confidence, args.seed
    )
    conclude(args, model, report, args.out, print_triplets)


def run_instruments(args: argparse.Namespace) -> None:
    from runtime.evaluate.plots import plot_confusion, plot_similarities

    template = check_template(args.template, "instrument")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {str(args.out)!r} must be a folder, not a file")
    groups = labelled_folder(args, args.music_dir)
    model = embedder_from(args)
    report = {"music_dir": str(args.music_dir), **evaluate_instruments(model, groups, template)}
    args.out.mkdir(parents=True, exist_ok=True)
    plot_confusion(report, args.out / "confusion.png")
    plot_similarities(report, args.out / "similarities.png")
    conclude(args, model, report, args.out / "instruments.json", print_instruments)


def add_eval_commands(commands: argparse._SubParsersAction, common: Parser) -> None:
    """``eval`` and its three sub-commands, each taking the model options of ``common``."""
    labels = Parser(add_help=False)
    labels.add_argument(
        "--label",
        choices=LABEL_SOURCES,
        default="folder",
        help="take each file's instrument from a folder name or the file name's leading letters",
    )
    labels.add_argument(
        "--level", type=int, default=0, help="which folder below the music folder names it (0)"
    )
    labels.add_argument("--names", type=Path, help="JSON object: label → instrument name")
    template = Parser(add_help=False)
    template.add_argument(
        "--template", default=DEFAULT_TEMPLATE, help=f"prompt (default {DEFAULT_TEMPLATE!r})"
    )

    evaluate = commands.add_parser("eval", help="measure a model (retrieval, instruments)")
    kinds = evaluate.add_subparsers(dest="evaluation", required=True, parser_class=Parser)
    sub = kinds.add_parser(
        "retrieval", parents=[common], help="caption and tag retrieval metrics on a catalog"
    )
    sub.add_argument("catalog", type=Path, help="a catalog made by 'index'")
    sub.add_argument("ground_truth", type=Path, help=".json or .csv: queries → track ids")
    sub.add_argument("--out", type=Path, required=True, help="report (.json)")
    sub.add_argument("--root", type=Path, help="folder relative track ids start from (cwd)")
    sub.add_argument("--tag-template", default="{tag}", help="text of a tag query ('{tag}')")
    sub.set_defaults(run=run_retrieval)

    sub = kinds.add_parser(
        "triplets", parents=[common, labels, template], help="instrument triplet accuracy"
    )
    sub.add_argument("triplets", type=Path, help="CSV: anchor,positive,negative")
    sub.add_argument("--out", type=Path, required=True, help="report (.json)")
    sub.add_argument("--audio-dir", type=Path, help="music folder giving terms their audio")
    sub.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    sub.add_argument("--confidence", type=float, default=0.95, help="interval level")
    sub.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    sub.set_defaults(run=run_triplets)

    sub = kinds.add_parser(
        "instruments", parents=[common, labels, template], help="zero-shot instrument accuracy"
    )
    sub.add_argument("music_dir", type=Path, help="a folder of single-instrument recordings")
    sub.add_argument("--out", type=Path, required=True, help="folder for the report and plots")
    sub.set_defaults(run=run_instruments)
