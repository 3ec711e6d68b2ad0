"""A study grown in rounds: looks, decisions, stopping, resuming and the reports, with rounds
that record runs of known values (seconds), and once through real training on synthetic data."""

import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

from helpers import PROJECT_ROOT, record_run, sqlite_uri
from regbench.cli.main import dispatch
from regbench.design import sequential, study

# per seed: l2 varies, custom is 0.01 more accurate and 0.02 worse in data loss (with a little
# noise), none is l2 to the bit: decided at 8 seeds (the sign flips' floor forbids it at 5)
NOISE = np.random.default_rng(0).normal(0, 0.0003, 64)


def values(arm: str, seed: int) -> tuple[float, float]:
    accuracy, loss = 0.97 + 0.004 * np.sin(seed), 0.10 + 0.01 * np.cos(seed)
    if arm == "custom-0.0001":
        return accuracy + 0.01 + NOISE[seed], loss + 0.02 + NOISE[seed + 32]
    return accuracy, loss


def record_round(uri: str, experiment: str, seeds: list[int],
                 regularizers: list[str] | None = None) -> None:
    """What a round's multirun would leave in the store: each arm's missing seeds, FINISHED
    (the arms of ``regularizers`` only, when given)."""
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else mlflow.create_experiment(experiment)
    have = mlflow.search_runs([experiment_id])
    done = set() if have.empty else set(zip(have["tags.arm"], have["params.seed"], strict=True))
    for arm, params in (("l2-0.0001", {"name": "l2", "weight": "0.0001"}),
                        ("custom-0.0001", {"name": "custom", "weight": "0.0001"}),
                        ("none", {"name": "none"})):
        for seed in seeds:
            if (arm, str(seed)) not in done and params["name"] in (regularizers or params["name"]):
                record_run(experiment_id, arm, params, seed, *values(arm, seed),
                           with_reliability=False)


def commands(uri):
    def for_seeds(seeds, regularizers):
        names = None if regularizers is None else sorted(regularizers)
        code = (f"import sys; sys.path.insert(0, {str(PROJECT_ROOT / 'tests')!r}); "
                f"from test_study import record_round; "
                f"record_round({uri!r}, 'grown', {list(seeds)!r}, {names!r})")
        return [[sys.executable, "-c", code]]
    return for_seeds


@pytest.mark.long
def test_a_study_grows_until_every_comparison_is_decided_and_resumes(tmp_path, capsys):
    uri = sqlite_uri(tmp_path)
    (tmp_path / "mlruns").mkdir()
    arguments = (commands(uri), "grown", "l2", sequential.Schedule(5, 3, 11), 0,
                 tmp_path / "report", "regbench study test", uri)
    assert study.grow(*arguments) == 0
    captured = capsys.readouterr()
    assert "| not yet: the study goes on |" not in (tmp_path / "report" / "sequential.md"
                                                  ).read_text()  # rewritten at the stop
    looks = [line for line in captured.err.splitlines() if line.startswith("look ")]
    assert looks[0].startswith("look 1 at 5 seeds per arm: 2 of 4 decided") and looks[0].endswith(
        "going on")  # none is identical to l2 at once
    assert looks[1].startswith("look 2 at 8 seeds per arm: 4 of 4 decided")
    assert looks[1].endswith("all decided: the study stops") and len(looks) == 2
    mlflow.set_tracking_uri(uri)
    trained = mlflow.search_runs(experiment_names=["grown"])
    assert sorted(set(trained["params.seed"].astype(int))) == list(range(8))  # not 8-10
    seeds_of = trained.groupby("tags.arm")["params.seed"].apply(lambda s: sorted(s.astype(int)))
    assert seeds_of["none"] == list(range(5))  # decided at the first look: not trained on
    assert seeds_of["l2-0.0001"] == seeds_of["custom-0.0001"] == list(range(8))
    text = (tmp_path / "report" / "sequential.md").read_text()
    assert text.startswith("Written by `regbench study test` at commit ")
    rows = {tuple(line.split(" | ")[:2]): line for line in text.splitlines()
            if line.startswith("| ")}
    accuracy, loss = rows["| custom-0.0001", "test accuracy"], rows["| custom-0.0001",
                                                                      "test data loss"]
    assert "| 5, 8 | 8 | +0.0" in accuracy and accuracy.endswith("| better | decided |")
    assert "| 5, 8 | 8 |" in loss and loss.endswith("| worse | decided |")
    assert rows["| none", "test accuracy"].endswith(
        "| 5 | 5 | +0.0000 | [+0.0000, +0.0000] | [+0.0000, +0.0000] | equivalent (identical) "
        "| decided |")
    assert (tmp_path / "report" / "comparison.md").read_text().count("| l2-0.0001 | 8 |") == 1
    compute = next(line for line in text.splitlines() if line.startswith("Compute: "))
    assert compute.startswith("Compute: 21 runs, ")
    assert "of 5 seeds per arm takes 15 runs" in compute
    assert compute.endswith("Seeds per arm: custom-0.0001 8, l2-0.0001 8, none 5.")
    assert study.grow(*arguments) == 0  # resumed: nothing new to train, the same verdicts
    assert len(mlflow.search_runs(experiment_names=["grown"])) == len(trained)
    assert (tmp_path / "report" / "sequential.md").read_text().split("\n", 1)[1] == text.split(
        "\n", 1)[1]


