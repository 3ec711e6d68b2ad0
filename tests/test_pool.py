"""The pool of workers (``regbench.design.pool``): a round's jobs on long-lived workers, with the
records, results, failures and skips of a multirun."""

import os
import subprocess
import sys
import time

import mlflow
import pytest

from helpers import QUIET_TENSORFLOW, run_command, sqlite_uri, wait_for_training_runs
from regbench import record
from regbench.cli.main import dispatch
from regbench.design import pool
from regbench.design.sweep import train_command
from regbench.run.tracking import process_alive

SMOKE = ("data=synthetic", "trainer=smoke", "model=mlp_small")
# one thread and deterministic ops: the same config computes the same numbers in any process
EXACT = ("trainer.deterministic=true", "trainer.threads=1")
COMPARED = [m for m in record.FINAL_METRICS if m != record.TRAIN_SECONDS]


def _runs(uri: str, experiment: str):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment])


@pytest.mark.long
def test_a_run_in_a_worker_after_other_jobs_equals_one_in_a_fresh_process(tmp_path):
    uri = sqlite_uri(tmp_path)
    job = (*SMOKE, *EXACT, "regularizer=l2", "seed=3", f"mlflow.tracking_uri={uri}")
    fresh = run_command("train", *job, "mlflow.experiment_name=fresh", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    before = train_command("-m", *SMOKE, *EXACT, "regularizer=custom,none", "seed=0",
                           f"mlflow.tracking_uri={uri}", "mlflow.experiment_name=pooled",
                           f"hydra.sweep.dir={tmp_path / 'first'}")
    assert pool.run_commands([before]) == 0  # each worker trains a job first
    assert pool.run_commands([train_command("-m", *job, "mlflow.experiment_name=pooled",
                                            f"hydra.sweep.dir={tmp_path / 'then'}")]) == 0
    fresh_run = _runs(uri, "fresh").iloc[0]
    pooled = _runs(uri, "pooled")
    pooled_run = pooled[pooled["tags.regularizer"] == "l2"].iloc[0]
    assert pooled_run["tags.config_hash"] == fresh_run["tags.config_hash"]
    for metric in COMPARED:
        assert pooled_run[f"metrics.{metric}"] == fresh_run[f"metrics.{metric}"], metric
    client = mlflow.MlflowClient()
    for metric in ("loss", "val_loss"):
        assert [p.value for p in client.get_metric_history(pooled_run.run_id, metric)] == [
            p.value for p in client.get_metric_history(fresh_run.run_id, metric)]


@pytest.mark.long
def test_a_sweep_on_the_pool_is_one_parent_with_a_failed_job_and_a_resume(tmp_path, capfd):
    """``regbench sweep``: one parent, a failing job fails its run and not the others (exit 1),
    a job whose config has a FINISHED run is skipped, and the progress is one line a job."""
    uri = sqlite_uri(tmp_path)
    grid = (*SMOKE, "model.input_dim=784,100", "seed=0", f"mlflow.tracking_uri={uri}",
            f"hydra.sweep.dir={tmp_path / 'grid'}")
    assert dispatch(["sweep", *grid]) == 1
    err = capfd.readouterr().err
    assert "[2/2 jobs] " in err and " FAILED in " in err  # the workers' own lines go to their
    # stderr, which is this test's only when the pool started under it
    runs = _runs(uri, "regbench")
    parent = runs[runs["tags.sweep"] == "parent"].iloc[0]
    children = runs[runs["tags.mlflow.parentRunId"] == parent.run_id]
    assert sorted(children["status"]) == ["FAILED", "FINISHED"] and len(runs) == 3
    assert parent["status"] == "FAILED"
    assert parent["tags.launcher"] == "regbench.design.pool.executor"
    assert (parent["metrics.children_failed"], parent["metrics.children_finished"]) == (1, 1)
    assert len(set(children["tags.pid"])) == 2  # one worker each, neither the command's
    assert dispatch(["sweep", *grid, f"hydra.sweep.dir={tmp_path / 'again'}"]) == 1
    err = capfd.readouterr().err
    assert "1 of 2 jobs of " in err and "[1/1 jobs] " in err  # the failed one is tried again
    runs = _runs(uri, "regbench")
    again = runs[(runs["tags.sweep"] == "parent") & (runs.run_id != parent.run_id)].iloc[0]
    assert again["metrics.children_skipped"] == 1 and again["metrics.children_failed"] == 1


def test_a_launcher_of_its_own_is_left_to_hydra():
    from helpers import compose

    assert pool.local_launcher(compose("hydra/launcher=per_core", hydra=True))
    assert pool.local_launcher(compose(hydra=True))
    assert not pool.local_launcher(compose("hydra/launcher=ray_cluster", hydra=True))


@pytest.mark.long
@pytest.mark.parametrize("command", [["sweep"], ["train", "-m", "hydra/launcher=per_core"]])
def test_a_command_killed_by_sigkill_leaves_no_worker_training(tmp_path, command):
    """kill -9 of the command (the pool's, or Hydra's joblib multirun): its workers see their
    parent gone, close their runs KILLED and exit; nothing trains on as an orphan."""
    uri = sqlite_uri(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "regbench", *command, *SMOKE, "seed=0,1",
         "data.n_train=30000", "trainer.epochs=1000", "trainer.early_stopping_patience=1000",
         f"mlflow.tracking_uri={uri}", f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, **QUIET_TENSORFLOW})
    try:
        wait_for_training_runs(tmp_path, 2)
        process.kill()
        process.wait()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            runs = _runs(uri, "regbench")
            children = runs[runs["tags.sweep"] != "parent"]
            if (children["status"] != "RUNNING").all():
                break
            time.sleep(1)
    finally:
        process.kill()
    assert sorted(children["status"]) == ["KILLED", "KILLED"]
    pids = {int(pid) for pid in children["tags.pid"]}
    deadline = time.monotonic() + 60  # the workers exit after closing their runs
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(process_alive(pid) for pid in pids)


