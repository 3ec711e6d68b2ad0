"""``regbench compare`` (``make compare``): the recorded runs of one experiment as a comparison
of arms, written to ``reports/<experiment>/`` and logged (``regbench.analysis.publish``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from regbench.cli import common
from regbench.locations import REPORTS_DIR, unwritable_folder

with common.collector_paused():
    from regbench.analysis.comparison import DEFAULT_MARGINS, DEFAULT_REFERENCE, Target
    from regbench.analysis.publish import COMPARISONS_EXPERIMENT, compare_experiment
    from regbench.errors import CompareError, StoreError


def parse_margins(items: list[str]) -> dict[str, float]:
    """``["test_accuracy=0.002"]`` -> ``{"test_accuracy": 0.002}``; refuses unknown metrics and
    margins that are not positive numbers."""
    margins = {}
    for item in items:
        metric, _, value = item.partition("=")
        if metric not in DEFAULT_MARGINS:
            raise ValueError(f"--margin {item}: unknown metric; allowed are "
                             f"{', '.join(DEFAULT_MARGINS)}")
        try:
            margins[metric] = float(value)
        except ValueError:
            margins[metric] = float("nan")
        if not margins[metric] > 0 or margins[metric] == float("inf"):
            raise ValueError(f"--margin {item}: the margin must be a finite number > 0")
    return margins


def parser() -> argparse.ArgumentParser:
    parser = common.ArgumentParser(prog="regbench compare", description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="regbench", help="experiment to compare")
    parser.add_argument("--filter", default=None,
                        help="MLflow filter string, e.g. \"params.model.name = 'mlp_bn'\"")
    parser.add_argument("--reference", default=DEFAULT_REFERENCE,
                        help=f"reference arm (e.g. l2 or l2-0.0001); default {DEFAULT_REFERENCE}")
    parser.add_argument("--margin", action="append", default=[], metavar="METRIC=VALUE",
                        help="equivalence margin, e.g. test_accuracy=0.002 (default: the margins "
                        "the runs' preset stated, else "
                        + ", ".join(f"{k}={v:g}" for k, v in DEFAULT_MARGINS.items()) + ")")
    parser.add_argument("--target", action="append", default=[], metavar="METRIC>=VALUE",
                        help="a goal on each run's final value, reported per arm, e.g. "
                        "val_accuracy>=0.85 (repeatable)")
    parser.add_argument("--tracking-uri", default=None,
                        help="default: $MLFLOW_TRACKING_URI, else the project's SQLite store")
    parser.add_argument("--out", type=Path, default=None,
                        help="report folder (default: reports/<experiment>)")
    parser.add_argument("--no-log", action="store_true", help="do not log a comparison run")
    parser.add_argument("--mix-code", action="store_true",
                        help="compare arms whose runs were trained by more than one code "
                        "identity (the report names each); refused without it")
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    out = args.out or REPORTS_DIR / args.experiment
    try:
        margins = parse_margins(args.margin)
        targets = tuple(Target.parse(text) for text in args.target)
        if reason := unwritable_folder(out):
            raise ValueError(f"--out {out}: cannot be created, {reason}")
    except ValueError as error:
        common.fail(str(error))
    try:
        published = compare_experiment(
            args.experiment, args.reference, out, common.command_line("compare", argv),
            args.tracking_uri, args.filter, margins, targets, args.mix_code, not args.no_log)
    except (StoreError, CompareError) as error:
        common.fail(str(error))
    if published.run_id:
        print(f"logged as run {published.run_id} in experiment '{COMPARISONS_EXPERIMENT}'")
    print(published.markdown, end="")
    print(f"report: {out}/ ({', '.join(p.name for p in published.paths)})")
    return 0
