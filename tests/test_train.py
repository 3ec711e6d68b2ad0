"""The run record contract (regbench.record), checked on real runs on synthetic data."""

import os
import re
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from helpers import compose, runs, sqlite_uri, train
from regbench import record
from regbench.run import data
from regbench.run.tracking import flatten
from regbench.run.training import train_and_evaluate


def the_run(store, regularizer):
    frame = runs(store)
    matching = frame[frame["tags.regularizer"] == regularizer]
    assert len(matching) == 1
    return matching.iloc[0]


def history(run_id, metric):
    return [m.value for m in sorted(MlflowClient().get_metric_history(run_id, metric),
                                    key=lambda m: m.step)]


def test_a_run_holds_exactly_the_contracts_names(smoke_store):
    run = the_run(smoke_store, "l2")
    assert run["status"] == record.FINISHED
    client = MlflowClient()
    recorded = client.get_run(run.run_id).data
    config = yaml.safe_load(mlflow.artifacts.load_text(
        f"runs:/{run.run_id}/{record.CONFIG_ARTIFACT}"))
    config_params = set(flatten(config))
    assert config_params <= set(recorded.params)
    assert all(p.startswith(record.OPTIMIZER_PARAM_PREFIX)
               for p in set(recorded.params) - config_params)
    assert recorded.params["regularizer.weight"] == "0.0001"
    assert {t for t in recorded.tags if not t.startswith("mlflow.")} == set(record.RUN_TAGS)
    assert recorded.tags[record.TAG_ARM] == "l2-0.0001" and len(
        recorded.tags[record.TAG_DATA_SHA256]) == 64
    assert set(recorded.metrics) == (set(record.EPOCH_METRICS) | set(record.FINAL_METRICS)
                                     | set(record.PHASE_METRICS))
    for metric in record.EPOCH_METRICS:
        points = client.get_metric_history(run.run_id, metric)
        assert sorted(p.step for p in points) == [0, 1], metric
    assert all(np.isfinite(recorded.metrics[m]) for m in record.FINAL_METRICS)
    assert recorded.metrics[record.EPOCHS_TRAINED] == 2
    assert {a.path for a in client.list_artifacts(run.run_id)} == set(record.ARTIFACTS)
    assert mlflow.models.get_model_info(f"runs:/{run.run_id}/{record.MODEL_ARTIFACT}").signature
    plots = {a.path for a in client.list_artifacts(run.run_id, record.PLOTS_DIR)}
    assert plots == {f"{record.PLOTS_DIR}/{name}" for name in record.PLOTS}
    assert config["regularizer"]["name"] == "l2" and config["trainer"]["epochs"] == 2


def test_training_is_callable_in_process_and_returns_what_it_recorded(tmp_path):
    cfg = compose("data=synthetic", "trainer=smoke", "model=mlp_small", "regularizer=custom",
                  f"mlflow.tracking_uri={sqlite_uri(tmp_path)}", "seed=3")
    result = train_and_evaluate(cfg, threads=1)
    assert result.arm == "custom-0.0001"
    assert result.run_name == "custom-0.0001-mlp_small-synthetic-s3"
    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == record.FINISHED
    assert run.data.metrics[record.TEST_ACCURACY] == pytest.approx(
        result.metrics[record.TEST_ACCURACY])
    assert set(result.metrics) == set(record.FINAL_METRICS)
    assert result.best_monitored == pytest.approx(max(
        m.value for m in MlflowClient().get_metric_history(result.run_id, "val_accuracy")))


def test_the_logged_model_reproduces_the_logged_test_accuracy(smoke_store):
    import regbench.run.models  # noqa: F401  (registers the custom Keras classes)

    run = the_run(smoke_store, "custom")
    model = mlflow.keras.load_model(f"runs:/{run.run_id}/model")
    info = mlflow.models.get_model_info(f"runs:/{run.run_id}/model")
    assert info.signature is not None and info.saved_input_example_info is not None
    config = OmegaConf.create(
        yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run.run_id}/config.yaml")))
    splits = data.load(config.data, split_seed=config.data.split_seed)
    predicted = model.predict(splits.x_test, verbose=0).argmax(axis=1)
    assert np.mean(predicted == splits.y_test) == pytest.approx(run["metrics.test_accuracy"],
                                                                abs=1e-6)


