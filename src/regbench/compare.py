"""``python -m regbench.compare`` (``make compare``): the recorded runs as a comparison of arms.

Reads the FINISHED runs of one experiment (``regbench.query``), compares each arm with the
reference arm (``regbench.comparison``, ``regbench.stats``), writes the report to
``reports/<experiment>/`` (``regbench.report``; its first line names the command, the code's commit
and the runs' commits) and logs it as a run of the experiment ``regbench-comparisons``, tagged
with the ids of the runs it compared.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from regbench import cli
from regbench.locations import REPORTS_DIR, unwritable_folder

if __name__ == "__main__":
    cli.interrupts_in_one_line()
with cli.collector_paused():
    from regbench import query, report, store
    from regbench.comparison import DEFAULT_MARGINS, Target, summarise
    from regbench.tracking import git_commit

COMPARISONS_EXPERIMENT = "regbench-comparisons"
MAX_TAG_LENGTH = 8000


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


def log_report(paths: list[Path], tracking_uri: str | None, run_name: str,
               tags: dict[str, str]) -> str:
    """Log report files as a run of COMPARISONS_EXPERIMENT with ``tags``; return its id."""
    import mlflow

    experiment_id = store.use_store(tracking_uri, COMPARISONS_EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        for path in paths:
            mlflow.log_artifact(str(path))
    return run.info.run_id


def log_comparison(comparison, paths: list[Path], tracking_uri: str | None, experiment: str,
                   filter_string: str | None) -> str:
    """Log a comparison's report, tagged with the runs it compared; return the run id."""
    ids = ",".join(comparison.runs["run_id"])
    tags = {"compared_experiment": experiment, "reference_arm": comparison.reference,
            "filter": filter_string or "", "compared_runs": str(len(comparison.runs)),
            "compared_run_ids": ids if len(ids) <= MAX_TAG_LENGTH else
            "too many for a tag: see compared_run_ids.txt"}
    return log_report(paths, tracking_uri, f"compare-{experiment}", tags)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="regbench", help="experiment to compare")
    parser.add_argument("--filter", default=None,
                        help="MLflow filter string, e.g. \"params.model.name = 'mlp_bn'\"")
    parser.add_argument("--reference", default="l2",
                        help="reference arm (e.g. l2 or l2-0.0001); default l2")
    parser.add_argument("--margin", action="append", default=[], metavar="METRIC=VALUE",
                        help="equivalence margin, e.g. test_accuracy=0.002 (defaults: "
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
    args = parser.parse_args(argv)
    out = args.out or REPORTS_DIR / args.experiment
    try:
        margins = parse_margins(args.margin)
        targets = tuple(Target.parse(text) for text in args.target)
        if reason := unwritable_folder(out):
            raise ValueError(f"--out {out}: cannot be created, {reason}")
    except ValueError as error:
        cli.fail(str(error))

    # one progress bar per artifact read would print a bar per run compared
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        store.connect(args.tracking_uri, create=False)
        recorded = query.fetch_runs(args.experiment, args.filter)
        code_notes = query.one_code_per_arm(recorded.runs, args.mix_code)
        comparison = summarise(recorded, args.reference, margins, targets)
    except (store.StoreError, query.CompareError) as error:
        cli.fail(str(error))
    artifacts = query.read_artifacts(comparison.runs)
    header = report.provenance(cli.command_line(__spec__.name, argv), git_commit(),
                               comparison.runs, code_notes)
    paths = report.write_report(comparison, artifacts, out, header)
    if not args.no_log:
        run_id = log_comparison(comparison, paths, args.tracking_uri, args.experiment, args.filter)
        print(f"logged as run {run_id} in experiment '{COMPARISONS_EXPERIMENT}'")
    print(report.markdown(comparison, artifacts), end="")
    print(f"report: {out}/ ({', '.join(p.name for p in paths)})")
    return 0


if __name__ == "__main__":
    cli.run(main)