def test_the_command_trains_the_preset_on_each_look_s_seeds(tmp_path, monkeypatch, capsys):
    """``regbench study`` in-process: each round is one multirun of the preset on the
    look's seeds into the experiment (recorded here instead of trained), then the reports."""
    uri = sqlite_uri(tmp_path)
    (tmp_path / "mlruns").mkdir()
    launched = []

    def record_instead_of_training(commands, label):
        launched.extend(commands)
        values = {key: value.split(",") for key, value in (
            a.split("=", 1) for a in commands[0] if a.startswith(("seed=", "regularizer=")))}
        record_round(uri, "grown", [int(s) for s in values["seed"]], values.get("regularizer"))
        return 0

    monkeypatch.setattr(study.pool, "run_commands", record_instead_of_training)
    assert dispatch(["study", "l2_vs_custom", "--experiment", "grown", "--first", "2",
                     "--step", "1", "--max-seeds", "3", "--any-budget", "--tracking-uri", uri,
                     "--out",
                     str(tmp_path / "report"), "trainer.epochs=3"]) == 0
    assert [command[4:] for command in launched] == [
        ["-m", "experiment=l2_vs_custom", "mlflow.experiment_name=grown", f"seed={seeds}",
         *only, "trainer.epochs=3", f"mlflow.tracking_uri={uri}"]
        for seeds, only in (("0,1", []), ("0,1,2", ["regularizer=custom,l2"]))]  # none: decided
    assert "budget reached: the study stops" in capsys.readouterr().err
    assert (tmp_path / "report" / "sequential.md").exists()


def test_an_interrupted_study_leaves_a_report_of_where_it_got_to(tmp_path):
    uri = sqlite_uri(tmp_path)
    (tmp_path / "mlruns").mkdir()

    def first_round_then_ctrl_c(seeds, regularizers):
        if len(seeds) > 5:
            return [[sys.executable, "-c", "import os, signal; os.kill(os.getpid(), "
                     "signal.SIGINT)"]]
        return commands(uri)(seeds, regularizers)

    code = study.grow(first_round_then_ctrl_c, "grown", "l2", sequential.Schedule(5, 3, 11), 0,
                      tmp_path / "report", "regbench study test", uri)
    assert code == 130
    text = (tmp_path / "report" / "sequential.md").read_text()
    assert "| not yet: the study goes on |" in text and "equivalent (identical)" in text