def test_penalty_is_zero_without_a_regularizer(smoke_store):
    run = the_run(smoke_store, "none")
    assert history(run.run_id, "penalty") == [0.0, 0.0]
    assert history(run.run_id, "loss") == pytest.approx(history(run.run_id, "data_loss"), abs=1e-6)
    assert run["metrics.test_total_loss"] == pytest.approx(run["metrics.test_data_loss"], abs=1e-6)


@pytest.mark.parametrize("regularizer", ["l2", "custom"])
def test_loss_is_data_loss_plus_penalty(smoke_store, regularizer):
    run = the_run(smoke_store, regularizer)
    for prefix in ("", "val_"):
        loss, data_loss = history(run.run_id, f"{prefix}loss"), history(run.run_id,
                                                                         f"{prefix}data_loss")
        penalty = history(run.run_id, f"{prefix}penalty")
        assert all(p > 0 for p in penalty)
        assert np.subtract(loss, data_loss) == pytest.approx(penalty, rel=1e-4, abs=1e-6)
    assert run["metrics.test_total_loss"] > run["metrics.test_data_loss"]


def test_runs_are_named_and_tagged_by_arm(smoke_store):
    assert set(runs(smoke_store)[f"tags.{record.TAG_ARM}"]) == {"none", "l2-0.0001",
                                                                 "custom-0.0001"}
    names = set(runs(smoke_store)["tags.mlflow.runName"])
    assert names == {"none-mlp_bn-synthetic-s0", "l2-0.0001-mlp_bn-synthetic-s0",
                     "custom-0.0001-mlp_bn-synthetic-s0"}


@pytest.mark.slow
def test_training_on_real_mnist(tmp_path):
    result = train(tmp_path, "data.limit=2000", "trainer=smoke", "regularizer=custom",
                   "model=mlp_small")
    assert result.returncode == 0, result.stderr[-3000:]
    run = runs(tmp_path).iloc[0]
    assert run["status"] == "FINISHED" and run["tags.data"] == "mnist"
    assert run["metrics.test_accuracy"] > 0.7
    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    assert MlflowClient().get_run(run.run_id).data.params["data.limit"] == "2000"


def test_the_commit_is_dirty_for_changed_code_not_for_rewritten_reports(tmp_path):
    from regbench.run.tracking import git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "path.md").write_text("old report\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    clean = git_commit(tmp_path, tmp_path / "reports")
    assert len(clean) == 40
    (tmp_path / "reports" / "path.md").write_text("new report\n")  # `make path` wrote it
    assert git_commit(tmp_path, tmp_path / "reports") == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path, tmp_path / "reports") == clean + "-dirty"


def test_a_quiet_run_prints_only_regbench_s_own_line(tmp_path):
    """What a user's terminal shows for a run on a new store, with TensorFlow's environment as
    a user has it: no TensorFlow C++ or oneDNN lines, no Keras progress bar, no MLflow lines
    about creating the store; only the run's result."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_")}
    result = subprocess.run(
        [sys.executable, "-m", "regbench", "train", "data=synthetic", "trainer=smoke",
         "model=mlp_small", f"mlflow.tracking_uri={sqlite_uri(tmp_path)}",
         f"hydra.run.dir={tmp_path / 'out'}"], cwd=tmp_path, capture_output=True, text=True,
        env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and re.fullmatch(
        r"l2-0\.0001-mlp_small-synthetic-s0: test accuracy \d\.\d{4}, test data loss "
        r"\d+\.\d{4}, test total loss \d+\.\d{4}", lines[0]), lines
