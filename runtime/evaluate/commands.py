"""``ttmr eval retrieval | triplets | instruments | make-triplets | study``: the evaluations on
the command line.

Each command reads and checks all of its input before any model work, writes a JSON report
(and, for instruments and the study, PNG plots) and prints a short table. Embeddings come
from a model folder or, with ``--embeddings DIR``, from files made elsewhere (``sources``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from runtime.cli.arguments import Parser, add_engine_options, embedder_from, model_folder
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
from runtime.evaluate.ontology import DATA, read_distance_table, read_ontology, subtable
from runtime.evaluate.reports import write_json, write_report
from runtime.evaluate.retrieval import evaluate_retrieval, print_retrieval
from runtime.evaluate.sources import EmbeddingSource, ModelSource, PrecomputedSource
from runtime.evaluate.study import (
    TINYSOL_TABLE,
    Collection,
    instrument_families,
    read_prompt_sets,
    run_study,
    study_distances,
    study_triplets,
)
from runtime.evaluate.study_report import markdown, plot_study
from runtime.evaluate.triplet_rules import RULES, inverted, make_triplets, write_triplets
from runtime.evaluate.triplets import evaluate_triplets, print_triplets
from runtime.manifest import RANDOM_WEIGHTS_NOTE

DEFAULT_TEMPLATE = "the sound of a {instrument}"
STUDY_NAMES = DATA / "tinysol_ismir2024_names.json"


def labelled_folder(args: argparse.Namespace, folder: Path) -> dict[str, list[Path]]:
    plain = getattr(args, "plain_labels", False)  # only the study has both
    names = read_names(args.names) if args.names and not plain else None
    return instrument_files(folder, args.label, args.level, names)


def source_from(args: argparse.Namespace, music_dir: Path | None = None) -> EmbeddingSource:
    """The model of ``--model-dir`` (or $TTMR_MODEL_DIR), or the files of ``--embeddings``."""
    if args.embeddings is None:
        return ModelSource(embedder_from(args))
    if args.model_dir:
        raise InputError("give either --model-dir or --embeddings, not both")
    return PrecomputedSource(args.embeddings, music_dir)


def conclude(source: EmbeddingSource, report: dict, out: Path, show: Callable) -> None:
    """Records the model, writes the report, prints its table."""
    report["model"] = source.summary()
    write_json(out, report)
    show(report)
    if report["model"]["random_weights"]:
        print(RANDOM_WEIGHTS_NOTE)


def run_retrieval(args: argparse.Namespace) -> None:
    template = check_template(args.tag_template, "tag")
    source = source_from(args)
    root = (args.root or Path.cwd()).resolve()
    report = evaluate_retrieval(source, args.catalog, args.ground_truth, root, template)
    conclude(source, report, args.out, print_retrieval)


def run_triplets(args: argparse.Namespace) -> None:
    template = check_template(args.template, "instrument")
    check_bootstrap(args.resamples, args.confidence)
    term_files = labelled_folder(args, args.audio_dir) if args.audio_dir else {}
    source = source_from(args, args.audio_dir)
    report = evaluate_triplets(
        source, args.triplets, template, term_files, args.resamples, args.confidence, args.seed
    )
    conclude(source, report, args.out, print_triplets)


def check_out_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} must be a folder, not a file")


def run_instruments(args: argparse.Namespace) -> None:
    from runtime.evaluate.plots import plot_confusion, plot_similarities

    template = check_template(args.template, "instrument")
    check_out_folder(args.out)
    groups = labelled_folder(args, args.music_dir)
    source = source_from(args, args.music_dir)
    report = {"music_dir": str(args.music_dir), **evaluate_instruments(source, groups, template)}
    args.out.mkdir(parents=True, exist_ok=True)
    title = f"zero-shot instruments: accuracy {report['accuracy']:.3f}"
    plot_confusion(report["instruments"], report["confusion"], title, args.out / "confusion.png")
    plot_similarities(report, args.out / "similarities.png")
    conclude(source, report, args.out / "instruments.json", print_instruments)


def read_terms(text: str) -> list[str]:
    """``--terms``: a file of terms, one a line, or a comma-separated list."""
    path = Path(text)
    lines = path.read_text(encoding="utf-8-sig").splitlines() if path.is_file() else text.split(",")
    terms = [term.strip() for term in lines if term.strip() and not term.startswith("#")]
    if not terms:
        raise InputError(f"--terms {text!r} names no terms")
    return terms


def run_make_triplets(args: argparse.Namespace) -> None:
    if args.distances is not None:
        path = None if args.distances == "ismir2024" else Path(args.distances)
        table_terms, table = read_distance_table(path)
        source = args.distances if path else TINYSOL_TABLE
        terms = read_terms(args.terms) if args.terms else table_terms
        table = subtable(table_terms, table, terms, f"distance table {source!r}")
    else:
        tree = read_ontology(args.ontology)
        source = tree.source
        terms = read_terms(args.terms) if args.terms else [leaf.names[0] for leaf in tree.leaves]
        table = tree.distances(terms)
    triplets = make_triplets(table, args.rule)
    flipped = int(inverted(table, triplets).sum())
    note = f"{len(triplets)} triplets by rule {args.rule} from {source}; {flipped} inverted"
    write_triplets(args.out, terms, triplets, note)
    print(f"wrote {note} → {args.out}")


def run_the_study(args: argparse.Namespace) -> None:
    check_out_folder(args.out)
    groups = labelled_folder(args, args.music_dir)
    families = None
    if args.family_level is not None and args.family_level != args.level:
        families = instrument_families(groups, args.music_dir, args.family_level)
    collection = Collection.from_groups(groups, families)
    distance_source, terms, table = study_distances(
        collection.instruments, args.distances, args.ontology
    )
    triplets = study_triplets(terms, table)
    prompts = read_prompt_sets(args.prompts, collection.instruments)
    # read and checked before any model work
    precomputed = [PrecomputedSource(folder, args.music_dir) for folder in args.embeddings_dirs]
    cache = args.cache or args.out / "cache"
    sources: list[EmbeddingSource] = [
        ModelSource(embedder_from(args, str(model_folder(folder))), cache)
        for folder in args.model_dirs or ([] if precomputed else [None])
    ]
    sources += precomputed
    report = run_study(sources, collection, prompts, distance_source, triplets)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "study.json", report)
    table_text = markdown(report)
    write_report(args.out / "study.md", table_text)
    for path in plot_study(report, args.out):
        print(f"wrote {path}")
    print(f"wrote {args.out / 'study.md'}\n")
    print(table_text, end="")


def label_options(level: int, names_help: str, names: Path | None = None) -> Parser:
    labels = Parser(add_help=False)
    labels.add_argument(
        "--label",
        choices=LABEL_SOURCES,
        default="folder",
        help="take each file's instrument from a folder name or the file name's leading letters",
    )
    labels.add_argument(
        "--level",
        type=int,
        default=level,
        help=f"which folder below the music folder names it ({level})",
    )
    labels.add_argument("--names", type=Path, default=names, help=names_help)
    return labels


def add_eval_commands(commands: argparse._SubParsersAction, common: Parser) -> None:
    """``eval`` and its sub-commands; those that run one model take the options of
    ``common`` and, instead of a model, ``--embeddings DIR``."""
    labels = label_options(0, "JSON object: label → instrument name")
    template = Parser(add_help=False)
    template.add_argument(
        "--template", default=DEFAULT_TEMPLATE, help=f"prompt (default {DEFAULT_TEMPLATE!r})"
    )
    precomputed = Parser(add_help=False)
    precomputed.add_argument(
        "--embeddings", type=Path, help="a folder of embeddings made elsewhere, instead of a model"
    )

    evaluate = commands.add_parser("eval", help="measure a model (retrieval, instruments, study)")
    kinds = evaluate.add_subparsers(dest="evaluation", required=True, parser_class=Parser)
    sub = kinds.add_parser(
        "retrieval",
        parents=[common, precomputed],
        help="caption and tag retrieval metrics on a catalog",
    )
    sub.add_argument("catalog", type=Path, help="a catalog made by 'index'")
    sub.add_argument("ground_truth", type=Path, help=".json or .csv: queries → track ids")
    sub.add_argument("--out", type=Path, required=True, help="report (.json)")
    sub.add_argument("--root", type=Path, help="folder relative track ids start from (cwd)")
    sub.add_argument("--tag-template", default="{tag}", help="text of a tag query ('{tag}')")
    sub.set_defaults(run=run_retrieval)

    sub = kinds.add_parser(
        "triplets",
        parents=[common, precomputed, labels, template],
        help="instrument triplet accuracy",
    )
    sub.add_argument("triplets", type=Path, help="CSV: anchor,positive,negative")
    sub.add_argument("--out", type=Path, required=True, help="report (.json)")
    sub.add_argument("--audio-dir", type=Path, help="music folder giving terms their audio")
    sub.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    sub.add_argument("--confidence", type=float, default=0.95, help="interval level")
    sub.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    sub.set_defaults(run=run_triplets)

    sub = kinds.add_parser(
        "instruments",
        parents=[common, precomputed, labels, template],
        help="zero-shot instrument accuracy",
    )
    sub.add_argument("music_dir", type=Path, help="a folder of single-instrument recordings")
    sub.add_argument("--out", type=Path, required=True, help="folder for the report and plots")
    sub.set_defaults(run=run_instruments)

    sub = kinds.add_parser("make-triplets", help="instrument triplets from an ontology")
    sub.add_argument("--out", type=Path, required=True, help="triplet file (.csv)")
    sub.add_argument(
        "--rule", choices=RULES, default="strict", help="strict (default) or ismir2024"
    )
    source = sub.add_mutually_exclusive_group()
    source.add_argument("--ontology", type=Path, help="tree file (default: Hornbostel–Sachs)")
    source.add_argument(
        "--distances",
        nargs="?",
        const="ismir2024",
        help="a distance table (.csv); alone: the ISMIR 2024 study's TinySOL table",
    )
    sub.add_argument("--terms", help="terms, comma-separated or a file (default: all)")
    sub.set_defaults(run=run_make_triplets)

    study_labels = label_options(
        1, "JSON label → name (default: TinySOL → the study's names)", STUDY_NAMES
    )
    study_labels.add_argument(
        "--plain-labels", action="store_true", help="use labels as names, lower-cased"
    )
    sub = kinds.add_parser(
        "study", parents=[study_labels], help="every test of the ISMIR 2024 instrument study"
    )
    sub.add_argument("music_dir", type=Path, help="labelled clips (TinySOL's layout by default)")
    sub.add_argument("--out", type=Path, required=True, help="folder for the report and plots")
    sub.add_argument(
        "--model-dir", dest="model_dirs", action="append", default=[], help="a model (repeat)"
    )
    sub.add_argument(
        "--embeddings",
        dest="embeddings_dirs",
        type=Path,
        action="append",
        default=[],
        help="a folder of embeddings made elsewhere (repeat)",
    )
    sub.add_argument("--cache", type=Path, help="audio embedding cache (default: OUT/cache)")
    tree = sub.add_mutually_exclusive_group()
    tree.add_argument("--distances", type=Path, help="distance table (default: the study's)")
    tree.add_argument("--ontology", type=Path, help="tree file instead of a distance table")
    sub.add_argument("--prompts", type=Path, help="JSON: more prompt sets")
    sub.add_argument(
        "--family-level",
        type=int,
        default=0,
        help="the folder level naming each instrument's family (0: TinySOL's Brass, …); "
        "the instrument's own level: no family test",
    )
    sub.add_argument(
        "--no-families",
        dest="family_level",
        action="store_const",
        const=None,
        help="skip the instrument-family test",
    )
    add_engine_options(sub)
    sub.set_defaults(run=run_the_study)
