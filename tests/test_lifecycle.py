"""Run status is always true: interrupted, failed, diverged and stale runs; up-front refusals."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from helpers import runs, sqlite_uri, train
from regbench.cli import runs as runs_cli


def wait_for_first_epoch(store, timeout=180):
    """The run id once the run has logged an epoch. Polls with sqlite3 itself: an MLflow client
    opened while the trainer still creates the database would migrate it concurrently."""
    database = store / "mlruns" / "mlflow.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            with sqlite3.connect(database) as connection:
                row = connection.execute(
                    "SELECT run_uuid FROM metrics WHERE key = 'loss' LIMIT 1").fetchone()
        except sqlite3.Error:
            continue
        if row:
            return row[0]
    raise AssertionError("no epoch was logged in time")


@pytest.mark.parametrize("signals, gap", [
    ((signal.SIGINT,), 0), ((signal.SIGTERM,), 0),
    ((signal.SIGINT, signal.SIGINT), 0.3),      # a double Ctrl-C
    ((signal.SIGTERM, signal.SIGTERM), 0.05),   # the second lands while the run is closed
], ids=["ctrl-c", "sigterm", "double-ctrl-c", "double-sigterm"])
@pytest.mark.long
def test_an_interrupted_run_ends_killed_with_its_metrics(tmp_path, signals, gap):
    command = [sys.executable, "-m", "regbench", "train", "data=synthetic", "data.n_train=30000",
               "model=mlp_small", "trainer.epochs=1000", "trainer.verbose=0",
               "trainer.early_stopping_patience=1000",
               f"mlflow.tracking_uri={sqlite_uri(tmp_path)}",
               f"hydra.run.dir={tmp_path / 'out'}"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        run_id = wait_for_first_epoch(tmp_path)
        mlflow.set_tracking_uri(sqlite_uri(tmp_path))
        run = MlflowClient().get_run(run_id)
        assert run.info.status == "RUNNING" and run.data.tags["pid"] == str(process.pid)
        for index, signum in enumerate(signals):
            time.sleep(gap if index else 0)
            process.send_signal(signum)
        # a generous limit on a busy machine: the outcome, not the time, is asserted (1000
        # epochs would take hours, so ending at all is the signal's doing)
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130, stderr[-2000:]
    assert "marked KILLED" in stderr
    assert MlflowClient().get_run(run_id).info.status == "KILLED"
    assert len(MlflowClient().get_metric_history(run_id, "loss")) >= 1


def test_an_exception_ends_the_run_failed_with_its_type_and_message(tmp_path):
    result = train(tmp_path, "data=synthetic", "trainer=smoke", "model=mlp_small",
                   "model.input_dim=100")  # the data has 784 features
    assert result.returncode != 0
    run = runs(tmp_path).iloc[0]
    assert run["status"] == "FAILED" and run["tags.error_type"] == "ValueError"
    assert "100" in run["tags.error_message"]


@pytest.mark.long
def test_a_diverging_loss_stops_training_and_fails_the_run(tmp_path):
    result = train(tmp_path, "data=synthetic", "trainer=smoke", "trainer.epochs=3",
                   "trainer.optimizer=sgd", "trainer.learning_rate=1", "regularizer.weight=1e30")
    assert result.returncode != 0
    run = runs(tmp_path).iloc[0]
    assert run["status"] == "FAILED" and run["tags.failure"] == "nan_loss"
    assert run["tags.error_type"] == "TrainingDiverged"


def _one_line_error(result):
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith(
        ("WARNING: All log", "I0000", "E0000", "W0000", "To enable"))]
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_an_unusable_store_is_refused_before_any_run(tmp_path):
    result = train(tmp_path, "data=synthetic", "trainer=smoke",
                   tracking_uri="sqlite:////etc/passwd/mlruns/mlflow.db")
    assert "tracking store sqlite:////etc/passwd/mlruns/mlflow.db cannot be used" in (
        _one_line_error(result))


def test_an_output_folder_that_cannot_be_created_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    result = train(tmp_path, "data=synthetic", f"hydra.run.dir={tmp_path / 'file' / 'out'}")
    assert "hydra.run.dir=" in _one_line_error(result)
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.skipif(os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Fashion-MNIST is installed here")
def test_missing_data_without_a_source_is_refused_before_any_run(tmp_path):
    result = train(tmp_path, "data=fashion_mnist", "trainer=smoke")
    assert "apt-get install dataset-fashion-mnist" in _one_line_error(result)
    assert runs(tmp_path).empty


def _runs_of_three_processes(store):
    """A new store's experiment ``regbench`` with a RUNNING run of a process that has exited, of
    this process and of another host: (experiment id, client, stale, alive, elsewhere)."""
    mlflow.set_tracking_uri(sqlite_uri(store))
    experiment_id = mlflow.create_experiment("regbench")
    dead = subprocess.Popen(["true"])  # a pid that has exited
    dead.wait()
    client = MlflowClient()
    here = socket.gethostname()
    return (experiment_id, client,
            client.create_run(experiment_id, tags={"host": here, "pid": str(dead.pid)}),
            client.create_run(experiment_id, tags={"host": here, "pid": str(os.getpid())}),
            client.create_run(experiment_id, tags={"host": "other-host", "pid": "1"}))


def test_stale_runs_are_found_and_marked_killed(tmp_path, capsys):
    experiment_id, client, stale, alive, elsewhere = _runs_of_three_processes(tmp_path)
    uri = ["--tracking-uri", sqlite_uri(tmp_path)]
    assert runs_cli.main([*uri, "--stale"]) == 0
    listed = capsys.readouterr().out
    assert stale.info.run_id[:12] in listed
    assert alive.info.run_id[:12] not in listed and elsewhere.info.run_id[:12] not in listed
    assert runs_cli.main([*uri, "--stale", "--mark-killed"]) == 0
    assert client.get_run(stale.info.run_id).info.status == "KILLED"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert client.get_run(elsewhere.info.run_id).info.status == "RUNNING"
    capsys.readouterr()
    assert runs_cli.main(uri) == 0
    assert "KILLED" in capsys.readouterr().out


def test_a_later_command_closes_the_runs_whose_process_is_gone(tmp_path):
    """A run left RUNNING by a process killed with SIGKILL is closed KILLED by the next command
    that uses its experiment (``tracking.close_stale_runs``: the pool's rounds, a report's
    run); a live process's run and another host's are left alone."""
    from regbench.run.tracking import STALE_CLOSER, close_stale_runs

    experiment_id, client, stale, alive, elsewhere = _runs_of_three_processes(tmp_path)
    assert close_stale_runs(experiment_id) == 1
    closed = client.get_run(stale.info.run_id)
    assert closed.info.status == "KILLED" and closed.data.tags["killed_by"] == STALE_CLOSER
    assert {client.get_run(run.info.run_id).info.status for run in (alive, elsewhere)} == {
        "RUNNING"}
    assert close_stale_runs(experiment_id) == 0


def test_marking_stale_runs_on_a_store_that_cannot_be_written_is_one_line(tmp_path, capsys,
                                                                         monkeypatch):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    _, _, stale, _, _ = _runs_of_three_processes(tmp_path)

    def disk_full(*args, **kwargs):
        raise OperationalError("UPDATE runs", {}, sqlite3.OperationalError(
            "database or disk is full"))

    monkeypatch.setattr(MlflowClient, "set_tag", disk_full)
    with pytest.raises(SystemExit) as exited:
        runs_cli.main(["--tracking-uri", sqlite_uri(tmp_path), "--stale", "--mark-killed"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: the tracking store refused to mark run {stale.info.run_id} "
                          "KILLED (") and "database or disk is full" in err
    assert "1 run(s) are still RUNNING" in err


@pytest.mark.long
def test_deterministic_runs_repeat_exactly(tmp_path):
    for _ in range(2):
        result = train(tmp_path, "data=synthetic", "trainer=smoke", "model=mlp_small",
                       "trainer.epochs=2", "trainer.deterministic=true", "seed=7")
        assert result.returncode == 0, result.stderr[-2000:]
    first, second = runs(tmp_path)["run_id"]
    client = MlflowClient()
    for metric in ("loss", "val_loss", "accuracy", "penalty"):
        history = [[m.value for m in client.get_metric_history(run, metric)]
                   for run in (first, second)]
        assert history[0] == history[1], metric


@pytest.mark.long
def test_concurrent_processes_on_a_new_store_lose_nothing(tmp_path):
    """Three trainings started together on a store that does not exist yet: its schema is
    created once (under a lock file), and every run is recorded FINISHED."""
    processes = [subprocess.Popen(
        [sys.executable, "-m", "regbench", "train", "data=synthetic", "trainer=smoke",
         "model=mlp_small", f"seed={seed}", f"mlflow.tracking_uri={sqlite_uri(tmp_path)}",
         f"hydra.run.dir={tmp_path / str(seed)}"], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for seed in range(3)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err[-1500:] for _, err in outputs]
    recorded = runs(tmp_path)
    assert sorted(recorded["tags.seed"]) == ["0", "1", "2"]
    assert set(recorded["status"]) == {"FINISHED"}


@pytest.mark.parametrize("damage", ["folder", "corrupt"])
def test_a_broken_store_is_one_line_in_every_command(tmp_path, capsys, damage):
    from regbench.cli import compare

    database = tmp_path / "mlruns" / "mlflow.db"
    database.parent.mkdir()
    if damage == "folder":
        database.mkdir()
    else:
        database.write_bytes(b"SQLite format 3\x00" + b"\x17" * 3000)
    uri = ["--tracking-uri", sqlite_uri(tmp_path)]
    for main in (runs_cli.main, compare.main):
        with pytest.raises(SystemExit) as exit_:
            main([*uri, "--no-log"] if main is compare.main else uri)
        error = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(error) == 1, error
        assert error[0].startswith(f"error: tracking store {sqlite_uri(tmp_path)} cannot be used")
    assert "cannot be used" in _one_line_error(train(tmp_path, "data=synthetic", "trainer=smoke"))


def test_a_mistyped_store_is_one_line_in_every_reading_command_and_is_not_created(
        tmp_path, capsys):
    from regbench.cli import compare, predict

    image = tmp_path / "digit.png"
    from PIL import Image

    Image.new("L", (28, 28)).save(image)
    missing = tmp_path / "typo"
    uri = ["--tracking-uri", sqlite_uri(missing)]
    for arguments in ([runs_cli.main, uri], [compare.main, [*uri, "--no-log"]],
                      [predict.main, ["some-run", str(image), *uri]]):
        main, argv = arguments
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        error = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(error) == 1, error
        assert error[0].startswith(f"error: tracking store {sqlite_uri(missing)} does not exist")
    assert not missing.exists()


def test_runs_of_an_unknown_experiment_is_one_line(tmp_path, capsys):
    assert train(tmp_path, "data=synthetic", "trainer=smoke", "model=mlp_small").returncode == 0
    with pytest.raises(SystemExit) as exit_:
        runs_cli.main(["--tracking-uri", sqlite_uri(tmp_path), "--experiment", "nope"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --experiment nope: no such experiment in {sqlite_uri(tmp_path)}")


def _smoke_config(store):
    from helpers import compose

    return compose("data=synthetic", "trainer=smoke", "model=mlp_small",
                   f"mlflow.tracking_uri={sqlite_uri(store)}")


def test_a_store_failure_while_logging_the_model_ends_the_run_failed(tmp_path, monkeypatch):
    from regbench.run import tracking
    from regbench.run.training import train_and_evaluate

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tracking, "log_keras_model", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train_and_evaluate(_smoke_config(tmp_path), threads=1)
    run = runs(tmp_path).iloc[0]
    assert run["status"] == "FAILED" and run["tags.error_type"] == "OSError"


def test_a_store_that_stops_answering_at_the_close_is_one_line(tmp_path, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from regbench.errors import StoreError
    from regbench.run.training import train_and_evaluate

    real_end_run = mlflow.end_run

    def read_only(*args, **kwargs):
        raise OperationalError("UPDATE runs", {}, sqlite3.OperationalError(
            "attempt to write a readonly database"))

    monkeypatch.setattr(mlflow, "end_run", read_only)
    with pytest.raises(StoreError) as error:
        train_and_evaluate(_smoke_config(tmp_path), threads=1)
    monkeypatch.undo()
    assert runs(tmp_path).iloc[0]["status"] == "RUNNING"  # left for --stale, as the line says
    real_end_run(status="KILLED")  # what --stale --mark-killed would do
    message = str(error.value)
    assert "\n" not in message and "could not be closed FINISHED" in message
    assert "readonly database" in message and "--stale --mark-killed" in message


class SwallowsEverything:
    """Collected at once, it raises ``signum`` inside its ``__del__``, whose bare ``except``
    loses the handler's KeyboardInterrupt."""

    def __init__(self, signum: int):
        self.signum = signum

    def __del__(self):
        try:
            signal.raise_signal(self.signum)
        except BaseException:  # what a bare except does
            pass


