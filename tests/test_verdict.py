"""``regbench.verdict``: a regularizer of the user's, from its file to a verdict report, end to
end on synthetic data (calibrate, path, selection, fresh seeds in rounds, report), resumed."""

import mlflow
import pytest

from helpers import PROJECT_ROOT, sqlite_uri
from regbench import calibrate, path, query, record, verdict

EXAMPLE = PROJECT_ROOT / "examples" / "soft_orthogonal.py"
# each multirun's jobs in its own process, one after another (no worker processes to start)
SMALL = ["data=synthetic", "trainer=smoke", "model=mlp_small", "hydra/launcher=basic"]


def test_a_users_regularizer_from_its_file_to_a_verdict(plugin, tmp_path, monkeypatch, capsys):
    """Its runs resume as every multirun's do (tests/test_sweep.py); its calibration is found
    in the experiment, not probed again."""
    plugin(EXAMPLE)  # REGBENCH_PLUGINS: the multiruns the command starts inherit it
    monkeypatch.chdir(tmp_path)  # Hydra's multirun folders
    monkeypatch.setattr(calibrate, "GRID_POINTS", 2)
    monkeypatch.setattr(calibrate, "PROBE_STEPS", 30)
    monkeypatch.setattr(path, "SELECTION_SEEDS", (0, 1))
    uri = sqlite_uri(tmp_path)
    arguments = ["soft_orthogonal", "--preset", "path_mnist", "--first", "2", "--step", "1",
                 "--max-seeds", "2", "--tracking-uri", uri, "--out", str(tmp_path / "v"),
                 *SMALL]
    assert verdict.main(arguments) == 0
    sentence = capsys.readouterr().out.strip().splitlines()[-1]
    assert sentence.startswith("**soft_orthogonal** at the strength chosen on validation "
                               "(soft_orthogonal-")
    assert "against none: " in sentence and "; against l2-" in sentence
    text = (tmp_path / "v" / "verdict.md").read_text()
    assert text.startswith("Written by `python -m regbench.verdict soft_orthogonal --preset ")
    assert sentence in text and "## Calibration" in text and "| soft_orthogonal | 0.0001, " \
        "0.001 |" in text and "| l2 | 0.0001, 0.001 |" in text
    assert {"sequential.md", "comparison.md", "verdict.md"} <= {
        p.name for p in (tmp_path / "v").iterdir()}

    mlflow.set_tracking_uri(uri)
    probes = mlflow.search_runs(experiment_names=["path_mnist"],
                                filter_string=f"tags.{record.TAG_CALIBRATION} != ''")
    assert sorted(probes[f"tags.{record.TAG_CALIBRATION}"]) == ["l2", "soft_orthogonal"]
    grid = calibrate.in_experiment("path_mnist")[1].grid
    trained = query.fetch_runs("path_mnist", None).runs
    assert sorted(trained[trained["arm"].str.startswith("soft_orthogonal")]["arm"].unique()) \
        == sorted(f"soft_orthogonal-{w:g}" for w in grid)
    fresh = query.fetch_runs("path_mnist-tuned", None).runs
    assert sorted(fresh["seed"].unique()) == [100, 101]
    assert {arm.split("-")[0] for arm in fresh["arm"]} == {"none", "l2", "soft_orthogonal"}

    def probe_again(*_):
        raise AssertionError("probed again")

    monkeypatch.setattr(calibrate, "probe", probe_again)  # found in the experiment instead
    assert path.grids("path_mnist", ["soft_orthogonal"], tuple(SMALL), uri)[0] == {
        "soft_orthogonal": grid}


@pytest.mark.parametrize("arguments, message", [
    (["mine"], "regularizer.name=mine: allowed are custom"),
    (["none"], "none: the verdict compares an option with none and l2"),
    (["l1", "--preset", "l2_vs_custom"], "--preset l2_vs_custom: not a path preset"),
])
def test_a_verdict_refuses_bad_input_in_one_line(arguments, message, capsys, tmp_path,
                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        verdict.main(arguments)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}")
    assert list(tmp_path.iterdir()) == []
