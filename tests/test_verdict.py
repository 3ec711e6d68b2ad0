"""``regbench verdict``: a regularizer of the user's, from its file to a verdict report, end to
end on synthetic data (calibrate, path, selection, fresh seeds in rounds, report), resumed."""

import re

import mlflow
import pandas as pd
import pytest

from helpers import PROJECT_ROOT, sqlite_uri
from regbench import record
from regbench.analysis import query
from regbench.cli.main import dispatch
from regbench.design import calibrate, path, presets
from regbench.run import identity

EXAMPLE = PROJECT_ROOT / "examples" / "soft_orthogonal.py"
# each multirun's jobs in its own process, one after another (no worker processes to start)
SMALL = ["data=synthetic", "trainer=smoke", "model=mlp_small", "hydra/launcher=basic"]
# path_mnist's path on other data and another model: an experiment of its own
EXPERIMENT = presets.experiment_name("path_mnist", tuple(SMALL))


def probes_of(uri: str) -> list[str]:
    """The options of the calibration probes recorded in the path's experiment."""
    mlflow.set_tracking_uri(uri)
    probes = mlflow.search_runs(experiment_names=[EXPERIMENT],
                                filter_string=f"tags.{record.TAG_CALIBRATION} != ''")
    return list(probes[f"tags.{record.TAG_CALIBRATION}"])


@pytest.mark.long
def test_a_users_regularizer_from_its_file_to_a_verdict(plugin, tmp_path, monkeypatch, capsys):
    """Its runs resume as every multirun's do (tests/test_sweep.py); its calibration is found
    in the experiment, not probed again. Edited, the plugin's file is trained again only when
    its code changed (a comment is not a change; a formula is), and the report then names the
    new code identity."""
    mine = plugin(EXAMPLE.read_text(), name="soft_orthogonal.py")  # the jobs inherit it
    monkeypatch.chdir(tmp_path)  # Hydra's multirun folders
    monkeypatch.setattr(calibrate, "GRID_POINTS", 2)
    monkeypatch.setattr(calibrate, "PROBE_STEPS", 30)
    monkeypatch.setattr(path, "SELECTION_SEEDS", (0, 1))
    uri = sqlite_uri(tmp_path)
    arguments = ["soft_orthogonal", "--preset", "path_mnist", "--first", "2", "--step", "1",
                 "--max-seeds", "2", "--any-budget", "--tracking-uri", uri, "--out",
                 str(tmp_path / "v"),
                 *SMALL]
    assert dispatch(["verdict", *arguments]) == 0
    sentence = capsys.readouterr().out.strip().splitlines()[-1]
    assert sentence.startswith("**soft_orthogonal** at the strength chosen on validation "
                               "(soft_orthogonal-")
    text = (tmp_path / "v" / "verdict.md").read_text()
    # one epoch of smoke training: L2's chosen strength barely pulls, so it is none again
    assert "against none: " in sentence and "against l2-" not in sentence
    assert "Not compared with l2: l2 at " in text and "in effect none" in text
    assert text.startswith("Written by `regbench verdict soft_orthogonal --preset ")
    assert sentence in text and "## Calibration" in text and "| soft_orthogonal | 0.0001, " \
        "0.001 |" in text and "| l2 | 0.0001, 0.001 |" in text
    assert {"sequential.md", "comparison.md", "verdict.md"} <= {
        p.name for p in (tmp_path / "v").iterdir()}

    assert sorted(probes_of(uri)) == ["l2", "soft_orthogonal"]
    grid = calibrate.in_experiment(EXPERIMENT)[1].grid
    trained = query.fetch_runs(EXPERIMENT, None).runs
    assert sorted(trained[trained["arm"].str.startswith("soft_orthogonal")]["arm"].unique()) \
        == sorted(f"soft_orthogonal-{w:g}" for w in grid)
    fresh = query.fetch_runs(f"{EXPERIMENT}-verdict", None).runs  # seeds of its own
    assert sorted(fresh["seed"].unique()) == [1000, 1001]
    assert {arm.split("-")[0] for arm in fresh["arm"]} == {"none", "soft_orthogonal"}

    def probe_again(*_):
        raise AssertionError("probed again")

    calibrate_probe = calibrate.probe

    monkeypatch.setattr(calibrate, "probe", probe_again)  # found in the experiment instead
    assert path.grids("path_mnist", ["soft_orthogonal"], tuple(SMALL), uri, EXPERIMENT)[0] == {
        "soft_orthogonal": grid}

    def runs_of_code():
        found = pd.concat([mlflow.search_runs(experiment_names=[name]) for name in (
            EXPERIMENT, f"{EXPERIMENT}-verdict")])
        return found[found["status"] == "FINISHED"].groupby(
            f"tags.{record.TAG_REGULARIZER}")[f"tags.{record.TAG_CODE_IDENTITY}"].agg(
            lambda codes: sorted(codes.value_counts().items()))

    before = runs_of_code()
    first_code = identity.of_option("soft_orthogonal").identity
    first_cost = re.search(r"Wall time here: [\d.]+ min for this command, \d+ runs trained", text)
    assert first_cost and not first_cost[0].endswith(" 0 runs trained")
    assert f"`{first_code}`, arms soft_orthogonal-" in text
    # a comment-only edit of the plugin: the same code identity, nothing trained again
    mine.write_text(mine.read_text().replace("    def __call__",
                                             "    # the penalty\n    def __call__"))
    plugin(mine)
    assert dispatch(["verdict", *arguments]) == 0
    assert runs_of_code().equals(before)
    kept = re.search(r"Wall time here: ([\d.]+) min for this command, (\d+) runs trained by "
                     r"it, when this report was first written; its latest run: [\d.]+ min, 0 "
                     r"runs trained", (tmp_path / "v" / "verdict.md").read_text())
    assert kept and kept[0].startswith(first_cost[0])  # what the first run cost, kept
    # a formula edit: its arms (calibration, path and fresh seeds) trained again, none's and
    # l2's reused; the report names the new identity, the old runs are left out
    monkeypatch.setattr(calibrate, "probe", calibrate_probe)
    mine.write_text(mine.read_text().replace("ops.square(gram - identity)",
                                             "2 * ops.square(gram - identity)"))
    plugin(mine)
    second_code = identity.of_option("soft_orthogonal").identity
    assert second_code != first_code
    assert dispatch(["verdict", *arguments]) == 0
    after = runs_of_code()
    assert after.drop("soft_orthogonal").equals(before.drop("soft_orthogonal"))
    old, = before["soft_orthogonal"]
    assert dict(after["soft_orthogonal"]) == {old[0]: old[1], second_code: old[1]}
    text = (tmp_path / "v" / "verdict.md").read_text()
    assert f"`{second_code}`, arms soft_orthogonal-" in text and first_code not in text
    assert sorted(probes_of(uri)) == ["l2", "soft_orthogonal", "soft_orthogonal"]