def test_an_interrupt_lost_between_a_sweeps_jobs_keeps_the_next_job_from_starting():
    """The sweep's block is open (``train._run_sweep``); the signal lands between two jobs and
    is lost; the next job's block (``train._train``) raises it at once instead of training."""
    from regbench import processes

    previous = {signum: signal.getsignal(signum) for signum in processes.INTERRUPTS}
    started = []
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGINT"), processes.signals_as_interrupt():
            SwallowsEverything(signal.SIGINT)
            assert processes.interrupt_requested() == "signal SIGINT"
            with processes.signals_as_interrupt():
                started.append("the next job")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert started == []
    assert processes.interrupt_requested() is None  # forgotten once the outermost block ended
    with processes.signals_as_interrupt():  # a later command in this process starts afresh
        started.append("a later command")
    assert started == ["a later command"]


def test_an_interrupt_swallowed_where_it_landed_still_stops_the_run_killed(tmp_path):
    """A signal's KeyboardInterrupt lands in whatever code runs; inside a ``__del__`` with a bare
    ``except`` (TensorFlow's ConcreteFunctionGarbageCollector has one) it is lost without a
    word. The request is recorded all the same, and the run stops at the next batch."""
    from regbench import processes
    from regbench.run.training import train_and_evaluate

    asked = []

    def stop_requested():
        asked.append(processes.interrupt_requested())
        if len(asked) == 3:  # training is under way
            SwallowsEverything(signal.SIGTERM)  # collected at once: the signal lands in __del__
        return processes.interrupt_requested()

    previous = {signum: signal.getsignal(signum) for signum in processes.INTERRUPTS}
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"), processes.signals_as_interrupt():
            train_and_evaluate(_smoke_config(tmp_path), threads=1, stop_requested=stop_requested)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert asked == [None, None, None]  # the handler's own KeyboardInterrupt never came out
    assert runs(tmp_path).iloc[0]["status"] == "KILLED"


