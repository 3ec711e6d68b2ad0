"""A regularizer's strength grid calibrated on a preset's model and data, not guessed.

The probe (``probe``): the preset's model is trained ``PROBE_STEPS`` steps without a penalty,
or the trainer's epochs if they are fewer (``probe_epochs``: a probe trained longer than the
runs measures weights they never reach; seed 0, the preset's optimizer, data and split); at
those weights the option's penalty is attached at two strengths, w1 (its default) and w2 = 10
w1, and its gradient share is measured as every run logs it (``models.penalty_shares``: ||d
penalty / dW|| / ||d data loss / dW|| over the regularized kernels, on
``training.SHARE_EXAMPLES`` training examples). A penalty linear in its strength (weight *
f(W)) has a share exactly proportional to it, so the two shares give the exponent b of share =
s1 (w / w1)^b; the probe says when b is not 1 (within ``LINEAR``) and interpolates in log-log
either way. The grid is ``GRID_POINTS`` log-spaced strengths from a gradient share of
``SHARE_RANGE[0]`` (the penalty barely pulls) to ``SHARE_RANGE[1]`` (it dominates the data's
gradient), each rounded to two significant digits:

    w(t) = w1 (t / s1)^(1 / b),  t = 10^linspace(log10 1e-3, log10 10, 6)

The weights are those of a network that has not felt the penalty: a heavy penalty trains to
other weights, so the share a run logs at its end can differ; the grid only needs to span the
range where the penalty goes from negligible to dominant. A share that does not grow with the
strength (b <= ``MIN_EXPONENT``) cannot be calibrated: ``CalibrationError``.

``recorded(...)`` runs the probe once per config (preset and option): it is logged as a run of the
path's experiment (tag ``calibration``: the option; params: probe strengths; metrics: shares,
exponent, seconds; the grid as an artifact), and found there again instead of probed anew.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from regbench import record
from regbench.errors import CalibrationError

if TYPE_CHECKING:
    import pandas

PROBE_STEPS = 300
PROBE_FACTOR = 10.0  # w2 = PROBE_FACTOR * w1
SHARE_RANGE = (1e-3, 10.0)
GRID_POINTS = 6
LINEAR = 0.1  # |b - 1| within this: the share scales with the strength
MIN_EXPONENT = 0.05
GRID_ARTIFACT = "calibration.json"


@dataclass(frozen=True)
class Calibration:
    """What the probe measured and the grid it chose for one option on one preset."""

    option: str
    preset: str
    weights: tuple[float, float]
    shares: tuple[float, float]
    steps: int
    seconds: float
    grid: tuple[float, ...]

    @property
    def exponent(self) -> float:
        """b in share = s1 (w / w1)^b, from the two probe points."""
        return math.log(self.shares[1] / self.shares[0]) / math.log(
            self.weights[1] / self.weights[0])

    @property
    def linear(self) -> bool:
        return abs(self.exponent - 1) <= LINEAR

    def share_at(self, weight: float) -> float:
        """The probe's share at ``weight`` (log-log through the two points)."""
        return self.shares[0] * (weight / self.weights[0]) ** self.exponent


def grid_from(option: str, weights: tuple[float, float], shares: tuple[float, float]
              ) -> tuple[float, ...]:
    """The calibrated grid (module docstring); CalibrationError when the share does not grow."""
    (w1, w2), (s1, s2) = weights, shares
    exponent = math.log(s2 / s1) / math.log(w2 / w1) if s1 > 0 and s2 > 0 else 0.0
    if not exponent > MIN_EXPONENT:
        raise CalibrationError(
            f"regularizer={option}: its gradient share does not grow with its strength "
            f"({s1:.3g} at {w1:g}, {s2:.3g} at {w2:g}), so no grid can be calibrated; pin one")
    low, high = (math.log10(t) for t in SHARE_RANGE)
    targets = [10 ** (low + (high - low) * i / (GRID_POINTS - 1)) for i in range(GRID_POINTS)]
    return tuple(float(f"{w1 * (t / s1) ** (1 / exponent):.2g}") for t in targets)


