"""The comparison on a store whose runs carry metrics chosen here, so every number is known."""

import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from helpers import record_run, run_command, sqlite_uri
from regbench import record
from regbench.analysis import query, report, stats
from regbench.analysis.comparison import Target, summarise
from regbench.cli import compare

SEEDS = list(range(10))  # enough for the permutation test's floor (2/2^10) under Holm over 6
L2_ACC = np.array([0.970, 0.972, 0.969, 0.971, 0.973, 0.968, 0.974, 0.970, 0.972, 0.971])
L2_LOSS = np.array([0.100, 0.098, 0.103, 0.099, 0.097, 0.101, 0.096, 0.102, 0.098, 0.100])


def jitter(*pattern):
    """The five-value pattern, twice: a spread of known size around zero."""
    return np.tile(np.array(pattern), 2)


ARMS = {  # arm -> (regularizer params, seeds, test accuracy, test data loss)
    "l2-0.0001": ({"name": "l2", "weight": "0.0001"}, SEEDS, L2_ACC, L2_LOSS),
    # a real difference: +0.01 accuracy and -0.02 data loss on every seed, give or take 0.0005
    "custom-0.0001": ({"name": "custom", "weight": "0.0001"}, SEEDS,
                      L2_ACC + 0.01 + jitter(5, -5, 3, -3, 0) * 1e-4,
                      L2_LOSS - 0.02 + jitter(-4, 4, 2, -2, 0) * 1e-4),
    # no difference: the same values shuffled across seeds
    "none": ({"name": "none"}, SEEDS, L2_ACC[[2, 0, 4, 1, 3, 7, 5, 9, 6, 8]],
             L2_LOSS[[3, 4, 0, 2, 1, 8, 9, 5, 7, 6]]),
    # within the margins: +-0.0002 accuracy and +-0.0004 data loss around no difference
    "l1_l2-0.0002-0.5": ({"name": "l1_l2", "weight": "0.0002", "l1_ratio": "0.5"}, SEEDS,
                            L2_ACC + jitter(2, -2, 1, -1, 0) * 1e-4,
                            L2_LOSS + jitter(-4, 4, 2, -2, 0) * 1e-4),
    # bit-for-bit the reference: a regularizer that changed nothing
    "orthogonal-0.0001": ({"name": "orthogonal", "weight": "0.0001"}, SEEDS, L2_ACC, L2_LOSS),
    # a single run
    "l1-0.001": ({"name": "l1", "weight": "0.001"}, [0], np.array([0.95]), np.array([0.2])),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    mlflow.set_tracking_uri(sqlite_uri(folder))
    experiment_id = mlflow.create_experiment("regbench",
                                             artifact_location=(folder / "art").as_uri())
    for arm, (params, seeds, accuracy, data_loss) in ARMS.items():
        for seed, acc, loss in zip(seeds, accuracy, data_loss, strict=True):
            record_run(experiment_id, arm, params, seed, acc, loss)
    failed = MlflowClient().create_run(experiment_id)
    MlflowClient().set_terminated(failed.info.run_id, "FAILED")  # never compared
    return folder


@pytest.fixture
def comparison(store):
    mlflow.set_tracking_uri(sqlite_uri(store))
    return summarise(query.fetch_runs("regbench", None), "l2")


def test_the_table_has_the_means_stds_and_counts_computed_here(comparison):
    summary = comparison.summary.set_index("arm")
    assert list(summary.index) == ["l2-0.0001", "custom-0.0001", "l1-0.001",
                                   "l1_l2-0.0002-0.5", "none", "orthogonal-0.0001"]
    for arm, (_, seeds, accuracy, data_loss) in ARMS.items():
        row = summary.loc[arm]
        assert row["runs"] == len(seeds)
        assert row["test_accuracy_mean"] == pytest.approx(np.mean(accuracy))
        assert row["test_data_loss_mean"] == pytest.approx(np.mean(data_loss))
        if len(seeds) > 1:
            assert row["test_accuracy_std"] == pytest.approx(np.std(accuracy, ddof=1))
            assert row["test_data_loss_std"] == pytest.approx(np.std(data_loss, ddof=1))
        else:
            assert np.isnan(row["test_accuracy_std"])


def test_a_real_difference_is_found_and_its_interval_holds_the_truth(comparison):
    accuracy, data_loss = comparison.differences["custom-0.0001"]
    assert accuracy.paired and accuracy.verdict == "better" and data_loss.verdict == "better"
    assert accuracy.low <= 0.01 <= accuracy.high and accuracy.p_adjusted < 0.05
    assert data_loss.low <= -0.02 <= data_loss.high
    assert accuracy.p_permutation == pytest.approx(2 / 1024)


def test_no_difference_is_never_called_a_difference(comparison):
    accuracy, data_loss = comparison.differences["none"]
    assert accuracy.estimate == pytest.approx(0.0, abs=1e-12)
    assert accuracy.low <= 0.0 <= accuracy.high
    assert {accuracy.verdict, data_loss.verdict} <= {"equivalent", "inconclusive"}


def test_a_difference_within_the_margins_is_equivalent(comparison):
    accuracy, data_loss = comparison.differences["l1_l2-0.0002-0.5"]
    assert accuracy.verdict == data_loss.verdict == "equivalent"
    assert accuracy.p_tost_adjusted < 0.05 and accuracy.p_adjusted > 0.05


def test_holm_adjusts_over_every_test_of_the_report(comparison):
    tested = [d for diffs in comparison.differences.values() for d in diffs if d.tested]
    assert len(tested) == 6  # custom, l1_l2, none x 2 metrics (identical and single arms aside)
    assert [d.p_adjusted for d in tested] == pytest.approx(
        stats.holm([d.p_verdict for d in tested]))
    assert all(d.p_adjusted >= d.p_value for d in tested)


def test_identical_arms_are_named_and_not_tested(comparison):
    accuracy, data_loss = comparison.differences["orthogonal-0.0001"]
    assert accuracy.identical and np.isnan(accuracy.p_value) and np.isnan(data_loss.p_adjusted)
    lines = report.verdict_lines(comparison)
    assert ("orthogonal-0.0001 is identical to l2-0.0001 on all 10 seeds: at this strength the "
            "regularizer had no effect") in lines
    assert not any("l1_l2" in line and "agrees with" in line for line in lines)  # 2e-4 apart


def test_arms_that_differ_by_round_off_alone_are_named():
    seeds = [0, 1, 2]
    frame = pd.DataFrame({"run_id": [f"r{i}" for i in range(6)], "seed": seeds * 2,
                          "arm": ["none"] * 3 + ["custom-0.0001"] * 3,
                          "metrics.test_accuracy": [0.9857, 0.9855, 0.9862] * 2,
                          "metrics.test_data_loss": [0.05709382, 0.05099969, 0.05794143,
                                                     0.05709390, 0.05099970, 0.05794166]})
    result = summarise(query.RecordedRuns(frame), "none")
    assert report.verdict_lines(result)[-1] == (
        "custom-0.0001 agrees with none to within 2e-07 on all 3 seeds (float32 round-off): at "
        "this strength the regularizer had no measurable effect")


def test_an_arm_that_stopped_at_fewer_seeds_is_identical_on_the_seeds_it_has():
    """A sequential study stops an identical arm early while the reference goes on; the
    fixed-sample report of the same runs pairs on the shared seeds, as stats.compare does."""
    accuracy, loss = [0.9857, 0.9855, 0.9862, 0.9850, 0.9841], [0.057, 0.051, 0.058, 0.055, 0.06]
    frame = pd.DataFrame({"run_id": [f"r{i}" for i in range(8)], "seed": [0, 1, 2, 3, 4, 0, 1, 2],
                          "arm": ["none"] * 5 + ["orthogonal-0.0001"] * 3,
                          "metrics.test_accuracy": accuracy + accuracy[:3],
                          "metrics.test_data_loss": loss + loss[:3]})
    result = summarise(query.RecordedRuns(frame), "none")
    accuracy_difference, loss_difference = result.differences["orthogonal-0.0001"]
    assert accuracy_difference.identical and loss_difference.identical
    assert accuracy_difference.left_out == 2
    assert ("orthogonal-0.0001 is identical to none on all 3 seeds: at this strength the "
            "regularizer had no effect") in report.verdict_lines(result)


def test_an_accuracy_equal_on_every_seed_is_tested_when_the_losses_differ():
    """Two models can score the same count on every seed and still differ: identical needs
    every metric to agree (comparison.identical), else the metric is tested like any other."""
    seeds = [0, 1, 2, 3, 4]
    frame = pd.DataFrame({"run_id": [f"r{i}" for i in range(10)], "seed": seeds * 2,
                          "arm": ["none"] * 5 + ["custom-0.01"] * 5,
                          "metrics.test_accuracy": [0.8557, 0.8555, 0.8562, 0.8501, 0.8533] * 2,
                          "metrics.test_data_loss": [0.57, 0.51, 0.58, 0.55, 0.56, 0.5702,
                                                     0.5098, 0.5801, 0.5503, 0.5597]})
    result = summarise(query.RecordedRuns(frame), "none")
    accuracy, _ = result.differences["custom-0.01"]
    assert not accuracy.identical and accuracy.verdict == stats.INCONCLUSIVE
    assert accuracy.seeds_needed == 7  # the sign flips' floor, 2/2^7 <= 0.05/2
    assert result.identical == () and not any("identical" in line
                                               for line in report.verdict_lines(result))


def test_a_single_run_cannot_be_judged(comparison):
    accuracy, _ = comparison.differences["l1-0.001"]
    assert accuracy.verdict == stats.CANNOT_JUDGE
    assert accuracy.estimate == pytest.approx(0.95 - np.mean(L2_ACC))


def test_targets_are_reported_per_arm(store):
    mlflow.set_tracking_uri(sqlite_uri(store))
    targets = (Target.parse("val_accuracy>=0.3"), Target.parse("test_accuracy<0.975"))
    result = summarise(query.fetch_runs("regbench", None), "l2", targets=targets)
    by_arm = {(t.arm, str(t.target)): t for t in result.targets}
    assert (by_arm["none", "val_accuracy >= 0.3"].met, by_arm["none", "val_accuracy >= 0.3"].runs
            ) == (10, 10)  # the final (last epoch's) value, 1/3
    custom = by_arm["custom-0.0001", "test_accuracy < 0.975"]
    assert (custom.met, custom.runs) == (0, 10)
    assert custom.mean == pytest.approx(np.mean(ARMS["custom-0.0001"][2]))
    assert "| custom-0.0001 | test_accuracy < 0.975 | 0.9810 | 0 of 10 |" in report.markdown(result)
    for bad in ("accuracy=0.5", "val_acc>=0.5", "val_accuracy>=high"):
        with pytest.raises(ValueError, match="--target"):
            Target.parse(bad)


def test_margins_default_to_those_the_runs_recorded():
    """A preset's margins travel with its runs (params margins.*); runs that disagree, or
    predate the key, leave the default."""
    import pandas as pd

    from regbench.analysis.comparison import recorded_margins

    runs = pd.DataFrame({"params.margins.test_accuracy": ["0.003", "0.003", None],
                         "params.margins.test_data_loss": ["0.02", "0.05", "0.02"]})
    assert recorded_margins(runs) == {"test_accuracy": 0.003}
    assert recorded_margins(pd.DataFrame({"seed": [0]})) == {}


def test_margins_come_from_the_command_line():
    assert compare.parse_margins(["test_accuracy=0.002"]) == {"test_accuracy": 0.002}
    for bad in (["accuracy=0.1"], ["test_accuracy=abc"], ["test_accuracy=-1"],
                ["test_data_loss=inf"]):
        with pytest.raises(ValueError, match="--margin"):
            compare.parse_margins(bad)


def test_bands_and_best_values_from_sql_equal_those_from_each_run_history(store):
    """Pins the private SQL aggregates (query._sql_store, _sql_bands, best_values) against the
    public client's histories aggregated here: runs of unequal length, a NaN, an arm of one."""
    mlflow.set_tracking_uri(sqlite_uri(store))
    client = MlflowClient()
    experiment_id = client.create_experiment("curve-bands")
    histories = {"a": [[0.5, 0.4, 0.3], [0.6, float("nan"), 0.2, 0.1]], "b": [[0.9, 0.8]]}
    runs_by_arm = {arm: [] for arm in histories}
    for arm, series in histories.items():
        for values in series:
            run_id = client.create_run(experiment_id).info.run_id
            for step, value in enumerate(values):
                for metric in ("loss", "val_accuracy"):
                    client.log_metric(run_id, metric, value, step=step)
            runs_by_arm[arm].append(run_id)
    assert query._sql_store() is not None
    sql, rest = query.curve_bands(runs_by_arm), query.curve_bands(runs_by_arm, bulk=False)
    for arm in histories:
        assert set(sql[arm]) == set(rest[arm]) == {"loss", "val_accuracy"}
        for metric, band in sql[arm].items():
            assert band.runs == rest[arm][metric].runs == len(histories[arm])
            for field in ("mean", "low", "high"):
                np.testing.assert_allclose(getattr(band, field),
                                           getattr(rest[arm][metric], field), rtol=1e-12)
    np.testing.assert_allclose(sql["a"]["loss"].mean, [0.55, 0.4, 0.25, 0.1])
    np.testing.assert_allclose(sql["a"]["loss"].high, [0.6, 0.4, 0.3, 0.1])
    run_ids = [run_id for ids in runs_by_arm.values() for run_id in ids]
    best = query.best_values(run_ids, "val_accuracy")
    assert best == query.best_values(run_ids, "val_accuracy", bulk=False)
    assert list(best.values()) == [0.5, 0.6, 0.9]


def test_runs_read_from_the_sql_tables_equal_what_search_runs_gives(store):
    """Pins the private SQL read of runs (query._sql_finished_runs) against mlflow.search_runs:
    same rows, columns, values and types."""
    mlflow.set_tracking_uri(sqlite_uri(store))
    experiment_id = mlflow.get_experiment_by_name("regbench").experiment_id
    client = MlflowClient()
    nan_run = client.create_run(experiment_id, tags={record.TAG_ARM: "none"})
    client.log_metric(nan_run.info.run_id, "test_accuracy", float("nan"))
    client.set_terminated(nan_run.info.run_id)
    try:
        ours = query._sql_finished_runs(query._sql_store(), experiment_id)
        theirs = mlflow.search_runs([experiment_id], "attributes.status = 'FINISHED'",
                                    max_results=1000)
    finally:
        client.delete_run(nan_run.info.run_id)
    assert len(ours) == 52 and list(ours["run_id"]) == list(theirs["run_id"])
    pd.testing.assert_frame_equal(ours[sorted(ours.columns)], theirs[sorted(theirs.columns)])


def test_one_progress_bar_for_the_whole_read_and_only_when_it_is_slow(store, capfd,
                                                                    monkeypatch):
    mlflow.set_tracking_uri(sqlite_uri(store))
    runs = query.fetch_runs("regbench", None).runs
    capfd.readouterr()
    query.read_artifacts(runs)
    assert capfd.readouterr().err == ""  # quick: no bar
    monkeypatch.setattr(query, "PROGRESS_DELAY", 0.0)
    artifacts = query.read_artifacts(runs)
    err = capfd.readouterr().err
    assert err.count("reading 51 runs") >= 1 and "Downloading artifacts" not in err
    # one bar for the whole read (it may be redrawn as it moves): one description, one total
    assert set(re.findall(r"reading \d+ runs", err)) == {"reading 51 runs"}
    assert set(re.findall(r"\d+/(\d+) \[", err)) == {"102"} and len(artifacts.curves) == 6


def test_the_report_is_printed_written_and_logged(store, tmp_path, capsys):
    assert compare.main(["--tracking-uri", sqlite_uri(store), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| custom-0.0001 | 10 | 0 1 2 3 4 5 6 7 8 9 |" in printed
    assert "custom-0.0001 vs l2-0.0001: test accuracy better (+0.0100" in printed
    written = {p.name for p in tmp_path.iterdir()}
    expected = {"comparison.md", "comparison.csv", "compared_run_ids.txt", "learning_curves.png",
                "test_accuracy_per_seed.png", "reliability.png"}
    assert expected <= written
    csv = pd.read_csv(tmp_path / "comparison.csv")
    assert csv.set_index("arm").loc["none", "runs"] == 10
    runs = mlflow.search_runs(experiment_names=[compare.COMPARISONS_EXPERIMENT])
    assert len(runs) == 1
    compared = set(runs.iloc[0]["tags.compared_run_ids"].split(","))
    assert len(compared) == 51
    logged = {a.path for a in MlflowClient().list_artifacts(runs.iloc[0].run_id)}
    assert expected <= logged


def refused(arguments, capsys) -> str:
    """compare.main's one line of refusal (exit 2)."""
    with pytest.raises(SystemExit) as exit_:
        compare.main(arguments)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1, lines
    return lines[0]


def test_a_missing_store_is_refused_and_not_created(tmp_path, capsys):
    error = refused(["--tracking-uri", sqlite_uri(tmp_path), "--no-log"], capsys)
    assert error.startswith(f"error: tracking store {sqlite_uri(tmp_path)} does not exist")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_experiment_says_so(store, capsys):
    error = refused(["--tracking-uri", sqlite_uri(store), "--no-log", "--experiment", "nope"],
                    capsys)
    assert error.startswith("error: no experiment 'nope'") and "make train" in error


def test_a_filter_matching_nothing_says_so(store, capsys):
    arguments = ["--tracking-uri", sqlite_uri(store), "--no-log",
                 "--filter", "params.seed = '99'"]
    assert "no FINISHED runs in experiment 'regbench' matching" in refused(arguments, capsys)


def test_a_missing_reference_arm_says_which_arms_there_are(store, capsys):
    arguments = ["--tracking-uri", sqlite_uri(store), "--no-log", "--reference", "elastic"]
    error = refused(arguments, capsys)
    assert "reference arm 'elastic' is not one of the arms" in error and "l2-0.0001" in error


def test_an_out_that_is_a_file_is_refused_before_reading(store, tmp_path, capsys):
    occupied = tmp_path / "report.md"
    occupied.write_text("kept")
    error = refused(["--tracking-uri", sqlite_uri(store), "--no-log", "--out", str(occupied)],
                    capsys)
    assert error == f"error: --out {occupied}: cannot be created, {occupied} is not a folder"
    assert occupied.read_text() == "kept"


def test_runs_with_missing_metrics_are_named_not_fatal(tmp_path):
    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    experiment_id = mlflow.create_experiment("regbench",
                                             artifact_location=(tmp_path / "a").as_uri())
    for seed in (0, 1):
        record_run(experiment_id, "l2-0.0001", {"name": "l2", "weight": "0.0001"}, seed, 0.9, 0.3)
    client = MlflowClient()
    bare = client.create_run(experiment_id, tags={record.TAG_ARM: "none"})
    client.log_param(bare.info.run_id, "regularizer.name", "none")
    client.log_param(bare.info.run_id, "seed", 0)
    client.log_metric(bare.info.run_id, "test_accuracy", 0.8)
    client.set_terminated(bare.info.run_id)
    foreign = client.create_run(experiment_id)  # regbench-looking params, no arm tag
    client.log_param(foreign.info.run_id, "regularizer.name", "l2")
    client.log_param(foreign.info.run_id, "regularizer.weight", "abc")
    client.set_terminated(foreign.info.run_id)
    recorded = query.fetch_runs("regbench", None)
    before = recorded.runs.copy()
    result = summarise(recorded, "l2")
    assert recorded.runs.equals(before)  # the input is not changed
    assert any("lack test_ece" in w and bare.info.run_id[:8] in w for w in result.warnings)
    assert any("without the tag arm" in w and foreign.info.run_id[:8] in w
               for w in result.warnings)
    assert "lack test_ece" in report.markdown(result)


@pytest.mark.long
def test_a_small_study_end_to_end(tmp_path):
    """The study's multirun grid on synthetic data, then the comparison of its real runs."""
    result = run_command(
        "train", "-m", "experiment=l2_vs_custom", "data=synthetic", "trainer=smoke",
        "seed=0,1", f"mlflow.tracking_uri={sqlite_uri(tmp_path)}", "mlflow.experiment_name=study",
        f"hydra.sweep.dir={tmp_path / 'multirun'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # the command itself: its exit skips the last cycle collection, yet everything is written
    compared = run_command("compare", "--tracking-uri", sqlite_uri(tmp_path),
                          "--experiment", "study", "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr[-3000:]
    printed = compared.stdout
    for arm in ("l2-0.0001", "custom-0.0001", "none"):
        assert f"| {arm} | 2 | 0 1 |" in printed
    assert printed.count(" vs l2-0.0001: test accuracy ") == 2
    assert printed.endswith("test_accuracy_per_seed.png, reliability.png)\n")
    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    logged = mlflow.search_runs(experiment_names=[compare.COMPARISONS_EXPERIMENT])
    assert list(logged["status"]) == ["FINISHED"]
    artifacts = MlflowClient().list_artifacts(logged.run_id[0])
    assert {Path(a.path).name for a in artifacts} >= {"comparison.md", "learning_curves.png"}


def test_a_command_s_imports_are_frozen_and_its_exit_skips_the_last_collection():
    """common.collector_paused: the collector is off inside, what was made is frozen after, the
    collector's state comes back; common.exit_skipping_final_collection freezes, then exits."""
    import gc

    from regbench.cli import common


    try:
        frozen = gc.get_freeze_count()
        with common.collector_paused():
            assert not gc.isenabled()
            made = [[index] for index in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(made)
        gc.disable()
        with common.collector_paused():
            pass
        assert not gc.isenabled()
        gc.enable()
        frozen = gc.get_freeze_count()
        made_later = [[index] for index in range(1000)]  # (``made`` stays: frozen, counted)
        with pytest.raises(SystemExit) as exited:
            common.exit_skipping_final_collection(3)
        assert exited.value.code == 3 and gc.get_freeze_count() >= frozen + len(made_later)
    finally:
        gc.enable()
        gc.unfreeze()


def test_ctrl_c_on_a_command_is_one_line_and_exit_130(store, capsys):
    import signal
    import subprocess
    import sys
    import time

    from regbench.cli import common


    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exited:
        common.run(interrupted)
    assert exited.value.code == 130
    assert capsys.readouterr().err == "interrupted (Ctrl-C)\n"
    process = subprocess.Popen([sys.executable, "-m", "regbench", "compare", "--tracking-uri",
                                sqlite_uri(store), "--no-log"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # within its imports or its reading: both end the same way
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    # 130, or ended by the SIGINT itself (Python re-raises an interrupt that reached its top
    # level as the signal), which a shell reports as 130 too
    assert process.returncode in (130, -signal.SIGINT) and stderr.strip().splitlines() == [
        "interrupted (Ctrl-C)"], stderr


def markdown_rows(text: str, first_header: str) -> dict[tuple[str, ...], list[str]]:
    """The rows of the Markdown table whose header row starts with ``first_header``, keyed by
    their first cells (arm, or arm and metric)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[tuple(cells[:2])] = cells
    return rows


def test_the_written_report_is_what_the_store_gives(store, tmp_path):
    """comparison.md's tables hold the numbers scipy computes from the store's runs, and its
    first line names the command and the commits."""
    from scipy import stats as scipy_stats

    arguments = ["--tracking-uri", sqlite_uri(store), "--out", str(tmp_path), "--no-log"]
    assert compare.main(arguments) == 0
    text = (tmp_path / "comparison.md").read_text()
    assert text.startswith(f"Written by `regbench compare {' '.join(arguments)}` at "
                           "commit ")
    assert "from 51 runs trained at commit unknown (51)." in text.splitlines()[0]
    summary = {key[0]: cells for key, cells in markdown_rows(text, "arm | runs").items()}
    differences = markdown_rows(text, "arm | metric")
    _, _, l2_accuracy, l2_loss = ARMS["l2-0.0001"]
    for arm, (_, seeds, accuracy, data_loss) in ARMS.items():
        cells = summary[arm]
        assert cells[1] == str(len(seeds))
        expected = f"{np.mean(accuracy):.4f}" + (
            f" ± {np.std(accuracy, ddof=1):.4f}" if len(seeds) > 1 else "")
        assert cells[3] == expected
        if arm in ("l2-0.0001", "l1-0.001", "orthogonal-0.0001"):
            continue  # the reference, a single run, an identical arm: no paired test
        for metric, values, reference in (("test accuracy", accuracy, l2_accuracy),
                                          ("test data loss", data_loss, l2_loss)):
            cells = differences[(arm, metric)]
            test = scipy_stats.ttest_rel(values, reference)
            low, high = test.confidence_interval(0.95)
            assert cells[2:4] == ["paired", "10/10"]
            assert float(cells[4]) == pytest.approx(np.mean(values - reference), abs=5e-5)
            assert cells[5] == f"[{low:+.4f}, {high:+.4f}]"
            assert cells[6] == f"{test.pvalue:.3g}"


def test_an_arm_is_one_config_and_one_run_per_seed(tmp_path):
    """Runs of one label trained with two optimizers are two arms, named by the key that
    differs; a seed trained twice is compared once, by its newest run, and stays paired."""
    import time

    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    experiment_id = mlflow.create_experiment("mixed", artifact_location=(tmp_path / "a").as_uri())
    client = MlflowClient()
    for optimizer, shift in (("adam", 0.0), ("fused_adam", 0.001)):
        for seed in range(3):
            run_id = record_run(experiment_id, "l2-0.0001", {"name": "l2", "weight": "0.0001"},
                                seed, L2_ACC[seed] + shift, L2_LOSS[seed])
            client.log_param(run_id, "trainer.optimizer", optimizer)
            client.log_param(run_id, "data.split_seed", seed)  # follows the seed: no split
    for seed in range(3):
        record_run(experiment_id, "none", {"name": "none"}, seed, L2_ACC[seed] - 0.01,
                   L2_LOSS[seed])
    time.sleep(0.01)
    newer = record_run(experiment_id, "none", {"name": "none"}, 1, 0.5, 0.5)
    recorded = query.fetch_runs("mixed", None)
    result = summarise(recorded, "none")
    assert list(result.summary["arm"]) == ["none", "l2-0.0001 (trainer.optimizer=adam)",
                                           "l2-0.0001 (trainer.optimizer=fused_adam)"]
    assert list(result.summary["runs"]) == [3, 3, 3]
    none = recorded.runs[recorded.runs["arm"] == "none"].set_index("seed")
    assert none.loc[1, "run_id"] == newer and none.loc[1, "metrics.test_accuracy"] == 0.5
    assert all(d.paired for ds in result.differences.values() for d in ds)
    assert ("arm l2-0.0001 holds runs of 2 configs that differ in trainer.optimizer: each is "
            "an arm of its own") in result.warnings
    assert any(w.startswith("1 run(s) repeat a seed of their arm; the newest run of each seed "
                            "is compared") for w in result.warnings)


def test_every_verdict_names_the_interval_it_was_read_from(comparison):
    lines = report.verdict_lines(comparison)
    equivalent = next(line for line in lines if line.startswith("l1_l2-0.0002-0.5"))
    assert "test accuracy equivalent within ±0.001 (+0.0000, 90% CI [" in equivalent
    better = next(line for line in lines if line.startswith("custom-0.0001"))
    assert "test accuracy better (+0.0100, 95% CI [" in better
    assert "Monte Carlo" not in report.markdown(comparison)  # 10 seeds: exact


def test_a_report_states_the_configuration_its_runs_share_grouped_without_unset_keys():
    runs = pd.DataFrame({"params.model.name": ["mlp_bn"] * 3, "params.seed": ["0", "1", "2"],
                         "params.data.split_seed": ["0", "1", "2"],
                         "params.data.dir": ["None"] * 3, "params.data.limit": ["6000"] * 3,
                         "params.sweep.overrides": [None] * 3, "params.rerun": ["False"] * 3,
                         "params.trainer.optimizer": ["adam"] * 3,
                         "params.optimizer_learning_rate": ["0.001"] * 3,
                         "params.regularizer.weight": ["0.0001", "0.001", None],
                         "tags.git_commit": ["a" * 40] * 3, "arm": ["l2-0.0001"] * 3})
    assert report.shared_config(runs) == {"data": ["limit=6000"], "model": ["name=mlp_bn"],
                                          "trainer": ["optimizer=adam"], "": ["rerun=False"]}
    header = report.provenance("regbench compare", "b" * 40, runs)
    assert header.endswith("<details><summary>Configuration every run shares</summary>\n\n"
                           "| group | settings |\n|---|---|\n| data | limit=6000 |\n"
                           "| model | name=mlp_bn |\n| trainer | optimizer=adam |\n"
                           "| run | rerun=False |\n\n</details>\n\n")


def test_an_artifact_uri_that_is_a_plain_path_is_read_from_disk(tmp_path, monkeypatch):
    """A store whose runs' artifact URIs are plain paths (made by MLflow's client elsewhere)
    is read as a file:// one is, without MLflow's copy per read."""
    import mlflow.artifacts

    from regbench.analysis.query import load_json, local_path

    artifact = tmp_path / "artifacts" / "reliability.json"
    artifact.parent.mkdir()
    artifact.write_text('{"bins": 2}')
    monkeypatch.setattr(mlflow.artifacts, "load_dict", lambda uri: pytest.fail(uri))
    assert local_path(str(artifact)) == local_path(artifact.as_uri()) == artifact
    assert load_json(str(artifact)) == load_json(artifact.as_uri()) == {"bins": 2}
    assert local_path("s3://bucket/run/artifacts/x.json") is None
    assert local_path("mlflow-artifacts:/1/abc/artifacts/x.json") is None


def test_runs_with_impossible_values_are_left_out_and_named(tmp_path):
    """An accuracy outside [0, 1] or an infinite loss (an edited store, a broken evaluation)
    never reaches a mean, an interval or a test: the run is left out and named with its
    values; a NaN is still the statistics' to drop and count."""
    from regbench.analysis.query import fetch_runs

    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    experiment_id = mlflow.create_experiment("regbench",
                                             artifact_location=(tmp_path / "a").as_uri())
    ids = {}
    for arm, params in (("l2-0.0001", {"name": "l2", "weight": "0.0001"}),
                        ("none", {"name": "none"})):
        for seed in range(4):
            accuracy, loss = {(arm, 1): (2.0, 0.3), (arm, 2): (0.9, float("inf"))}.get(
                (arm if arm == "l2-0.0001" else None, seed), (0.9 + seed / 100, 0.3))
            ids[arm, seed] = record_run(experiment_id, arm, params, seed, accuracy, loss,
                                        with_reliability=False)
    recorded = fetch_runs("regbench", None)
    kept = set(zip(recorded.runs["arm"], recorded.runs["seed"].astype(int), strict=True))
    assert kept == {("l2-0.0001", 0), ("l2-0.0001", 3), *(("none", s) for s in range(4))}
    assert recorded.notes[0] == (
        f"2 run(s) hold impossible values and are left out: {ids['l2-0.0001', 1][:8]} "
        f"test_accuracy=2; {ids['l2-0.0001', 2][:8]} test_data_loss=inf, "
        "test_total_loss=inf")
    comparison = summarise(recorded, "none", {}, ())
    assert recorded.notes[0] in comparison.warnings  # the report prints each


def test_a_comparison_run_carries_its_process_and_ends_killed_when_interrupted(tmp_path,
                                                                              monkeypatch):
    """A report's run in regbench-comparisons is closed as a training run is: host and pid
    tags (``runs --stale`` can find it), FINISHED, or KILLED on Ctrl-C while it logs."""
    from regbench.analysis import publish

    uri = sqlite_uri(tmp_path)
    page = tmp_path / "comparison.md"
    page.write_text("a report\n")
    finished = publish.log_report([page], uri, "compare-x", {"report": "compare"})
    client = MlflowClient()
    run = client.get_run(finished)
    assert run.info.status == "FINISHED" and run.data.tags["pid"].isdigit() and run.data.tags[
        "host"]

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt("signal SIGINT")

    monkeypatch.setattr(mlflow, "log_artifact", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        publish.log_report([page], uri, "compare-y", {"report": "compare"})
    interrupted = mlflow.search_runs(experiment_names=[publish.COMPARISONS_EXPERIMENT],
                                     filter_string="attributes.run_name = 'compare-y'")
    assert list(interrupted["status"]) == ["KILLED"]


def test_per_seed_values_behind_every_verdict_are_published(store, tmp_path):
    """per_seed.csv: one row per run and tested metric, the values the statistics read."""
    assert compare.main(["--tracking-uri", sqlite_uri(store), "--out", str(tmp_path),
                         "--no-log"]) == 0
    rows = pd.read_csv(tmp_path / "per_seed.csv")
    assert list(rows.columns) == list(report.PER_SEED_COLUMNS)
    for arm, (_, seeds, accuracy, data_loss) in ARMS.items():
        for metric, values in (("test_accuracy", accuracy), ("test_data_loss", data_loss)):
            got = rows[(rows["arm"] == arm) & (rows["metric"] == metric)].sort_values("seed")
            assert list(got["seed"]) == list(seeds)
            assert np.allclose(got["value"], values), (arm, metric)
    assert rows["run_id"].str.len().eq(32).all()
    # README's recipe: an interval of comparison.md from per_seed.csv with scipy
    from scipy import stats as scipy_stats

    accuracy = rows[rows["metric"] == "test_accuracy"].pivot(index="seed", columns="arm",
                                                             values="value")
    paired = accuracy[["custom-0.0001", "l2-0.0001"]].dropna()
    low, high = scipy_stats.ttest_rel(paired["custom-0.0001"], paired["l2-0.0001"]
                                      ).confidence_interval(0.95)
    assert f"[{low:+.4f}, {high:+.4f}]" in (tmp_path / "comparison.md").read_text()


def test_a_report_is_written_whole_or_not_at_all(store, tmp_path, monkeypatch):
    """An interrupted writing leaves the earlier report as it was and no temporary file; a
    complete one leaves no file of the earlier report that it did not write again."""
    arguments = ["--tracking-uri", sqlite_uri(store), "--out", str(tmp_path), "--no-log"]
    assert compare.main(arguments) == 0
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    (tmp_path / "sequential.md").write_text("another report's file\n")

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt("signal SIGINT")

    from regbench.run import plots

    monkeypatch.setattr(plots, "plot_reliability", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        compare.main([*arguments, "--margin", "test_accuracy=0.5"])  # a different report
    after = {path.name: path.read_bytes() for path in tmp_path.iterdir()
             if path.name != "sequential.md"}
    assert after == before  # comparison.md, csv, plots: all the earlier ones, nothing staged
    monkeypatch.undo()
    (tmp_path / "reliability.png").unlink()
    (tmp_path / "stale.png").write_bytes(b"not the report's")
    assert compare.main(arguments) == 0
    assert (tmp_path / "reliability.png").exists() and (tmp_path / "stale.png").exists()
    assert (tmp_path / "sequential.md").read_text() == "another report's file\n"


def test_a_run_whose_seed_was_relabelled_is_left_out_and_trained_again(tmp_path):
    """A run whose seed param or tag says 0 while its name says s2 (its seed relabelled in the
    store) pairs with nothing: the comparison leaves it out naming it, and no job reuses it,
    so the genuine seed is trained again."""
    from regbench.design import sweep

    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    experiment_id = mlflow.create_experiment("relabelled")
    for seed in range(3):
        record_run(experiment_id, "none", {"name": "none"}, seed, 0.97, 0.1,
                   with_reliability=False)
        record_run(experiment_id, "l2-0.0001", {"name": "l2", "weight": "0.0001"}, seed, 0.97,
                   0.1, with_reliability=False)
    client = MlflowClient()
    relabelled = record_run(experiment_id, "l2-0.0001", {"name": "l2", "weight": "0.0001"}, 0,
                            0.5, 0.9, with_reliability=False)
    client.set_tag(relabelled, "mlflow.runName", "l2-0.0001-mlp_bn-mnist-s2")
    client.set_tag(relabelled, record.TAG_CONFIG_HASH, "hash-of-seed-2")
    recorded = query.fetch_runs("relabelled", None)
    assert relabelled not in set(recorded.runs["run_id"])
    assert any(note.startswith("1 run(s) contradict themselves on their seed")
               and f"{relabelled[:8]} says 0, 2" in note for note in recorded.notes)
    l2 = recorded.runs[recorded.runs["arm"] == "l2-0.0001"]
    assert sorted(l2["seed"]) == [0, 1, 2] and (l2["metrics.test_accuracy"] == 0.97).all()
    assert sweep.finished_runs(experiment_id, "hash-of-seed-2") == []  # trained again
