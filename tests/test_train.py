"""The run record contract (DESIGN.md), checked on real subprocess runs on synthetic data."""

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from conftest import runs, sqlite_uri, train
from regbench import data

PARAMS = ["regularizer.name", "regularizer.weight", "model.name", "model.units", "trainer.epochs",
          "trainer.batch_size", "data.name", "data.val_split", "seed"]
TAGS = ["regularizer", "model", "data", "seed", "git_commit", "data_sha256", "mlflow.runName"]
EPOCH_METRICS = ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "data_loss",
                 "epoch_seconds",
                 "val_data_loss", "penalty"]
FINAL_METRICS = ["test_accuracy", "test_data_loss", "test_total_loss", "test_ece", "test_brier",
                 "best_epoch", "epochs_trained", "train_seconds"]


def the_run(store, regularizer):
    frame = runs(store)
    matching = frame[frame["tags.regularizer"] == regularizer]
    assert len(matching) == 1
    return matching.iloc[0]


def history(run_id, metric):
    return [m.value for m in sorted(MlflowClient().get_metric_history(run_id, metric),
                                    key=lambda m: m.step)]


def test_a_run_holds_everything_the_contract_names(smoke_store):
    run = the_run(smoke_store, "l2")
    assert run["status"] == "FINISHED"
    for key in PARAMS:
        assert f"params.{key}" in run and run[f"params.{key}"] is not None, key
    assert run["params.regularizer.weight"] == "0.0001" and run["params.trainer.epochs"] == "2"
    for key in TAGS:
        assert run[f"tags.{key}"], key
    assert len(run["tags.data_sha256"]) == 64 and run["tags.seed"] == "0"
    client = MlflowClient()
    for metric in EPOCH_METRICS:
        points = client.get_metric_history(run.run_id, metric)
        assert sorted(p.step for p in points) == [0, 1], metric
    for metric in FINAL_METRICS:
        assert np.isfinite(run[f"metrics.{metric}"]), metric
    assert run["metrics.epochs_trained"] == 2 and run["metrics.best_epoch"] in (1, 2)
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"config.yaml", "plots", "reliability.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.run_id, "plots")}
    assert plots == {"plots/learning_curves.png", "plots/reliability.png"}
    config = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run.run_id}/config.yaml"))
    assert config["regularizer"]["name"] == "l2" and config["trainer"]["epochs"] == 2


def test_the_logged_model_reproduces_the_logged_test_accuracy(smoke_store):
    import regbench.models  # noqa: F401  (registers the custom Keras classes)

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