def test_an_interrupt_that_surfaced_as_another_error_ends_the_run_killed(tmp_path, monkeypatch):
    """A KeyboardInterrupt raised inside C code can come out as a SystemError ("bad argument to
    internal function"): with an interrupt requested, that error is the interrupt, and the run
    ends KILLED, not FAILED."""
    from regbench import processes
    from regbench.design import sweep
    from regbench.run import training

    def interrupted_in_c(*args):
        try:
            signal.raise_signal(signal.SIGTERM)  # recorded; its handler raises KeyboardInterrupt
        except KeyboardInterrupt:
            pass  # ... which the C code it landed in turned into another error
        raise SystemError("Objects/listobject.c:338: bad argument to internal function")

    monkeypatch.setattr(training, "_final_metrics", interrupted_in_c)
    previous = {signum: signal.getsignal(signum) for signum in processes.INTERRUPTS}
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            sweep.train(_smoke_config(tmp_path), None, 1)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    run = runs(tmp_path).iloc[0]
    assert run["status"] == "KILLED" and run["tags.error_type"] == "SystemError"


def test_signals_held_are_delivered_after_the_block_even_with_other_threads():
    import threading

    from regbench.processes import signals_held

    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)  # a second thread, as TensorFlow's
    worker.start()
    reached_the_end = False
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # the handler would run here if the signal were not held
                reached_the_end = True
    finally:
        stop.set()
        worker.join()
    assert reached_the_end