def probe(cfg, preset: str, extra_weights: tuple[float, ...] = ()
          ) -> tuple[Calibration, dict[float, float]]:
    """Probe ``cfg.regularizer`` on ``cfg`` (preset ``preset``'s model and data; module
    docstring). Returns the calibration and the measured share at each of ``extra_weights``
    (a pinned grid, say)."""
    from omegaconf import OmegaConf

    from regbench.config import registry
    from regbench.run import data
    from regbench.run.models import build_mlp, compile_classifier, penalty_shares
    from regbench.run.training import SHARE_EXAMPLES, configure_tensorflow

    option = registry.get(str(cfg.regularizer.name))
    if option.target is None:
        raise CalibrationError(f"regularizer={option.name}: it has no penalty to calibrate")
    started = time.perf_counter()
    splits = data.load(cfg.data, split_seed=cfg.data.split_seed)
    configure_tensorflow(cfg.seed, cfg.trainer.deterministic, cfg.trainer.threads)
    plain = compile_classifier(build_mlp(cfg.model, lambda: None), cfg.trainer)
    batches = math.ceil(len(splits.x_train) / cfg.trainer.batch_size)
    epochs = probe_epochs(cfg.trainer.epochs, batches)
    plain.fit(splits.x_train, splits.y_train, batch_size=cfg.trainer.batch_size,
              epochs=epochs, verbose=0)
    x, y = splits.x_train[:SHARE_EXAMPLES], splits.y_train[:SHARE_EXAMPLES]

    def share(weight: float) -> float:
        node = OmegaConf.merge(cfg.regularizer, {"weight": weight})
        model = build_mlp(cfg.model, lambda: registry.build(node), acts_on=option.acts_on)
        model.set_weights(plain.get_weights())
        return penalty_shares(model, x, y)[1]

    w1 = option.weight or 1e-4
    weights = (w1, PROBE_FACTOR * w1)
    shares = (share(weights[0]), share(weights[1]))
    grid = grid_from(option.name, weights, shares)
    extra = {weight: share(weight) for weight in extra_weights}
    return Calibration(option.name, preset, weights, shares, epochs * batches,
                       time.perf_counter() - started, grid), extra


def probe_epochs(trainer_epochs: int, batches: int) -> int:
    """The probe's epochs: about PROBE_STEPS steps of ``batches`` per epoch, at least one, and
    never more than the trainer's ``trainer_epochs``."""
    return min(trainer_epochs, max(1, round(PROBE_STEPS / batches)))


def log(calibration: Calibration, experiment_id: str, config_hash: str,
        code_tags: dict[str, str]) -> str:
    """Record ``calibration`` as a run of the path's experiment, with the code identity of the
    probe (``code_tags``, ``identity.CodeIdentity.tags``); return its id."""
    import mlflow

    from regbench.run.tracking import git_commit

    tags = {record.TAG_CALIBRATION: calibration.option, record.TAG_PROBE_HASH: config_hash,
            record.TAG_GIT_COMMIT: git_commit(), **code_tags}
    with mlflow.start_run(experiment_id=experiment_id, tags=tags,
                          run_name=f"calibrate-{calibration.option}") as run:
        mlflow.log_params({"probe_weight_1": calibration.weights[0],
                           "probe_weight_2": calibration.weights[1],
                           "probe_steps": calibration.steps, "preset": calibration.preset})
        mlflow.log_metrics({"probe_share_1": calibration.shares[0],
                            "probe_share_2": calibration.shares[1],
                            "exponent": calibration.exponent,
                            "probe_seconds": calibration.seconds})
        mlflow.log_dict(asdict(calibration), GRID_ARTIFACT)
    return run.info.run_id


def _finished(experiment_id: str, where: str) -> pandas.DataFrame:
    """The FINISHED calibration runs of the experiment that match the filter ``where``, newest
    first."""
    import mlflow

    return mlflow.search_runs(
        [experiment_id], order_by=["attributes.start_time DESC"],
        filter_string=f"{where} and attributes.status = '{record.FINISHED}'")


def find(experiment_id: str, option: str, config_hash: str,
         code_identity: str | None) -> Calibration | None:
    """The newest FINISHED calibration of ``option`` with this probe config, if recorded, and
    of the code identity ``code_identity`` (None: of any code)."""
    code = (f" and tags.{record.TAG_CODE_IDENTITY} = '{code_identity}'" if code_identity
            else "")
    found = _finished(experiment_id, f"tags.{record.TAG_CALIBRATION} = '{option}' and "
                                     f"tags.{record.TAG_PROBE_HASH} = '{config_hash}'{code}")
    return None if found.empty else _stored(found["artifact_uri"][0])


