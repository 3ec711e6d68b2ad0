"""A multirun is one MLflow parent run with every job as a nested child run.

``MlflowSweepCallback`` (a Hydra callback, configured in conf/config.yaml) runs in the process that
launches the jobs:

* on multirun start it creates and migrates the store once (so that parallel jobs never race to
  create the SQLite schema) and creates the parent run (params: the sweep's overrides; tags
  ``sweep=parent`` and ``sweep_dir``, the sweep's output folder). A job finds its parent by that
  folder, which Hydra gives every job of the sweep: no environment to inherit, so it works for
  jobs in this process, in joblib's worker processes and on Ray workers alike;
* on multirun end it counts the children by status, logs ``children_finished``,
  ``children_failed`` and ``children_killed``, and ends the parent FINISHED, or FAILED when a
  child did not finish.

A job that fails marks its own run FAILED and does not stop the others (see ``regbench.train``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from regbench import record


def job_threads(launcher: DictConfig) -> int | None:
    """TensorFlow threads per job so that parallel jobs share the cores without oversubscribing
    them: cores // jobs at once (joblib's ``n_jobs``, -1 meaning one per core); None when the
    launcher runs one job at a time."""
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None:
        return None
    cores = os.cpu_count() or 1
    parallel = cores + 1 + n_jobs if n_jobs < 0 else n_jobs
    return max(1, cores // max(1, min(parallel, cores)))


def in_sweep() -> bool:
    """Whether this process runs a job of a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def find_parent_run(experiment_id: str, sweep_dir: str) -> str | None:
    """The id of the newest sweep parent run of ``sweep_dir`` in the experiment, or None."""
    import mlflow

    folder = sweep_dir.replace("'", "")
    parents = mlflow.MlflowClient().search_runs(
        [experiment_id], f"tags.{record.TAG_SWEEP} = '{record.SWEEP_PARENT}' and "
        f"tags.{record.TAG_SWEEP_DIR} = '{folder}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return parents[0].info.run_id if parents else None


class MlflowSweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import mlflow

        from regbench.store import use_store
        from regbench.tracking import git_commit

        experiment_id = use_store(config.mlflow.tracking_uri, config.mlflow.experiment_name)
        overrides = list(config.hydra.overrides.task)
        client = mlflow.MlflowClient()
        parent = client.create_run(
            experiment_id, run_name=f"sweep-{config.hydra.job.name}",
            tags={record.TAG_SWEEP: record.SWEEP_PARENT,
                  record.TAG_SWEEP_DIR: str(config.hydra.sweep.dir).replace("'", ""),
                  record.TAG_GIT_COMMIT: git_commit(),
                  record.TAG_LAUNCHER: str(config.hydra.launcher.get("_target_", ""))})
        client.log_param(parent.info.run_id, record.PARAM_SWEEP_OVERRIDES,
                         " ".join(overrides)[:6000])
        self.run_id = parent.info.run_id
        print(f"sweep parent run {self.run_id}", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        import mlflow

        client = mlflow.MlflowClient()
        parent = client.get_run(self.run_id)
        children = client.search_runs(
            [parent.info.experiment_id], f"tags.{record.PARENT_TAG} = '{self.run_id}'",
            max_results=50_000)
        counts = {status: sum(c.info.status == status for c in children)
                  for status in record.STATUSES}
        for status, count in counts.items():
            client.log_metric(self.run_id, record.CHILDREN_METRICS[status], count)
        not_finished = len(children) - counts[record.FINISHED]
        client.set_terminated(self.run_id, record.FINISHED if not_finished == 0 else record.FAILED)
        print(f"sweep parent run {self.run_id}: {counts[record.FINISHED]} of {len(children)} "
              f"children finished", file=sys.stderr)
