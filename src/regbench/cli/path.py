"""``regbench path run|report|tuned PRESET`` (``make path``, ``make tuned``): a strength path
trained, reported and its selections compared on fresh seeds (``regbench.design.path``).

``run`` trains every regularizer (default: the preset's pinned ones, else every built-in with a
penalty) over its grid on the selection seeds, finished jobs skipped; ``report`` selects a
strength per regularizer on validation and writes reports/PRESET/; ``tuned`` trains each
selection and ``none`` on fresh seeds in rounds until decided, into PRESET-tuned."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from regbench.cli import common, options
from regbench.locations import REPORTS_DIR, unwritable_folder, write_whole

with common.collector_paused():
    from regbench.analysis.comparison import TESTED
    from regbench.analysis.publish import log_report
    from regbench.analysis.report import provenance
    from regbench.design import calibrate, path, presets, study
    from regbench.errors import CompareError, ConfigError, StoreError
    from regbench.run import store
    from regbench.run.tracking import git_commit

STEPS = ("run", "report", "tuned")


def parser() -> argparse.ArgumentParser:
    parser = common.ArgumentParser(prog="regbench path", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("preset", help="an experiment preset, e.g. path_mnist_small; also the "
                        "name of the MLflow experiment, unless the overrides change its data or "
                        "model (presets.experiment_name)")
    parser.add_argument("--regularizers", type=options.options_list, default=None,
                        help="run: the options to train; tuned: the options to compare (each "
                        "needs path runs); comma-separated (default: the preset's pinned ones, "
                        "else every built-in with a penalty)")
    parser.add_argument("--rule", choices=presets.RULES, default="best",
                        help="selection for tuned")
    options.add_schedule_arguments(parser)  # tuned: its rounds of fresh seeds
    parser.add_argument("--out", type=Path, default=None,
                        help="default: reports/<preset> (report), reports/<preset>-tuned (tuned)")
    options.add_job_arguments(parser)
    return parser


def run_step(args: argparse.Namespace, extra: tuple[str, ...]) -> int:
    """Train the path (calibrating each grid the preset does not pin)."""
    chosen = args.regularizers or presets.default_options(args.experiment)
    options.options_or_exit(args.preset, tuple(chosen), extra)
    try:
        found, calibrations = path.grids(args.preset, chosen, extra, args.tracking_uri,
                                         args.experiment)
    except (ConfigError, StoreError) as error:
        common.fail(str(error))
    if calibrations:
        print(calibrate.markdown(calibrations), file=sys.stderr)
    try:
        return path.train_bracketed(args.preset, found, extra, args.experiment,
                                    args.tracking_uri, args.reuse_stale)[0]
    except (StoreError, CompareError) as error:
        common.fail(str(error))


def report_step(args: argparse.Namespace, recorded: path.PathStudy, header: str) -> int:
    """Write and log reports/PRESET/path.md and path.png."""
    paths = path.write_report(recorded, args.out or REPORTS_DIR / args.experiment, header)
    run_id = log_report(paths, args.tracking_uri, f"path-{args.experiment}",
                        {"compared_experiment": args.experiment, "report": "path"})
    print(paths[0].read_text(), end="")
    print(f"report: {paths[0].parent}/ (path.md, path.png), logged as run {run_id}")
    return 0


def tuned_step(args: argparse.Namespace, recorded: path.PathStudy, header: str,
               extra: tuple[str, ...], command: str) -> int:
    """Each selection and ``none`` on fresh seeds, in rounds until decided; a selection at a
    no-op strength (``path.no_op_reason``) is left out of the comparisons and their family,
    with its reason in selection.md."""
    tuned = f"{args.experiment}-tuned"
    # default: the options a path trains unless told, those this path has
    chosen_grids = path.chosen_strengths(
        recorded, args.regularizers or presets.default_options(args.experiment), args.rule,
        args.experiment, every=bool(args.regularizers))
    # a selection at a no-op strength is none again: its comparison would be none with none
    no_ops = {name: reason for name in chosen_grids
              if (reason := path.no_op_reason(recorded, name, args.rule))}
    if len(no_ops) == len(chosen_grids):
        common.fail(f"tuned {args.preset}: every selected strength is a no-op "
                    f"({'; '.join(no_ops.values())}): nothing to compare with {presets.CONTROL}")
    for name in no_ops:
        del chosen_grids[name]
    out = args.out or REPORTS_DIR / tuned
    family = len(chosen_grids) * len(TESTED)
    schedule = options.schedule_from(args, family)
    margins = options.margins_or_exit(f"experiment={args.preset}", *extra)
    plan = "\n".join(path.planned_seeds(recorded, chosen_grids, margins, family,
                                         schedule.max_seeds))
    chosen = path.selection_markdown(
        [s for s in recorded.selections if s.regularizer in chosen_grids], args.rule)
    if no_ops:
        chosen += ("\nNot compared (the strength chosen is in effect none, so its comparison "
                   "would be none against none): " + "; ".join(no_ops.values()) + ".\n")
    write_whole(out / "selection.md", header + chosen + (f"\n{plan}\n" if plan else ""))
    print(chosen)
    print(plan, file=sys.stderr)
    return study.grow(
        lambda seeds, regularizers: path.train_commands(args.preset, chosen_grids, tuple(seeds),
                                                        tuned, extra, regularizers),
        tuned, presets.CONTROL, schedule, presets.TUNED_SEED_START, out,
        command, args.tracking_uri, margins, arms=tuple(chosen_grids),
        reuse_stale=args.reuse_stale, about=plan)


def main(argv: list[str]) -> int:
    args = parser().parse_intermixed_args(argv)
    allowed = presets.path_presets()
    if args.step != "report" and args.preset not in allowed:
        common.fail(f"{args.step} {args.preset}: not a path preset; allowed are "
                    f"{', '.join(allowed)}")
    if args.out and (reason := unwritable_folder(args.out)):
        common.fail(f"--out {args.out}: cannot be created, {reason}")
    extra = options.job_overrides(args)
    args.experiment = options.experiment_or_exit(args.preset, extra) if args.preset in allowed \
        else args.preset  # report: any experiment, by name
    if args.step == "run":
        return run_step(args, extra)
    command = common.command_line("path", argv)
    try:
        store.connect(args.tracking_uri, create=False)
        recorded = path.read_path(args.experiment, args.reuse_stale)
        header = provenance(command, git_commit(), recorded.runs, recorded.code_notes)
        if args.step == "report":
            return report_step(args, recorded, header)
        return tuned_step(args, recorded, header, extra, command)
    except (StoreError, CompareError) as error:
        common.fail(str(error))
