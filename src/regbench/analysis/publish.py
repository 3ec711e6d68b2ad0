"""A comparison from the store to its report: read the FINISHED runs of one experiment, compare
each arm with the reference (``comparison.summarise``), write the report
(``report.write_report``; its first line names the command, the code's commit and the runs'
code) and log it as a run of the experiment ``regbench-comparisons``, tagged with the ids of
the runs it compared. Raises StoreError or CompareError; never exits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from regbench.analysis import query, report
from regbench.analysis.comparison import Comparison, Target, summarise
from regbench.run import store
from regbench.run.tracking import close_stale_runs, git_commit, recorded_run

COMPARISONS_EXPERIMENT = "regbench-comparisons"
MAX_TAG_LENGTH = 8000


def log_report(paths: list[Path], tracking_uri: str | None, run_name: str,
               tags: dict[str, str]) -> str:
    """Log report files as a run of COMPARISONS_EXPERIMENT with ``tags``; return its id. The
    run is closed as a training run is (``tracking.recorded_run``: host and pid tags, KILLED on
    an interrupt, FAILED on an error), so ``runs --stale --mark-killed`` can close one whose
    process died."""
    import mlflow

    experiment_id = store.use_store(tracking_uri, COMPARISONS_EXPERIMENT)
    close_stale_runs(experiment_id)
    with recorded_run(experiment_id, run_name, tags) as run:
        for path in paths:
            mlflow.log_artifact(str(path))
    return run.info.run_id


def log_comparison(comparison: Comparison, paths: list[Path], tracking_uri: str | None,
                   experiment: str, filter_string: str | None) -> str:
    """Log a comparison's report, tagged with the runs it compared; return the run id."""
    ids = ",".join(comparison.runs["run_id"])
    tags = {"compared_experiment": experiment, "reference_arm": comparison.reference,
            "filter": filter_string or "", "compared_runs": str(len(comparison.runs)),
            "compared_run_ids": ids if len(ids) <= MAX_TAG_LENGTH else
            "too many for a tag: see compared_run_ids.txt"}
    return log_report(paths, tracking_uri, f"compare-{experiment}", tags)


@dataclass(frozen=True)
class Published:
    """What ``compare_experiment`` wrote: the report's files, its Markdown, the logged run."""

    paths: list[Path]
    markdown: str
    run_id: str | None


def compare_experiment(experiment: str, reference: str, out: Path, command: str,
                       tracking_uri: str | None = None, filter_string: str | None = None,
                       margins: dict[str, float] | None = None,
                       targets: tuple[Target, ...] = (), mix_code: bool = False,
                       log: bool = True) -> Published:
    """Compare the FINISHED runs of ``experiment`` (those of ``filter_string``) with the arm
    ``reference``, write the report into ``out`` (headed by ``command``) and, with ``log``, log
    it (module docstring). An arm of runs of two code identities raises CompareError unless
    ``mix_code`` (``query.one_code_per_arm``)."""
    store.connect(tracking_uri, create=False)
    recorded = query.fetch_runs(experiment, filter_string)
    code_notes = query.one_code_per_arm(recorded.runs, mix_code)
    comparison = summarise(recorded, reference, margins or {}, targets)
    artifacts = query.read_artifacts(comparison.runs)
    header = report.provenance(command, git_commit(), comparison.runs, code_notes)
    paths = report.write_report(comparison, artifacts, out, header)
    run_id = (log_comparison(comparison, paths, tracking_uri, experiment, filter_string)
              if log else None)
    return Published(paths, report.markdown(comparison, artifacts), run_id)
