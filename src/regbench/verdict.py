"""``python -m regbench.verdict OPTION [--preset PRESET]`` (``make verdict``): one regularizer,
from a registered class to a verdict, in one command.

1. calibrate: OPTION's strength grid on the preset (``regbench.calibrate``; L2's too unless the
   preset pins it), logged in the path's experiment PRESET;
2. path: OPTION, L2 and ``none`` over their grids on the selection seeds
   (``path.train_commands``), into PRESET, where a path trained before is found, not retrained;
3. select: each strength on validation only (``--rule``: best or 1-SE);
4. compare: OPTION at its strength against ``none`` and against L2 at its own, on fresh seeds
   from ``path.TUNED_SEED_START`` in the experiment PRESET-tuned (``make tuned``'s, so its runs
   of none and L2 count), grown in the rounds of the sequential design (``study.grow``) until
   the four comparisons (two references x test accuracy and test data loss) are decided;
5. report: reports/OPTION-PRESET/verdict.md opens with one sentence answering the question, then
   the calibration, the path and the comparison; sequential.md and comparison.md beside it.
   It is logged to MLflow as the other reports are.

Running it again skips every finished run, so an interrupted verdict resumes; exit codes are
those of the other commands (2 bad input, 130 Ctrl-C, 1 a failed job).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from regbench import cli

if __name__ == "__main__":
    cli.interrupts_in_one_line()

with cli.collector_paused():
    import pandas as pd

    from regbench import calibrate, compare, path, query, registry, report, store
    from regbench import study as rounds
    from regbench.locations import REPORTS_DIR, unwritable_folder
    from regbench.schema import ConfigError
    from regbench.tracking import git_commit

DEFAULT_PRESET = "path_mnist_small"
BASELINE = "l2"  # the established regularizer a new one must also beat
REPORT = "verdict.md"


def answer(option: str, comparisons: list[rounds.Tracked], seeds: int) -> str:
    """The report's first sentence: per reference, OPTION's verdict on each metric with its
    difference and confidence sequence, and how the study stopped."""
    against: dict[str, list[str]] = {}
    for c in comparisons:
        final = c.final
        decision = final.decision if final.decided else "undecided"
        against.setdefault(c.reference, []).append(
            f"{decision} on {report.HEADERS[c.metric]} ({final.estimate:+.4f}, "
            f"[{final.low:+.4f}, {final.high:+.4f}])")
    arm = comparisons[0].arm
    stopped = ("every comparison decided" if all(c.decided for c in comparisons)
               else f"the budget of {seeds} seeds per arm reached")
    parts = "; ".join(f"against {reference}: {', '.join(found)}"
                      for reference, found in against.items())
    return (f"**{option}** at the strength chosen on validation ({arm}), on fresh seeds: "
            f"{parts}; after {seeds} seeds per arm, {stopped}.")


def markdown(option: str, preset: str, header: str, sentence: str, study: path.PathStudy,
             shown: tuple[str, ...], comparisons: list[rounds.Tracked],
             schedule, minutes: float, trained: int, runs: pd.DataFrame) -> str:
    """verdict.md: the line saying how it was made, the answer, the configuration the runs
    share, then calibration, path and comparison."""
    calibrations = [c for c in study.calibrations if c.option in shown]
    pinned = [name for name in shown if name in path.PINNED_GRIDS.get(preset, {})]
    points = {name: study.points[name] for name in (*shown, path.CONTROL)
              if name in study.points}
    selections = [s for s in study.selections if s.regularizer in shown]
    sequential_table = rounds.markdown(comparisons, schedule, path.TUNED_SEED_START, "",
                                       True, runs).lstrip("\n")
    written, _, shared = header.partition("\n\n")
    return "\n".join([
        written, "", sentence, "", shared.rstrip("\n"), "",
        f"Wall time here: {minutes:.1f} min for this command, {trained} runs trained by it "
        "(finished runs found in the store are reused, not retrained).", "",
        "## Calibration", "",
        calibrate.markdown(calibrations) if calibrations else "",
        *([f"Pinned by the preset {preset} (not calibrated): {', '.join(pinned)}.", ""]
          if pinned else []),
        "## Path (selection seeds, chosen on validation)", "",
        path.markdown(points, selections),
        "## Fresh seeds: the sequential comparison", "",
        sequential_table,
        "comparison.md beside this file is the fixed-sample analysis of the same runs.", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("option", help="a registered regularizer (REGBENCH_PLUGINS names "
                        "the file that registers yours; make verdict plugin=FILE sets it)")
    parser.add_argument("--preset", default=DEFAULT_PRESET,
                        help=f"a strength-path preset (default {DEFAULT_PRESET})")
    parser.add_argument("--rule", choices=path.RULES, default="best",
                        help="how the strengths are chosen on validation")
    rounds.add_schedule_arguments(parser)
    rounds.add_code_arguments(parser)
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--out", type=Path, default=None,
                        help="default: reports/<option>-<preset>")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_intermixed_args(argv)
    started = time.time()
    schedule = rounds.schedule_from(args)
    try:
        option = registry.get(args.option)
    except ConfigError as error:
        cli.fail(str(error))
    if option.target is None or option.name == BASELINE:
        cli.fail(f"{args.option}: the verdict compares an option with {path.CONTROL} and "
                 f"{BASELINE}; choose another")
    presets = path.path_presets()
    if args.preset not in presets:
        cli.fail(f"--preset {args.preset}: not a path preset; allowed are {', '.join(presets)}")
    out = args.out or REPORTS_DIR / f"{option.name}-{args.preset}"
    if reason := unwritable_folder(out):
        cli.fail(f"--out {out}: cannot be created, {reason}")
    extra = (*args.overrides, *rounds.code_overrides(args),
             *([f"mlflow.tracking_uri={args.tracking_uri}"] if args.tracking_uri else []))
    shown = (option.name, BASELINE)
    try:
        grids, _ = path.grids(args.preset, list(shown), extra, args.tracking_uri)
    except (ConfigError, store.StoreError) as error:
        cli.fail(str(error))
    code = path.train_path(args.preset, grids, extra)
    if code == cli.EXIT_INTERRUPTED:
        return code
    try:
        store.connect(args.tracking_uri, create=False)
        study = path.read_path(args.preset, args.reuse_stale)
    except (store.StoreError, query.CompareError) as error:
        cli.fail(str(error))
    try:
        chosen = path.chosen_strengths(study, list(shown), args.rule, args.preset)
    except query.CompareError as error:
        cli.fail(str(error))
    tuned = f"{args.preset}-tuned"
    command = cli.command_line(__spec__.name, argv)

    def write(comparisons: list[rounds.Tracked], runs: pd.DataFrame) -> None:
        since = pd.Timestamp(started, unit="s", tz="UTC")
        trained = int((runs["start_time"] >= since).sum()
                      + (study.runs["start_time"] >= since).sum())
        seeds = int(runs["seed"].nunique())
        sentence = answer(option.name, comparisons, seeds)
        header = report.provenance(command, git_commit(), runs,
                                   query.keep_todays_code(runs, args.reuse_stale)[1])
        text = out / REPORT
        text.write_text(markdown(option.name, args.preset, header, sentence, study, shown,
                                 comparisons, schedule, (time.time() - started) / 60, trained,
                                 runs))
        compare.log_report([text], args.tracking_uri, f"verdict-{option.name}-{args.preset}",
                           {"compared_experiment": tuned, "report": "verdict"})
        print(sentence)
        print(f"report: {text}", file=sys.stderr)

    try:
        return max(code, rounds.grow(
            lambda seeds, regularizers: path.train_commands(args.preset, chosen, tuple(seeds),
                                                            tuned, extra, regularizers),
            tuned, path.CONTROL, schedule, path.TUNED_SEED_START, out, command,
            args.tracking_uri, versus=(BASELINE,), arms=(option.name,), on_stop=write,
            reuse_stale=args.reuse_stale))
    except (store.StoreError, query.CompareError) as error:
        cli.fail(str(error))


if __name__ == "__main__":
    cli.run(main)
