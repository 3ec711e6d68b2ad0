"""Multirun grids: one parent run, nested children, parallel jobs on SQLite, failures isolated."""

import contextlib
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from helpers import free_port, run_command, sqlite_uri, wait_for_training_runs
from regbench import record
from regbench.design import pool
from regbench.design.sweep import TRAIN_PROGRAM, job_threads
from regbench.run.tracking import process_alive

SMOKE = ("data=synthetic", "trainer=smoke", "model=mlp_small")


def sweep(store, *overrides, exit_code=0):
    result = run_command(
        "train", "-m", f"mlflow.tracking_uri={sqlite_uri(store)}",
        f"hydra.sweep.dir={store / 'multirun'}", *SMOKE, *overrides, cwd=store)
    assert result.returncode == exit_code, result.stderr[-3000:]
    mlflow.set_tracking_uri(sqlite_uri(store))
    runs = mlflow.search_runs(experiment_names=["regbench"])
    parents = runs[runs["tags.sweep"] == "parent"]
    assert len(parents) == 1
    parent = parents.iloc[0]
    children = runs[runs["tags.mlflow.parentRunId"] == parent.run_id]
    assert len(children) == len(runs) - 1
    return parent, children


@pytest.mark.long
def test_six_parallel_jobs_on_sqlite_all_finish_complete(tmp_path):
    parent, children = sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=6",
                             "regularizer=none,l2,custom", "seed=0,1")
    assert len(children) == 6 and set(children["status"]) == {"FINISHED"}
    assert parent["status"] == "FINISHED" and parent["metrics.children_finished"] == 6
    assert "regularizer=none,l2,custom" in parent["params.sweep.overrides"]
    assert set(zip(children["tags.regularizer"], children["tags.seed"], strict=True)) == {
        (r, s) for r in ("none", "l2", "custom") for s in ("0", "1")}
    client = MlflowClient()
    for run_id in children["run_id"]:
        for metric in record.EPOCH_METRICS:
            assert len(client.get_metric_history(run_id, metric)) == 1, metric
    for metric in record.FINAL_METRICS:
        assert children[f"metrics.{metric}"].notna().all(), metric
    assert len({int(pid) for pid in children["tags.pid"]}) > 1  # really in parallel processes


@pytest.mark.long
def test_a_failed_job_fails_its_run_and_not_the_sweep(tmp_path):
    parent, children = sweep(tmp_path, "model.input_dim=784,100", "seed=0,1", exit_code=1)
    statuses = sorted(children["status"])
    assert statuses == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    failed = children[children["status"] == "FAILED"].iloc[0]
    assert failed["params.model.input_dim"] == "100" and failed["tags.error_type"] == "ValueError"
    assert parent["status"] == "FAILED"
    assert (parent["metrics.children_failed"], parent["metrics.children_finished"]) == (2, 2)
    assert parent["tags.host"] and parent["tags.pid"].isdigit()


@pytest.mark.long
def test_a_job_that_fails_before_its_run_exists_is_counted_and_fails_the_sweep(tmp_path):
    broken = tmp_path / "broken-data"
    broken.mkdir()
    (broken / "mnist.npz").write_bytes(b"PK\x03\x04 truncated")
    parent, children = sweep(tmp_path, "data=synthetic,mnist", f"data.dir={broken}",
                             "seed=0", exit_code=1)
    assert list(children["status"]) == ["FINISHED"] and parent["status"] == "FAILED"
    assert parent["metrics.children_missing"] == 1 and parent["metrics.children_finished"] == 1


def _store_runs(store):
    mlflow.set_tracking_uri(sqlite_uri(store))
    return mlflow.search_runs(experiment_names=["regbench"])


