"""``regbench runs`` (``make runs``): the recorded runs, and the stale ones.

A run is *stale* when it is RUNNING but the process that logged it (tags ``host`` and ``pid``)
no longer exists on this host: it was killed too hard to close its run (SIGKILL, power loss).
``--stale --mark-killed`` ends such runs as KILLED. RUNNING runs of other hosts are listed as
such and never touched.
"""

from __future__ import annotations

import pandas as pd

from regbench import record
from regbench.cli import common
from regbench.run.identity import UNRECORDED
from regbench.run.tracking import mark_killed, process_gone

COLUMNS = {"run_id": "run", "status": "status", f"tags.{record.TAG_REGULARIZER}": "regularizer",
           f"tags.{record.TAG_SEED}": "seed",
           f"metrics.{record.TEST_ACCURACY}": record.TEST_ACCURACY,
           f"tags.{record.TAG_CODE_IDENTITY}": "code", f"tags.{record.RUN_NAME_TAG}": "name"}


def stale_runs(runs: pd.DataFrame, host: str | None = None) -> pd.DataFrame:
    """RUNNING runs logged on ``host`` (default: this one) whose pid is no longer alive."""
    pid_column, host_column = f"tags.{record.TAG_PID}", f"tags.{record.TAG_HOST}"
    running = runs[runs["status"] == record.RUNNING]
    if running.empty or not {pid_column, host_column} <= set(running.columns):
        return running.iloc[0:0]
    gone = [process_gone({record.TAG_HOST: row_host, record.TAG_PID: pid}, host)
            for row_host, pid in zip(running[host_column], running[pid_column], strict=True)]
    return running[gone]


def table(runs: pd.DataFrame) -> str:
    present = {column: title for column, title in COLUMNS.items() if column in runs}
    frame = runs[list(present)].rename(columns=present)
    frame["run"] = frame["run"].str[:12]
    if "code" in frame:  # a run recorded before code identities were
        frame["code"] = frame["code"].fillna(UNRECORDED)
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = common.ArgumentParser(prog="regbench runs",
                                   description="List recorded runs; find stale RUNNING runs.")
    parser.add_argument("--experiment", default="regbench")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--stale", action="store_true",
                        help="only RUNNING runs whose process on this host is gone")
    parser.add_argument("--mark-killed", action="store_true",
                        help="with --stale: end those runs as KILLED")
    args = parser.parse_args(argv)
    if args.mark_killed and not args.stale:
        parser.error("--mark-killed goes with --stale")

    import mlflow
    from mlflow.tracking import MlflowClient

    from regbench.run import store

    try:
        store.connect(args.tracking_uri, create=False)
    except store.StoreError as error:
        common.fail(str(error))
    if mlflow.get_experiment_by_name(args.experiment) is None:
        common.fail(f"--experiment {args.experiment}: no such experiment in "
                 f"{mlflow.get_tracking_uri()}")
    runs = mlflow.search_runs(experiment_names=[args.experiment], max_results=100_000)
    if args.stale:
        runs = stale_runs(runs) if not runs.empty else runs
    if runs.empty:
        print("no stale runs" if args.stale else "no runs")
        return 0
    print(table(runs))
    if args.mark_killed:
        client = MlflowClient()
        for done, run_id in enumerate(runs["run_id"]):
            try:
                mark_killed(client, run_id, "regbench-runs --stale --mark-killed")
            except Exception as error:  # a full disk, a database gone read-only
                common.fail(f"the tracking store refused to mark run {run_id} KILLED "
                            f"({store.one_line(error)}); {len(runs) - done} run(s) are still "
                            "RUNNING: run this again once the store can be written")
        print(f"marked {len(runs)} run(s) KILLED")
    return 0