def in_experiment(experiment: str) -> list[Calibration]:
    """The newest calibration of each option recorded in ``experiment``, by option."""
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    runs = _finished(found.experiment_id, f"tags.{record.TAG_CALIBRATION} != ''") if found else None
    if runs is None or runs.empty:
        return []
    newest = runs.drop_duplicates(f"tags.{record.TAG_CALIBRATION}")
    return sorted((_stored(uri) for uri in newest["artifact_uri"]), key=lambda c: c.option)


def _stored(artifact_uri: str) -> Calibration:
    from regbench.analysis.query import load_json

    stored = load_json(f"{artifact_uri}/{GRID_ARTIFACT}")
    return Calibration(**{key: tuple(value) if isinstance(value, list) else value
                          for key, value in stored.items()})


def recorded(cfg, preset: str, experiment_id: str) -> Calibration:
    """The calibration of ``cfg.regularizer`` on ``cfg`` (preset ``preset``): found in the
    experiment, of today's code identity (of any with ``cfg.reuse_stale``), else probed and
    logged there."""
    from regbench.run import identity
    from regbench.run.tracking import config_hash

    key, code = config_hash(cfg), identity.of_config(cfg)
    found = find(experiment_id, str(cfg.regularizer.name), key,
                 None if cfg.reuse_stale else code.identity)
    if found is not None:
        return found
    calibration, _ = probe(cfg, preset)
    log(calibration, experiment_id, key, code.tags())
    return calibration


def markdown(calibrations: list[Calibration]) -> str:
    """The calibration table of a report: per option its probe and its grid."""
    lines = [f"Strength grids calibrated by a probe ({PROBE_STEPS} steps without the penalty, "
             "or the trainer's epochs if fewer, "
             "then the gradient share at two strengths; grid from a share of "
             f"{SHARE_RANGE[0]:g} to {SHARE_RANGE[1]:g}, regbench.design.calibrate):", "",
             "| regularizer | probe strengths | gradient shares | share ~ strength^b | "
             "probe seconds | grid |", "|---|---|---|---|---|---|"]
    for c in calibrations:
        b = f"b = {c.exponent:.2f}" + ("" if c.linear else " (not linear)")
        lines.append(f"| {c.option} | {c.weights[0]:g}, {c.weights[1]:g} | "
                     f"{c.shares[0]:.3g}, {c.shares[1]:.3g} | {b} | {c.seconds:.0f} | "
                     f"{', '.join(f'{w:g}' for w in c.grid)} |")
    return "\n".join(lines) + "\n"


def pinned_markdown(calibrations: list[Calibration], pinned: dict[str, tuple[float, ...]],
                    shares: dict[str, dict[float, float]], no_ops: dict[str, set[float]]) -> str:
    """A pinned preset's grids beside the calibrated ones: per option, the pinned points with
    the probe's share at each, those whose path runs were identical to none (``no_ops``: the
    trained points agreeing with none to round-off on every seed), and how many calibrated
    points fall at or below the largest share of those no-ops (a prediction from the probe)."""
    lines = ["| regularizer | pinned grid (probe's gradient share) | identical to none | "
             "calibrated grid (share) | calibrated points at or below a no-op's share |",
             "|---|---|---|---|---|"]
    for c in calibrations:
        grid = pinned.get(c.option, ())
        points = ", ".join(f"{w:g} ({shares[c.option][w]:.2g})" for w in grid)
        idle = sorted(no_ops.get(c.option, ()))
        ceiling = max((shares[c.option][w] for w in idle), default=None)
        predicted = "–" if ceiling is None else str(sum(c.share_at(w) <= ceiling
                                                        for w in c.grid))
        lines.append(f"| {c.option} | {points} | {len(idle)} of {len(grid)}"
                     f"{': ' + ', '.join(f'{w:g}' for w in idle) if idle else ''} | "
                     f"{', '.join(f'{w:g} ({c.share_at(w):.2g})' for w in c.grid)} | "
                     f"{predicted} |")
    return "\n".join(lines) + "\n"
