"""``regbench study PRESET`` (``make study``): the arms of a preset's sweep compared on fresh
seeds, grown in rounds until every comparison is decided (``regbench.design.study``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from regbench.cli import common, options
from regbench.locations import REPORTS_DIR, unwritable_folder

with common.collector_paused():
    from regbench.analysis.comparison import DEFAULT_REFERENCE, TESTED
    from regbench.design import presets
    from regbench.design.study import grow
    from regbench.design.sweep import train_command
    from regbench.errors import CompareError, StoreError
    from regbench.record import arm_name


def parser() -> argparse.ArgumentParser:
    parser = common.ArgumentParser(prog="regbench study", description=__doc__.splitlines()[0])
    parser.add_argument("preset", help="an experiment preset whose sweep names the arms, e.g. "
                        "l2_vs_custom")
    parser.add_argument("--experiment", required=True, help="the MLflow experiment")
    parser.add_argument("--reference", default=DEFAULT_REFERENCE,
                        help=f"reference arm (default {DEFAULT_REFERENCE})")
    options.add_schedule_arguments(parser)
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--out", type=Path, default=None, help="default: reports/<experiment>")
    options.add_job_arguments(parser)
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_intermixed_args(argv)
    extra = options.job_overrides(args)
    out = args.out or REPORTS_DIR / args.experiment
    jobs = options.composed_or_exit("-m", f"experiment={args.preset}", f"seed={args.start}",
                                    f"mlflow.experiment_name={args.experiment}", *extra)
    arms = sorted({job.regularizer.name for job in jobs})
    if arm_name(args.reference) not in arms:
        common.fail(f"--reference {args.reference}: not an arm of {args.preset}; allowed are "
                    f"{', '.join(arms)} (or one's label, e.g. l2-0.0001)")
    schedule = options.schedule_from(args, (len(arms) - 1) * len(TESTED))
    if reason := unwritable_folder(out):
        common.fail(f"--out {out}: cannot be created, {reason}")

    def commands(seeds: range, regularizers: frozenset[str] | None) -> list[list[str]]:
        only = [] if regularizers is None else [f"regularizer={','.join(sorted(regularizers))}"]
        return [train_command("-m", f"experiment={args.preset}",
                              f"mlflow.experiment_name={args.experiment}",
                              f"seed={','.join(map(str, seeds))}", *only, *extra)]

    try:
        return grow(commands, args.experiment, args.reference, schedule, args.start, out,
                    common.command_line("study", argv), args.tracking_uri,
                    margins=options.margins_or_exit(f"experiment={args.preset}", *extra),
                    reuse_stale=args.reuse_stale,
                    about=f"The preset {args.preset}: {presets.description(args.preset)}")
    except (StoreError, CompareError) as error:
        common.fail(str(error))