@pytest.mark.long
def test_two_sweeps_started_together_stay_apart(tmp_path):
    processes = [subprocess.Popen(
        [sys.executable, "-m", "regbench", "train", "-m", *SMOKE, f"seed={a},{b}",
         f"mlflow.tracking_uri={sqlite_uri(tmp_path)}"], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for a, b in ((0, 1), (2, 3))]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    runs = _store_runs(tmp_path)
    parents = runs[runs["tags.sweep"] == "parent"]
    assert len(parents) == 2 and parents["tags.sweep_dir"].nunique() == 2
    for _, parent in parents.iterrows():
        children = runs[runs["tags.mlflow.parentRunId"] == parent.run_id]
        assert len(children) == 2 and parent["metrics.children_finished"] == 2
        assert children["tags.seed"].nunique() == 2


@pytest.mark.long
@pytest.mark.parametrize("launcher, signum", [
    ((), signal.SIGINT), (("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"), signal.SIGTERM)],
    ids=["basic-ctrl-c", "joblib-sigterm"])
def test_an_interrupted_sweep_ends_killed_and_leaves_nothing_running(tmp_path, launcher, signum):
    long_jobs = ("data.n_train=30000", "trainer.epochs=1000",
                 "trainer.early_stopping_patience=1000")
    process = subprocess.Popen(
        [sys.executable, "-m", "regbench", "train", "-m", *SMOKE, *long_jobs, *launcher,
         "seed=0,1",
         f"mlflow.tracking_uri={sqlite_uri(tmp_path)}", f"hydra.sweep.dir={tmp_path / 'm'}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_training_runs(tmp_path, 2 if launcher else 1)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr[-2000:]
    runs = _store_runs(tmp_path)
    parent = runs[runs["tags.sweep"] == "parent"].iloc[0]
    children = runs[runs["tags.mlflow.parentRunId"] == parent.run_id]
    assert parent["status"] == "KILLED" and set(children["status"]) == {"KILLED"}
    pids = {int(pid) for pid in children["tags.pid"]} - {process.pid}
    deadline = time.monotonic() + 30
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(process_alive(pid) for pid in pids)


@pytest.mark.long
def test_the_optuna_search_over_the_custom_weight(tmp_path):
    parent, children = sweep(tmp_path, "hparams_search=custom_weight",
                             "hydra.sweeper.n_trials=3")
    assert len(children) == 3 and set(children["tags.regularizer"]) == {"custom"}
    weights = [float(w) for w in children["params.regularizer.weight"]]
    assert len(set(weights)) == 3 and all(1e-6 <= w <= 1e2 for w in weights)
    assert parent["metrics.children_finished"] == 3


@pytest.mark.parametrize("n_jobs, cores, expected", [
    (None, 2, None), (-1, 2, 1), (6, 2, 1), (1, 2, 2), (2, 8, 4), (-2, 8, 1)])
def test_job_threads_share_the_cores(monkeypatch, n_jobs, cores, expected):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    launcher = OmegaConf.create({} if n_jobs is None else {"n_jobs": n_jobs})
    assert job_threads(launcher) == expected


@pytest.mark.long
def test_a_sweep_on_a_ray_cluster(tmp_path, monkeypatch):
    """`ray start --head` on loopback, then the same grid with hydra/launcher=ray_cluster."""
    ray = str(Path(sys.executable).with_name("ray"))
    port = free_port()
    subprocess.run([ray, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                    "--include-dashboard=false", "--num-cpus=2", "--disable-usage-stats"],
                   check=True, capture_output=True, timeout=180)
    try:
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        parent, children = sweep(tmp_path, "hydra/launcher=ray_cluster", "seed=0,1")
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)
    assert len(children) == 2 and set(children["status"]) == {"FINISHED"}
    assert parent["status"] == "FINISHED" and parent["metrics.children_finished"] == 2


def test_an_interrupt_that_became_another_error_still_ends_the_sweep_killed(monkeypatch):
    """Seen in a 4-job multirun given SIGINT just after its second job: the KeyboardInterrupt
    landed in OmegaConf while Hydra's launcher composed the third job's config, OmegaConf's
    clean-up failed on the half-set list (AttributeError), and Hydra printed that error and
    exited 1; the sweep closed its parent FINISHED and exited 1."""
    from regbench import processes
    from regbench.cli import train
    from regbench.design import sweep

    def multirun_whose_interrupt_became_an_error():
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            sys.exit(1)  # what Hydra's run_and_report does with an error reaching it

    closed = []
    monkeypatch.setattr(train, "hydra_entry", multirun_whose_interrupt_became_an_error)
    monkeypatch.setattr(sweep, "ACTIVE", sweep.SweepState(run_id="parent"))
    monkeypatch.setattr(sweep, "close_parent", lambda interrupted: closed.append(interrupted))
    previous = {signum: signal.getsignal(signum) for signum in processes.INTERRUPTS}
    try:
        with pytest.raises(SystemExit) as stop:
            train._run_sweep()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert stop.value.code == processes.EXIT_INTERRUPTED and closed == [True]


def _finished_runs(store):
    with sqlite3.connect(store / "mlruns" / "mlflow.db") as connection:
        return connection.execute("SELECT COUNT(*) FROM runs WHERE status = 'FINISHED' AND "
                                  "run_uuid IN (SELECT run_uuid FROM tags WHERE key = "
                                  "'config_hash')").fetchone()[0]


@pytest.mark.long
def test_an_interrupted_study_resumes_and_grows_without_running_anything_twice(tmp_path, capsys):
    study = [sys.executable, "-m", "regbench", "train", "-m", *SMOKE, "data.n_train=6000",
             f"mlflow.tracking_uri={sqlite_uri(tmp_path)}"]
    process = subprocess.Popen([*study, "seed=0,1,2,3"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            time.sleep(0.3)
            with contextlib.suppress(sqlite3.Error):
                if _finished_runs(tmp_path) >= 2:
                    break
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr[-3000:]
    again = run_command("train", *study[4:], "seed=0,1,2,3", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert re.search(r"skipped [23] of 4 jobs: already finished", again.stderr)
    assert "[4/4 jobs]" in again.stderr and "min elapsed" in again.stderr
    before = _store_runs(tmp_path)
    finished = [*study[4:], "seed=0,1,2,3"]
    assert pool.run_commands([[*TRAIN_PROGRAM, *finished]]) == 0  # a look with all trained
    assert "every job of the round has a FINISHED run" in capsys.readouterr().err
    assert len(_store_runs(tmp_path)) == len(before)  # no parent, no job, no worker

    grown = run_command("train", *study[4:], "seed=0,1,2,3,4", cwd=tmp_path)
    assert "1 of 1 jobs run finished; skipped 4 of 5 jobs" in grown.stderr, grown.stderr[-2000:]
    runs = _store_runs(tmp_path)
    children = runs[runs["tags.sweep"] != "parent"]
    finished = children[children["status"] == "FINISHED"]
    assert sorted(finished["tags.seed"]) == ["0", "1", "2", "3", "4"]  # each once
    assert set(children["status"]) <= {"FINISHED", "KILLED"}
    forced = run_command("train", *study[4:], "seed=4", "rerun=true", cwd=tmp_path)
    assert forced.returncode == 0 and "already has FINISHED run" not in forced.stderr
    assert (_store_runs(tmp_path)["tags.seed"] == "4").sum() == 2