@pytest.mark.parametrize("arguments, message", [
    (["l2_vs_custom", "--experiment", "x", "--first", "1"], "schedule: need"),
    (["l2_vs_custom", "--experiment", "x", "--max-seeds", "2000"],
     "schedule: max_seeds (2000) is above the limit of 200 seeds per arm"),
    (["nope", "--experiment", "x"], "experiment=nope: unknown option; allowed are"),
    (["l2_vs_custom", "--experiment", "x", "--start", "-5"], "seed=-5: "),
    (["l2_vs_custom", "--experiment", ""], "mlflow.experiment_name="),
    (["l2_vs_custom", "--experiment", "x", "trainer.epochs=0"], "trainer.epochs=0: must be"),
    (["l2_vs_custom", "--experiment", "x", "--first", "2", "--max-seeds", "6"],
     "--max-seeds 6: with 4 comparisons nothing can be decided below 7 seeds per arm"),
    (["l2_vs_custom", "--experiment", "x", "--reference", "l1"],
     "--reference l1: not an arm of l2_vs_custom; allowed are custom, l2, none"),
])
def test_a_study_refuses_bad_input_in_one_line_before_anything(arguments, message, capsys,
                                                               tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        dispatch(["study", *arguments, "--out", str(tmp_path / "report"),
                  f"mlflow.tracking_uri={sqlite_uri(tmp_path)}"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {message}"), lines
    assert list(tmp_path.iterdir()) == []


def test_the_compute_line_counts_the_runs_of_an_arm_with_a_failed_seed(tmp_path, monkeypatch):
    """custom's seed 3 fails: its comparisons pair 7 of the 8 seeds, yet the design trained 8
    seeds of each arm it kept on, and the line counts every finished run of them."""
    uri = sqlite_uri(tmp_path)
    (tmp_path / "mlruns").mkdir()

    def record_then_fail_one(commands):
        names = next((a.split("=", 1)[1].split(",") for a in commands[0]
                      if a.startswith("regularizer=")), None)
        record_round(uri, "grown", list(range(int(commands[0][-1]))), names)
        failed = mlflow.search_runs(experiment_names=["grown"], filter_string=(
            "tags.arm = 'custom-0.0001' AND params.seed = '3'"))
        mlflow.MlflowClient().set_terminated(failed["run_id"].iloc[0], "FAILED")
        return 0

    monkeypatch.setattr(study.processes, "run_commands", record_then_fail_one)
    assert study.grow(lambda seeds, regularizers: [[*([] if regularizers is None else [
        f"regularizer={','.join(regularizers)}"]), str(len(seeds))]], "grown", "l2",
        sequential.Schedule(5, 3, 8), 0, tmp_path / "report", "regbench study test",
        uri) == 0
    text = (tmp_path / "report" / "sequential.md").read_text()
    assert "| custom-0.0001 | test accuracy | 5, 8 | 7 |" in text
    compute = next(line for line in text.splitlines() if line.startswith("Compute: "))
    assert compute.startswith("Compute: 20 runs, ")  # 7 of custom, 8 of l2, 5 of none
    assert compute.endswith("Seeds per arm: custom-0.0001 8, l2-0.0001 8, none 5.")


def test_skewed_paired_differences_are_flagged():
    """One seed far off the rest: the report says the differences are skewed, naming the
    comparison; symmetric differences say nothing."""
    rng = np.random.default_rng(0)
    base = rng.normal(0.97, 0.002, 10)
    noise = rng.normal(0, 0.0005, 10)
    skewed = base + noise + np.r_[np.zeros(9), 0.02]

    def runs(arm_values):
        rows = [{"arm": arm, "seed": seed, "test_accuracy": value}
                for arm, values in arm_values.items() for seed, value in enumerate(values)]
        return pd.DataFrame(rows).rename(columns={"test_accuracy": "metrics.test_accuracy"})

    c = study.Tracked("a", "ref", "test_accuracy", "a")
    assert study.skewed_lines([c], runs({"a": skewed, "ref": base}))[0].startswith(
        "- warning: a test accuracy: its paired differences are skewed")
    assert study.skewed_lines([c], runs({"a": base + noise, "ref": base})) == []


def test_a_preset_describes_itself_in_its_reports():
    from regbench.design import presets

    about = presets.description("positive_control")
    assert about.startswith("The positive control: a regime where a standard regularizer")
    assert "#" not in about and "@package" not in about