@pytest.mark.long
def test_two_identical_sweeps_at_once_train_each_job_once(tmp_path):
    """Each job is claimed while it trains (``sweep.claimed``): the second command's copy
    waits for it, then finds the FINISHED run and skips."""
    uri = sqlite_uri(tmp_path)
    commands = [subprocess.Popen(
        [sys.executable, "-m", "regbench", "sweep", *SMOKE, "regularizer=none,l2", "seed=0,1",
         f"mlflow.tracking_uri={uri}", f"hydra.sweep.dir={tmp_path / name}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **QUIET_TENSORFLOW}) for name in ("first", "second")]
    outputs = [process.communicate(timeout=300) for process in commands]
    assert [process.returncode for process in commands] == [0, 0], outputs
    runs = _runs(uri, "regbench")
    finished = runs[(runs["tags.sweep"] != "parent") & (runs["status"] == "FINISHED")]
    assert len(finished) == 4 and finished["tags.config_hash"].is_unique
    parents = runs[runs["tags.sweep"] == "parent"]
    assert parents["metrics.children_finished"].sum() + parents[
        "metrics.children_skipped"].sum() >= 4


def test_a_command_from_another_folder_or_with_other_plugins_gets_workers_of_its_own(
        tmp_path, monkeypatch):
    """A process that runs several commands (a notebook, the tests) must not hand a job to a
    worker started in another folder or without the plugin that registers its option."""
    from regbench.config import registry

    first = pool.executor()
    assert pool.executor() is first
    monkeypatch.chdir(tmp_path)
    moved = pool.executor()
    assert moved is not first
    monkeypatch.setenv(registry.PLUGINS_ENV, str(tmp_path / "mine.py"))
    assert pool.executor() is not moved
    pool.executor().shutdown(wait=True, kill_workers=True)
