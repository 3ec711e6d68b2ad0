"""Calibrated strength grids: the formula, the refusal when a share does not grow, and the
command that puts a pinned preset's grids beside the calibrated ones."""

import itertools
import math

import pytest

from helpers import sqlite_uri
from regbench import record
from regbench.cli.main import dispatch
from regbench.design import calibrate, presets
from regbench.design.calibrate import Calibration, grid_from
from regbench.design.sweep import finished_runs
from regbench.errors import CalibrationError
from regbench.run.tracking import config_hash

SMALL = ("data=synthetic", "model=mlp_small", "trainer=smoke")


def test_a_linear_share_gives_a_grid_from_a_thousandth_to_ten():
    grid = grid_from("l2", (1e-4, 1e-3), (0.02, 0.2))  # share = 200 * weight
    assert len(grid) == calibrate.GRID_POINTS
    assert grid[0] == pytest.approx(1e-3 / 200) and grid[-1] == pytest.approx(10 / 200)
    ratios = [b / a for a, b in itertools.pairwise(grid)]
    assert all(r == pytest.approx(10 ** 0.8, rel=0.05) for r in ratios)  # log-spaced, 2 digits


def test_a_share_that_grows_as_the_square_is_interpolated_in_log_log():
    grid = grid_from("mine", (1.0, 10.0), (1e-2, 1.0))  # share = 0.01 * weight^2
    shares = [1e-2 * w ** 2 for w in grid]  # off by the rounding to two digits, squared
    assert shares[0] == pytest.approx(1e-3, rel=0.05) and shares[-1] == pytest.approx(10,
                                                                                    rel=0.05)
    c = Calibration("mine", "p", (1.0, 10.0), (1e-2, 1.0), 300, 1.0, grid)
    assert c.exponent == pytest.approx(2) and not c.linear


@pytest.mark.parametrize("shares", [(0.0, 0.0), (0.5, 0.5), (0.5, 0.1)])
def test_a_share_that_does_not_grow_cannot_be_calibrated(shares):
    with pytest.raises(CalibrationError, match=r"^regularizer=mine: its gradient share does "
                       r"not grow with its strength .*pin one$"):
        grid_from("mine", (1.0, 10.0), shares)


def test_the_command_probes_every_builtin_and_shows_a_pinned_grid_beside(tmp_path,
                                                                        monkeypatch, capfd):
    """On synthetic data (probes of a few steps): one probe per built-in, logged in the
    path's experiment (named after the data and model it ran: not the preset's own) and left
    out of its path's runs, the preset's pinned grid beside the calibrated one."""
    import mlflow

    monkeypatch.setattr(calibrate, "PROBE_STEPS", 30)

    uri = sqlite_uri(tmp_path)
    assert dispatch(["calibrate", "path_mnist_small", "--tracking-uri", uri, "--out",
                     str(tmp_path), *SMALL]) == 0
    text = (tmp_path / "calibration.md").read_text()
    for option, grid in presets.PINNED_GRIDS["path_mnist_small"].items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {option} | "
                                                                            f"{grid[0]:g} ("))
        assert row.count("(") >= 2 * len(grid)
    mlflow.set_tracking_uri(uri)
    experiment = presets.experiment_name("path_mnist_small", SMALL)  # not the preset's data
    probes = mlflow.search_runs(experiment_names=[experiment])
    assert sorted(probes[f"tags.{record.TAG_CALIBRATION}"]) == sorted(
        presets.PINNED_GRIDS["path_mnist_small"])
    capfd.readouterr()
    found = calibrate.in_experiment(experiment)
    assert capfd.readouterr().err == ""  # read from disk: no MLflow progress bar per probe
    assert [c.option for c in found] == sorted(presets.PINNED_GRIDS["path_mnist_small"])
    assert all(math.isclose(c.exponent, 1, abs_tol=calibrate.LINEAR) for c in found)
    # a probe is not a run of the config it probes: the path's job of that config (l2 at its
    # default strength, seed 0) trains, also beside a probe that carries its hash as one did
    probed = config_hash(presets.probe_config("path_mnist_small", "l2", SMALL))
    probe = probes[probes[f"tags.{record.TAG_CALIBRATION}"] == "l2"].iloc[0]
    assert probe[f"tags.{record.TAG_PROBE_HASH}"] == probed
    assert f"tags.{record.TAG_CONFIG_HASH}" not in probes
    mlflow.MlflowClient().set_tag(probe["run_id"], record.TAG_CONFIG_HASH, probed)
    assert finished_runs(probe["experiment_id"], probed) == []