@pytest.mark.parametrize("arguments, message", [
    (["mine"], "regularizer.name=mine: allowed are activity_l1"),
    (["none"], "none: the verdict compares an option with none and l2"),
    (["l1", "--preset", "l2_vs_custom"], "--preset l2_vs_custom: not a path preset"),
    (["l1", "trainer.epochs=0"], "trainer.epochs=0: must be"),
    (["l1", "regularizer.weight=[1"], "regularizer.weight=[1: not an override Hydra can read"),
    (["l1", "data=nope"], "data=nope: unknown option; allowed are"),
])
def test_a_verdict_refuses_bad_input_in_one_line(arguments, message, capsys, tmp_path,
                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        dispatch(["verdict", *arguments])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}")
    assert list(tmp_path.iterdir()) == []


def test_a_report_written_again_keeps_what_its_first_run_cost():
    from regbench.design.verdict import cost_line

    first = cost_line(79.7, 78, None, 119.55, 2)
    assert first.startswith("Wall time here: 79.7 min for this command, 78 runs trained by it ")
    assert first.endswith("; their training 119.5 min summed over runs, overhead ratio 1.33 "
                          "(wall x 2 cores / training).")
    again = cost_line(0.5, 0, f"text\n\n{first}\n", 0.0, 2)
    assert again.startswith("Wall time here: 79.7 min for this command, 78 runs trained by it, "
                            "when this report was first written; its latest run: 0.5 min, 0 "
                            "runs trained")
    assert again.endswith("their training 0.0 min summed over runs.")
    # and on every later run
    assert cost_line(0.4, 0, again, 0.0, 2).startswith(again.split(";")[0])