def test_a_server_that_does_not_answer_is_given_up_on_in_one_line(monkeypatch, capsys):
    """store.connect sets MLflow's retries to SERVER_PATIENCE's (about 30 s) unless the
    environment says otherwise; here none, so the refusal comes at once."""
    from helpers import free_port
    from regbench.cli import compare
    from regbench.run import store

    for variable in store.SERVER_PATIENCE:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SystemExit) as exit_:
        compare.main(["--tracking-uri", uri, "--no-log"])
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(error) == 1 and error[0].startswith(
        f"error: tracking store {uri} cannot be used"), error
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"  # the environment's own wins
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == store.SERVER_PATIENCE[
        "MLFLOW_HTTP_REQUEST_TIMEOUT"]


def _store_refusing(monkeypatch, times: int) -> list:
    """The SQL store refuses, ``times`` times, any batch holding val_accuracy at step 1, as a
    database locked past its busy timeout does (MLflow's async queue logs it and drops it)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy.exc import OperationalError

    real = SqlAlchemyStore.log_batch
    refused = []

    def log_batch(self, run_id, metrics, params, tags):
        if len(refused) < times and any(m.key == "val_accuracy" and m.step == 1
                                        for m in metrics):
            refused.append(run_id)
            raise OperationalError("INSERT INTO metrics", {}, sqlite3.OperationalError(
                "database is locked"))
        return real(self, run_id, metrics, params, tags)

    monkeypatch.setattr(SqlAlchemyStore, "log_batch", log_batch)
    return refused


def _three_epochs(store):
    from helpers import compose

    return compose("data=synthetic", "trainer=smoke", "model=mlp_small", "trainer.epochs=3",
                   "trainer.early_stopping_patience=10", f"mlflow.tracking_uri={sqlite_uri(store)}")


def test_an_epoch_the_store_dropped_is_logged_again_before_finished(tmp_path, monkeypatch,
                                                                    caplog):
    from regbench.run.training import train_and_evaluate

    refused = _store_refusing(monkeypatch, times=1)
    with caplog.at_level("WARNING", logger="regbench.run.callbacks"):
        result = train_and_evaluate(_three_epochs(tmp_path), threads=1)
    assert refused  # the fault happened
    said = [r.getMessage() for r in caplog.records if r.name == "regbench.run.callbacks"]
    assert len(said) == 1 and "\n" not in said[0], said  # one line, for the one refusal
    assert said[0].startswith("the store refused epoch 1's metrics (") and said[0].endswith(
        "regbench logs them again before the run ends"), said
    history = MlflowClient().get_metric_history(result.run_id, "val_accuracy")
    assert sorted(point.step for point in history) == [0, 1, 2]
    assert runs(tmp_path).iloc[0]["status"] == "FINISHED"


def test_points_the_store_keeps_refusing_end_the_run_failed_naming_them(tmp_path, monkeypatch):
    from regbench.run import tracking
    from regbench.run.training import train_and_evaluate

    _store_refusing(monkeypatch, times=100)
    monkeypatch.setattr(tracking.time, "sleep", lambda seconds: None)
    with pytest.raises(tracking.MetricsLost) as lost:
        train_and_evaluate(_three_epochs(tmp_path), threads=1)
    assert "refused them 3 times" in str(lost.value) and "val_accuracy at steps 1" in str(
        lost.value) and "\n" not in str(lost.value)
    run = runs(tmp_path).iloc[0]
    assert run["status"] == "FAILED" and run["tags.error_type"] == "MetricsLost"


def test_mlflow_s_store_errors_are_one_line_each(caplog):
    """MLflow's SQL session logs a locked database with its SQL, parameters and traceback: cut to
    the message and the exception's first line."""
    import logging

    from regbench.run.tracking import SQL_SESSION_LOGGER

    try:
        raise sqlite3.OperationalError("database is locked\n[SQL: SELECT 1]\n[parameters: ()]")
    except sqlite3.OperationalError:
        logging.getLogger(SQL_SESSION_LOGGER).exception("SQLAlchemy database error.")
    record = next(r for r in caplog.records if r.name == SQL_SESSION_LOGGER)
    assert caplog.text.count("\n") == 1 and record.exc_info is None
    assert record.getMessage() == "SQLAlchemy database error. database is locked"
