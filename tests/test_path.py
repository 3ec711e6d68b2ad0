"""Strength paths: selection on validation only, and a tiny path, report and tuned step."""

import signal
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from helpers import QUIET_TENSORFLOW, sqlite_uri, wait_for_training_runs
from regbench import record
from regbench.analysis import query
from regbench.cli.main import dispatch
from regbench.design import path, pool, presets
from regbench.run import identity


def point(strength, val, loss=0.1):
    return path.PathPoint(strength, (0, 1, 2), np.array(val), np.full(3, loss), 0.1, 0.1)


def test_best_and_one_standard_error_rules():
    points = [point(1e-4, [0.90, 0.91, 0.92]), point(1e-3, [0.93, 0.94, 0.95]),
              point(1e-2, [0.925, 0.935, 0.945]), point(1e-1, [0.80, 0.81, 0.82])]
    chosen = path.select("l2", points)
    # best 1e-3 (mean 0.94, SE 0.00577); 1e-2 (0.935) is within one SE and stronger
    assert chosen.best.strength == 1e-3 and chosen.one_se.strength == 1e-2


def record_path_run(experiment_id, strength, seed, val_accuracy, test_loss):
    client = MlflowClient()
    run = client.create_run(experiment_id, tags={record.TAG_ARM: f"l2-{strength:g}",
                                                 record.TAG_REGULARIZER: "l2",
                                                 **identity.of_option("l2").tags()})
    client.log_param(run.info.run_id, "regularizer.weight", str(strength))
    client.log_param(run.info.run_id, record.PARAM_SEED, str(seed))
    for epoch, value in enumerate([val_accuracy - 0.05, val_accuracy, val_accuracy - 0.01]):
        client.log_metric(run.info.run_id, "val_accuracy", value, step=epoch)
    for key, value in {record.TEST_DATA_LOSS: test_loss, record.PENALTY_LOSS_SHARE: 0.1,
                       record.PENALTY_GRADIENT_SHARE: 0.2}.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)


def test_the_strength_is_chosen_on_validation_never_on_test(tmp_path):
    """1e-3 is best on validation, 1e-2 on test: 1e-3 is chosen."""
    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    experiment_id = mlflow.create_experiment("path", artifact_location=(tmp_path / "a").as_uri())
    for seed in (0, 1, 2):
        record_path_run(experiment_id, 1e-3, seed, 0.95 + seed * 1e-3, test_loss=0.30)
        record_path_run(experiment_id, 1e-2, seed, 0.90 + seed * 1e-3, test_loss=0.05)
    study = path.read_path("path")
    selections, paths = study.selections, path.write_report(study, tmp_path / "report")
    assert [s.best.strength for s in selections] == [1e-3]
    assert selections[0].best.mean == pytest.approx(0.951)  # the best epoch's, not the last
    assert {p.name for p in paths} == {"path.md", "path.png"}
    assert "l2's best strength 0.001 is at the edge of its grid" in (
        tmp_path / "report" / "path.md").read_text()


