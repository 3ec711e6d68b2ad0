"""``regbench verdict OPTION [--preset PRESET]`` (``make verdict``): one regularizer, from a
registered class to a verdict, in one command (``regbench.design.verdict``): calibrate, path,
select on validation, fresh seeds against none and L2 in rounds, report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from regbench.cli import common, options
from regbench.locations import REPORTS_DIR, unwritable_folder, write_whole

with common.collector_paused():
    import pandas as pd

    from regbench.analysis import report
    from regbench.analysis.comparison import TESTED
    from regbench.analysis.publish import log_report
    from regbench.config import registry
    from regbench.design import path, pool, presets, verdict
    from regbench.design import study as rounds
    from regbench.errors import CompareError, ConfigError, StoreError
    from regbench.run.tracking import git_commit


def parser() -> argparse.ArgumentParser:
    parser = common.ArgumentParser(prog="regbench verdict",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("option", help="a registered regularizer (REGBENCH_PLUGINS names "
                        "the file that registers yours; make verdict plugin=FILE sets it)")
    parser.add_argument("--preset", default=verdict.DEFAULT_PRESET,
                        help=f"a strength-path preset (default {verdict.DEFAULT_PRESET})")
    parser.add_argument("--rule", choices=presets.RULES, default="best",
                        help="how the strengths are chosen on validation")
    options.add_schedule_arguments(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="default: reports/<option>-<preset>")
    options.add_job_arguments(parser)
    return parser


def checked_option(args: argparse.Namespace) -> registry.Option:
    """The option to judge, on a path preset, with a report folder that can be written; else
    one line and exit 2."""
    try:
        option = registry.get(args.option)
    except ConfigError as error:
        common.fail(str(error))
    if option.target is None or option.name == verdict.BASELINE:
        common.fail(f"{args.option}: the verdict compares an option with {presets.CONTROL} and "
                    f"{verdict.BASELINE}; choose another")
    allowed = presets.path_presets()
    if args.preset not in allowed:
        common.fail(f"--preset {args.preset}: not a path preset; allowed are "
                    f"{', '.join(allowed)}")
    return option


def main(argv: list[str]) -> int:
    args = parser().parse_intermixed_args(argv)
    started = time.time()
    schedule = options.schedule_from(args, len((presets.CONTROL, verdict.BASELINE)) * len(TESTED))
    option = checked_option(args)
    extra = options.job_overrides(args)
    experiment = options.experiment_or_exit(args.preset, extra)
    out = args.out or REPORTS_DIR / f"{option.name}-{experiment}"
    if reason := unwritable_folder(out):
        common.fail(f"--out {out}: cannot be created, {reason}")
    shown = (option.name, verdict.BASELINE)
    options.options_or_exit(args.preset, shown, extra)
    try:
        grids, _ = path.grids(args.preset, list(shown), extra, args.tracking_uri, experiment)
    except (ConfigError, StoreError) as error:
        common.fail(str(error))
    try:
        code, recorded = path.train_bracketed(args.preset, grids, extra, experiment,
                                              args.tracking_uri, args.reuse_stale)
        if recorded is None:  # interrupted
            return code
        chosen = path.chosen_strengths(recorded, list(shown), args.rule, experiment)
    except (StoreError, CompareError) as error:
        common.fail(str(error))
    # a reference at a no-op strength is none again: not compared separately (nor trained)
    no_op = path.no_op_reason(recorded, verdict.BASELINE, args.rule)
    versus = () if no_op else (verdict.BASELINE,)
    if no_op:
        del chosen[verdict.BASELINE]
        schedule = options.schedule_from(args, len((presets.CONTROL, *versus)) * len(TESTED))
    fresh = f"{experiment}-{verdict.EXPERIMENT_SUFFIX}"
    margins = options.margins_or_exit(f"experiment={args.preset}", *extra)
    plan = "\n".join(path.planned_seeds(
        recorded, {option.name: chosen[option.name]}, margins,
        len((presets.CONTROL, *versus)) * len(TESTED), schedule.max_seeds))
    print(plan, file=sys.stderr)
    command = common.command_line("verdict", argv)

    def write(comparisons: list[rounds.Tracked], runs: pd.DataFrame,
              code_notes: list[str]) -> None:
        since = pd.Timestamp(started, unit="s", tz="UTC")
        trained = pd.concat([frame[frame["start_time"] >= since]
                             for frame in (runs, recorded.runs)])
        seeds = int(runs["seed"].nunique())
        sentence = verdict.answer(option.name, comparisons, seeds)
        header = report.provenance(command, git_commit(), runs,
                                   [*recorded.code_notes, *code_notes])
        text = out / verdict.REPORT
        earlier = text.read_text() if text.exists() else None
        write_whole(text, verdict.markdown(option.name, experiment, header, sentence, recorded,
                                           shown, comparisons, schedule, margins,
                                           (time.time() - started) / 60, trained,
                                           pool.workers(), runs, earlier, no_op))
        log_report([text], args.tracking_uri, f"verdict-{option.name}-{experiment}",
                   {"compared_experiment": fresh, "report": "verdict"})
        print(sentence)
        print(f"report: {text}", file=sys.stderr)

    try:
        return max(code, rounds.grow(
            lambda seeds, regularizers: path.train_commands(args.preset, chosen, tuple(seeds),
                                                            fresh, extra, regularizers),
            fresh, presets.CONTROL, schedule, presets.VERDICT_SEED_START, out, command,
            args.tracking_uri, margins, versus=versus, arms=(option.name,),
            on_stop=write, reuse_stale=args.reuse_stale, about=plan))
    except (StoreError, CompareError) as error:
        common.fail(str(error))