@pytest.mark.long
def test_a_tiny_path_its_report_and_the_tuned_comparison(tmp_path, capsys, monkeypatch):
    """The path trained into the preset's experiment, its report, and ``tuned``: the selected
    strengths against none on fresh seeds from 200, in rounds (here one look of 2 seeds)."""
    uri = sqlite_uri(tmp_path)
    overrides = ("data=synthetic", "trainer=smoke", "model=mlp_small")
    extra = (*overrides, f"mlflow.tracking_uri={uri}", f"hydra.sweep.dir={tmp_path / 'path'}")
    grids = {"l2": (1e-4, 1e-2), "custom_columns": (1.0, 100.0)}
    preset = "path_mnist_small"
    experiment = presets.experiment_name(preset, overrides)  # not the preset's data: its own
    assert experiment.startswith(f"{preset}-synthetic-mlp_small-")
    commands = path.train_commands(preset, grids, (0, 1), experiment, extra)
    assert len(commands) == 3 and pool.run_commands(commands) == 0  # the module's workers
    assert [command[-2:] for command in path.train_commands(
        preset, grids, (0, 1), preset, extra, frozenset({"l2", "none"}))] == [
        ["regularizer=l2", "regularizer.weight=0.0001,0.01"],
        [f"hydra.sweep.dir={tmp_path / 'path'}", "regularizer=none"]]  # only the ones named
    monkeypatch.setattr(path, "SELECTION_SEEDS", (0, 1))
    capsys.readouterr()
    assert path.train_path(preset, grids, extra, experiment) == 0  # resumed: every job has its run
    assert "every job of the round has a FINISHED run: nothing started" in capsys.readouterr().err

    mlflow.set_tracking_uri(uri)
    assert dispatch(["path", "report", preset, "--tracking-uri", uri, "--out",
                      str(tmp_path / "report"), *overrides]) == 0
    selections = path.read_path(experiment).selections
    assert {s.regularizer for s in selections} == {"l2", "custom_columns"}
    assert all(s.best.seeds == (0, 1) for s in selections)
    study = path.read_path(experiment)  # default: those of the names the path has; named: each
    assert set(path.chosen_strengths(study, ["l2", "l1"], "best", experiment, every=False)) == {
        "l2"}
    with pytest.raises(query.CompareError, match=f"the path of {experiment} has no finished "
                       "runs of l1 to choose a strength from"):
        path.chosen_strengths(study, ["l2", "l1"], "best", experiment)
    text = (tmp_path / "report" / "path.md").read_text()
    assert text.startswith(f"Written by `regbench path report {preset} --tracking-uri ")
    assert "| custom_columns | 100 | 2 |" in text and "| none | 0 | 2 |" in text
    tuned = {s.regularizer: (s.chosen("1se").strength,) for s in selections
             if s.regularizer == "l2"}
    # custom_columns' selection taken for a no-op: left out, with its reason, and l2 not
    monkeypatch.setattr(path, "no_op_reason", lambda study, name, rule: (
        "custom_columns at 1 does nothing" if name == "custom_columns" else None))
    capsys.readouterr()
    assert dispatch(["path", "tuned", preset, "--rule", "1se", "--first", "2", "--step", "1",
                      "--max-seeds", "2", "--any-budget", "--tracking-uri", uri, "--out",
                      str(tmp_path / "tuned"),
                      *overrides, f"hydra.sweep.dir={tmp_path / 'tuned-runs'}"]) == 0
    runs = query.fetch_runs(f"{experiment}-tuned", None).runs
    assert set(runs["arm"]) == {"none", *(f"{name}-{strength:g}"
                                          for name, (strength,) in tuned.items())}
    assert sorted(set(runs["seed"])) == [200, 201]
    sequential_report = (tmp_path / "tuned" / "sequential.md").read_text()
    assert sequential_report.count("| budget reached |") + sequential_report.count(
        "| decided |") == 2
    assert "family of 2 comparisons" in sequential_report
    assert ("Not compared (the strength chosen is in effect none, so its comparison would be "
            "none against none): custom_columns at 1 does nothing.") in (
        tmp_path / "tuned" / "selection.md").read_text()
    assert "| paired | 2/2 |" in capsys.readouterr().out


def test_a_path_point_never_pools_two_configs(tmp_path):
    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    experiment_id = mlflow.create_experiment("p", artifact_location=(tmp_path / "a").as_uri())
    for seed in range(4):
        record_path_run(experiment_id, 1e-3, seed % 2, 0.9, 0.1)
    client = MlflowClient()
    runs = client.search_runs([experiment_id], order_by=["attributes.start_time ASC"])
    for run, optimizer in zip(runs, ("adam", "adam", "fused_adam", "fused_adam"), strict=True):
        client.log_param(run.info.run_id, "trainer.optimizer", optimizer)
    with pytest.raises(query.CompareError, match=r"l2 at 0.001 holds runs of more than one "
                       r"config: l2-0.001 \(trainer.optimizer=adam\); l2-0.001 \(trainer"):
        path.read_path("p")


@pytest.mark.long
def test_an_interrupted_path_closes_its_multirun_and_exits_130(tmp_path):
    """SIGINT to the path command alone (as ``kill -INT``): the running multirun gets it as a
    Ctrl-C, closes every run, and the path exits 130 with one line, no traceback."""
    import os

    uri = sqlite_uri(tmp_path)
    overrides = ("data=synthetic", "trainer=smoke", "model=mlp_small", "data.n_train=30000",
                 "trainer.epochs=1000", "trainer.early_stopping_patience=1000")
    process = subprocess.Popen(
        [sys.executable, "-m", "regbench", "path", "run", "path_mnist_small", *overrides,
         f"mlflow.tracking_uri={uri}", f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **QUIET_TENSORFLOW})
    try:
        wait_for_training_runs(tmp_path, 2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[
        presets.experiment_name("path_mnist_small", overrides)])
    assert len(runs) >= 3 and set(runs["status"]) <= {"FINISHED", "KILLED"}
    parent = runs[runs["tags.sweep"] == "parent"]
    assert list(parent["status"]) == ["KILLED"]


def test_run_and_tuned_take_only_path_presets(capsys):
    for step in ("run", "tuned"):
        with pytest.raises(SystemExit) as exit_:
            dispatch(["path", step, "l2_vs_custom"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and lines == [
            f"error: {step} l2_vs_custom: not a path preset; allowed are path_fashion, "
            "path_fashion_small, path_mnist, path_mnist_small"]


def test_a_path_on_other_data_or_another_model_is_an_experiment_of_its_own():
    """A path (and its verdict, tuned comparison and calibration) under overrides that change
    the preset's data or model never lands under the preset's name, nor uses the grids the
    preset pins for its own data."""
    preset = "path_mnist_small"
    assert presets.experiment_name(preset, ()) == preset
    assert presets.experiment_name(preset, ("trainer=smoke", "seed=3")) == preset  # same data
    synthetic = presets.experiment_name(preset, ("data=synthetic",))
    smaller = presets.experiment_name(preset, ("model=mlp_small",))
    fewer = presets.experiment_name(preset, ("data.limit=3000",))
    assert synthetic.startswith(f"{preset}-synthetic-mlp_bn-")
    assert smaller.startswith(f"{preset}-mnist-mlp_small-")
    assert fewer.startswith(f"{preset}-mnist-mlp_bn-") and len({synthetic, smaller, fewer}) == 3
    assert presets.experiment_name(preset, ("data=synthetic",)) == synthetic  # stable
    assert preset in presets.PINNED_GRIDS and synthetic not in presets.PINNED_GRIDS
    assert presets.default_options(synthetic) != presets.default_options(preset)


def test_the_seeds_a_comparison_needs_are_estimated_from_the_selection_seeds():
    """A spread as large as the margin needs many seeds, a tiny one few; beyond the budget is
    said up front."""
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for seed in range(3):
        base = 0.97 + rng.normal(0, 0.002)
        for name, weight, loss_noise in (("none", None, 0.0), ("l2", "1e-4", 0.02),
                                         ("l1", "1e-5", 1e-5)):
            rows.append({"tags.regularizer": name, "params.regularizer.weight": weight,
                         "arm": name if weight is None else f"{name}-{weight}", "seed": seed,
                         "metrics.test_accuracy": base + rng.normal(0, 1e-5),
                         "metrics.test_data_loss": 0.1 + rng.normal(0, loss_noise or 1e-9)})
    study = path.PathStudy(pd.DataFrame(rows), {}, [], [], [])
    lines = path.planned_seeds(study, {"l2": (1e-4,), "l1": (1e-5,)},
                               {"test_accuracy": 0.001, "test_data_loss": 0.005}, 4, 20)
    loss = {line.split(",")[0]: line for line in lines if "test_data_loss" in line}
    assert "likely undecided within the budget of 20" in loss["- l2 at 0.0001"]
    assert "likely undecided" not in loss["- l1 at 1e-05"]
    assert lines[0].startswith("Seeds the comparisons are likely to need")


def shares_path(grid, share_per_strength=1000.0, accuracy=lambda w: 0.9):
    """A path whose points have gradient share ``share_per_strength`` x strength."""
    return {"l2": [path.PathPoint(w, (0, 1, 2), np.full(3, accuracy(w)), np.full(3, 0.1), 0.5,
                                  share_per_strength * w) for w in sorted(grid)]}


@pytest.fixture
def no_identical_runs(monkeypatch):
    monkeypatch.setattr(path, "identical_to_control", lambda study: {})


def test_a_path_is_extended_where_it_does_not_bracket_its_answer(no_identical_runs):
    """Below a weakest point that is not a no-op (share >= NO_OP_SHARE), above a best
    strongest point, one grid step a side a round, at most EXTENSION_POINTS a side."""
    planned = {"l2": (1e-5, 1e-4, 1e-3)}

    def extensions(trained, accuracy):
        study = path.PathStudy(None, shares_path(trained["l2"], accuracy=accuracy), [], [], [])
        return path.extensions(study, planned, trained)

    rising = np.log10  # the strongest is best
    assert extensions(planned, rising) == {"l2": [
        (1e-6, "its weakest point 1e-05 pulls with 0.01 of the data's gradient, not a no-op"),
        (1e-2, "its best strength is its strongest, 0.001")]}
    assert extensions({"l2": (1e-6, *planned["l2"], 1e-2, 1e-1)}, rising) == {}  # 2 above
    assert extensions({"l2": (1e-6, *planned["l2"])}, lambda w: -(np.log10(w) + 4) ** 2) == {}
    assert extensions({"l2": (1e-7, 1e-6, *planned["l2"])}, lambda w: 0.9) == {}  # 2 below
    one_point = {"l2": (1e-3,)}
    assert path.extensions(path.PathStudy(None, shares_path((1e-3,)), [], [], []), one_point,
                           one_point) == {}


def test_a_bracketed_path_trains_each_round_of_added_points(no_identical_runs, monkeypatch,
                                                            capsys):
    planned = {"l2": (1e-5, 1e-4, 1e-3)}
    trained = []
    monkeypatch.setattr(path, "train_path", lambda preset, grids, extra, experiment: (
        trained.append(dict(grids)), 0)[1])
    monkeypatch.setattr(path.store, "connect", lambda uri, create: None)
    read = []
    monkeypatch.setattr(path, "read_path", lambda experiment, reuse_stale: read.append(
        path.PathStudy(None, shares_path(trained[-1]["l2"], accuracy=np.log10), [], [], []))
        or read[-1])
    code, study = path.train_bracketed("path_mnist_small", planned, (), "p")
    assert code == 0 and [g["l2"] for g in trained] == [
        planned["l2"], (1e-6, 1e-5, 1e-4, 1e-3, 1e-2), (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)]
    assert study is read[-1] and len(read) == 3  # the path as read after its last round
    assert [p.strength for p in study.points["l2"]] == list(trained[-1]["l2"])
    assert capsys.readouterr().err.splitlines() == [
        "path of p: l2 extended to 1e-06: its weakest point 1e-05 pulls with 0.01 of the "
        "data's gradient, not a no-op",
        "path of p: l2 extended to 0.01: its best strength is its strongest, 0.001",
        "path of p: l2 extended to 0.1: its best strength is its strongest, 0.01"]


def test_the_path_report_marks_added_points_and_shows_target_and_realised_shares():
    from regbench.design import calibrate

    points = shares_path((1e-6, 1e-5, 1e-4, 1e-3))
    probe = calibrate.Calibration("l2", "p", (1e-4, 1e-3), (0.05, 0.5), 300, 1.0,
                                  (1e-5, 1e-4, 1e-3))
    text = path.markdown(points, [path.select("l2", points["l2"])], {"l2": probe.grid}, [probe])
    assert "| l2 | 1e-06 (added) | 3 | 0.9000 [0.9000, 0.9000] | 0.1000 | 0.5 | 0.001 | " \
           "0.0005 |" in text
    assert "| l2 | 1e-05 | 3 |" in text
    assert ("- l2: gradient shares at the end of training 0.001 to 1, where the calibrated grid "
            "aimed at 0.001 to 10") in text
    assert "(added): beyond the planned grid" in text
    # the best at the weak edge, a no-op there: nothing but none lies beyond it
    assert "edge of its grid" not in text
