"""Strength paths: every regularizer over a log grid of strengths, chosen on validation.

``regbench path run PRESET [--regularizers a,b]`` trains, for each regularizer (default
every built-in with a penalty), one multirun of its grid x the selection seeds (plus the
``none`` arm) into the experiment named PRESET; finished jobs are skipped, so an interrupted path
resumes. Its grid is calibrated on the preset (``calibrate``, the probe logged in the
experiment), unless the preset pins one (``PINNED_GRIDS``); a grid that does not bracket its
answer is then extended (``extensions``, ``train_bracketed``). ``report`` reads the experiment
and, per regularizer, selects a strength on the validation metrics of the selection seeds only:

* best:   the strength with the highest mean (over seeds) validation accuracy of the weights
          each run is judged on (``judged_values``: its best epoch's, as a rule);
* 1-SE:   the strongest strength whose mean is within one standard error (sd / sqrt(n), of
          the best strength's seeds) of the best, as glmnet's ``lambda.1se``.

``tuned`` trains each regularizer at its selected strength, and ``none``, on fresh seeds that took
no part in the selection, into ``PRESET-tuned``, and compares them with ``none`` (paired by seed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from regbench import record
from regbench.analysis import query, stats
from regbench.analysis.comparison import TESTED, by_seed, identical
from regbench.analysis.stats import mean_interval
from regbench.design import calibrate, pool, sweep
from regbench.design.presets import (
    CONTROL,
    PINNED_GRIDS,
    SELECTED_ON,
    SELECTION_SEEDS,
    TUNED_SEED_START,
    probe_config,
)
from regbench.errors import CompareError
from regbench.locations import ReportFiles
from regbench.run import store

PATH_REPORT_FILES = ("path.md", "path.png")


def grids(preset: str, options: list[str], extra: tuple[str, ...], tracking_uri: str | None,
          experiment: str) -> tuple[dict[str, tuple[float, ...]], list]:
    """Each option's grid on ``preset`` under ``extra``: pinned (when ``experiment``, as
    ``presets.experiment_name`` gives it, is the preset itself), else calibrated (found or
    probed and logged in ``experiment``). Returns the grids and the calibrations used."""
    pinned = PINNED_GRIDS.get(experiment, {})
    configs = {option: probe_config(preset, option, extra)
               for option in options if option not in pinned}
    calibrated = {}
    if configs:
        uri = tracking_uri or next(iter(configs.values())).mlflow.tracking_uri
        experiment_id = store.use_store(uri, experiment)
        calibrated = {option: calibrate.recorded(cfg, preset, experiment_id)
                      for option, cfg in configs.items()}
    return ({option: pinned[option] if option in pinned else calibrated[option].grid
             for option in options}, list(calibrated.values()))


def train_commands(preset: str, grids: dict[str, tuple[float, ...]], seeds: tuple[int, ...],
                   experiment: str, extra: tuple[str, ...] = (),
                   regularizers: frozenset[str] | None = None) -> list[list[str]]:
    """One ``regbench train`` multirun per regularizer (its grid x seeds) and one for none; of
    those named in ``regularizers`` only, when given."""
    base = sweep.train_command("-m", f"experiment={preset}", f"mlflow.experiment_name={experiment}",
                               f"seed={','.join(map(str, seeds))}", *extra)
    jobs = {**{option: [f"regularizer={option}",
                        f"regularizer.weight={','.join(f'{w:g}' for w in grid)}"]
               for option, grid in grids.items()},
            CONTROL: [f"regularizer={CONTROL}"]}
    return [[*base, *arguments] for option, arguments in jobs.items()
            if regularizers is None or option in regularizers]


def train_path(preset: str, grids: dict[str, tuple[float, ...]], extra: tuple[str, ...],
               experiment: str) -> int:
    """Train the path: ``train_commands`` on the selection seeds into ``experiment``, those
    on the command's pool of workers (``pool.run_commands``, which skips finished jobs): its
    exit code."""
    return pool.run_commands(train_commands(preset, grids, SELECTION_SEEDS, experiment, extra),
                             f"path of {experiment}")


def train_bracketed(preset: str, grids: dict[str, tuple[float, ...]], extra: tuple[str, ...],
                    experiment: str, tracking_uri: str | None = None, reuse_stale: bool = False
                    ) -> tuple[int, PathStudy | None]:
    """Train the path (``train_path``), then, while ``extensions`` of the grids as planned
    asks for strengths beyond an edge, train those too (a round of added points at a time,
    each announced on stderr): (the largest exit code, the path as read after its last round,
    ``read_path``; None when interrupted)."""
    import sys

    from regbench import processes

    trained, code = dict(grids), 0
    while True:
        code = max(code, train_path(preset, trained, extra, experiment))
        if code == processes.EXIT_INTERRUPTED:
            return code, None
        store.connect(tracking_uri, create=False)
        study = read_path(experiment, reuse_stale)
        added = extensions(study, grids, trained)
        if not added:
            return code, study
        for name, points in added.items():
            for strength, why in points:
                print(f"path of {experiment}: {name} extended to {strength:g}: {why}",
                      file=sys.stderr)
            trained[name] = tuple(sorted({*trained[name], *(w for w, _ in points)}))


EXTENSION_POINTS = 2  # strengths a path may add beyond each edge of its planned grid


def extensions(study: PathStudy, planned: dict[str, tuple[float, ...]],
               trained: dict[str, tuple[float, ...]]) -> dict[str, list[tuple[float, str]]]:
    """Per regularizer whose path does not bracket its answer, the strengths to add and why
    (chosen on the selection seeds' validation runs only; at most one per edge a round): one
    grid step (the ratio of the two outermost points) below the weakest point when that point
    is not a no-op (``no_op``: a weaker strength may be better), and above the strongest when
    the best is there; at most EXTENSION_POINTS beyond each edge of ``planned``, none for a
    one-point grid or a grid with a point that has no finished runs."""
    added: dict[str, list[tuple[float, str]]] = {}
    for name, grid in trained.items():
        grid = tuple(sorted(grid))
        points = {p.strength: p for p in study.points.get(name, [])}
        if len(grid) < 2 or not all(w in points for w in grid):
            continue
        low, high = min(planned[name]), max(planned[name])
        best = max((points[w] for w in grid), key=lambda p: p.mean)
        if sum(w < low for w in grid) < EXTENSION_POINTS and not no_op(study, name,
                                                                       points[grid[0]]):
            added.setdefault(name, []).append((
                _rounded(grid[0] ** 2 / grid[1]),
                f"its weakest point {grid[0]:g} pulls with "
                f"{points[grid[0]].gradient_share:.2g} of the data's gradient, not a no-op"))
        if best.strength == grid[-1] and sum(w > high for w in grid) < EXTENSION_POINTS:
            added.setdefault(name, []).append((
                _rounded(grid[-1] ** 2 / grid[-2]),
                f"its best strength is its strongest, {grid[-1]:g}"))
    return added


def _rounded(strength: float) -> float:
    """Two significant digits, as calibrated grids are."""
    return float(f"{strength:.2g}")


DIVERGED = 2.0  # a seed below twice chance accuracy on validation has failed to train
CLASSES_PARAM = "params.model.num_classes"


@dataclass(frozen=True)
class PathPoint:
    """One strength of one regularizer: per selection seed, its judged validation accuracy
    (``judged_values``) and test data loss; the mean shares of the penalty at the end of
    training; ``chance``: the accuracy of guessing (1 / classes)."""

    strength: float
    seeds: tuple[int, ...]
    val_accuracy: np.ndarray
    test_data_loss: np.ndarray
    loss_share: float
    gradient_share: float
    chance: float = np.nan  # unknown: no seed is called failed

    @property
    def diverged(self) -> tuple[int, ...]:
        """The seeds whose validation accuracy is below DIVERGED x chance: training failed
        (a diverged or collapsed run), which a mean over seeds would hide."""
        if np.isnan(self.chance):
            return ()
        return tuple(seed for seed, value in zip(self.seeds, self.val_accuracy, strict=True)
                     if not value >= DIVERGED * self.chance)

    @property
    def mean(self) -> float:
        return float(np.mean(self.val_accuracy))

    @property
    def standard_error(self) -> float:
        """sd / sqrt(n) of the validation accuracies; NaN with one seed."""
        return float(scipy_stats.sem(self.val_accuracy)) if len(self.val_accuracy) > 1 else np.nan


@dataclass(frozen=True)
class Selection:
    regularizer: str
    best: PathPoint
    one_se: PathPoint

    def chosen(self, rule: str) -> PathPoint:
        return self.best if rule == "best" else self.one_se


def select(regularizer: str, points: list[PathPoint]) -> Selection:
    """The best strength (highest mean validation accuracy) and the 1-SE strength (the
    strongest within one standard error of the best); never looks at test metrics."""
    best = max(points, key=lambda p: p.mean)
    margin = 0.0 if np.isnan(best.standard_error) else best.standard_error
    within = [p for p in points if p.mean >= best.mean - margin]
    return Selection(regularizer, best, max(within, key=lambda p: p.strength))


def strengths(runs: pd.DataFrame) -> pd.Series:
    """Each run's ``regularizer.weight`` (0 for ``none``, which has none)."""
    return pd.to_numeric(runs.get("params.regularizer.weight"), errors="coerce").fillna(0.0)


def path_points(runs: pd.DataFrame, best_val: dict[str, float]) -> dict[str, list[PathPoint]]:
    """Group the runs of a path by regularizer and strength (``none`` has one point at 0);
    raises CompareError if one point would pool runs of different configs."""
    runs = runs.assign(best_val=runs["run_id"].map(best_val), strength=strengths(runs))
    points: dict[str, list[PathPoint]] = {}
    for (name, strength), group in runs.groupby([f"tags.{record.TAG_REGULARIZER}", "strength"]):
        if group["arm"].nunique() > 1:
            raise CompareError(f"{name} at {strength:g} holds runs of more than one "
                                     f"config: {'; '.join(sorted(group['arm'].unique()))}")
        group = group.sort_values("seed")
        points.setdefault(name, []).append(PathPoint(
            float(strength), tuple(int(s) for s in group["seed"]),
            group["best_val"].to_numpy(float),
            group[f"metrics.{record.TEST_DATA_LOSS}"].to_numpy(float),
            float(group[f"metrics.{record.PENALTY_LOSS_SHARE}"].mean()),
            float(group[f"metrics.{record.PENALTY_GRADIENT_SHARE}"].mean()),
            1 / float(group[CLASSES_PARAM].iloc[0]) if CLASSES_PARAM in group else np.nan))
    return {name: sorted(p, key=lambda p: p.strength) for name, p in points.items()}


def markdown(points: dict[str, list[PathPoint]], selections: list[Selection],
             planned: dict[str, tuple[float, ...]] | None = None,
             calibrations: list | None = None) -> str:
    """The selections, then every point: its validation accuracy, test data loss and realised
    shares of the penalty; with ``calibrations``, the share the probe predicted (the grid's
    target) beside the realised one, and the realised span against the target span; a point
    not in ``planned`` (a regularizer's grid as pinned or calibrated) is marked as added by
    ``extensions``."""
    planned, probes = planned or {}, {c.option: c for c in calibrations or []}
    lines = ["Selected strengths (on the selection seeds' validation accuracy only, at the "
             "weights each run was judged on):",
             "", "| regularizer | best | val accuracy | 1-SE rule | val accuracy | seeds |",
             "|---|---|---|---|---|---|"]
    for s in selections:
        lines.append(f"| {s.regularizer} | {s.best.strength:g} | {s.best.mean:.4f} | "
                     f"{s.one_se.strength:g} | {s.one_se.mean:.4f} | "
                     f"{' '.join(map(str, s.best.seeds))} |")
    for s in selections:
        strengths = [p.strength for p in points[s.regularizer]]
        # a weakest point that is a no-op has only none beyond it
        weak_edge_idle = s.best.strength == min(strengths) and (
            s.best.gradient_share < NO_OP_SHARE)
        if s.best.strength in (min(strengths), max(strengths)) and not weak_edge_idle:
            lines.append(f"- warning: {s.regularizer}'s best strength {s.best.strength:g} is at "
                         "the edge of its grid: the best may lie beyond it")
    for name in probes:
        shares = [p.gradient_share for p in points.get(name, [])]
        if shares:
            lines.append(f"- {name}: gradient shares at the end of training {min(shares):.2g} "
                         f"to {max(shares):.2g}, where the calibrated grid aimed at "
                         f"{calibrate.SHARE_RANGE[0]:g} to {calibrate.SHARE_RANGE[1]:g}")
    lines += ["", "| regularizer | strength | seeds | val accuracy [95% CI] | test data loss | "
              "penalty share of loss | of gradient | of gradient, probe (target) |",
              "|---|---|---|---|---|---|---|---|"]
    failed, any_added = [], False
    for name, path in points.items():
        for p in path:
            low, high = np.clip(mean_interval(p.val_accuracy), 0.0, 1.0)  # an accuracy's range
            interval = "" if np.isnan(low) else f" [{low:.4f}, {high:.4f}]"
            added = name in planned and p.strength not in planned[name]
            any_added |= added
            target = f"{probes[name].share_at(p.strength):.3g}" if name in probes else "–"
            lines.append(f"| {name} | {p.strength:g}{' (added)' if added else ''} | "
                         f"{len(p.seeds)} | {p.mean:.4f}{interval} | "
                         f"{np.mean(p.test_data_loss):.4f} | {p.loss_share:.3g} | "
                         f"{p.gradient_share:.3g} | {target} |")
            if p.diverged:
                failed.append(f"{name} at {p.strength:g}: seed{'s' * (len(p.diverged) > 1)} "
                              f"{', '.join(map(str, p.diverged))}")
    if any_added:
        lines += ["", f"(added): beyond the planned grid, where the path did not bracket its "
                  f"answer (a weakest point that is not a no-op, or the best at the strongest; "
                  f"at most {EXTENSION_POINTS} a side, regbench.design.path.extensions)."]
    if failed:
        lines += ["", f"Failed to train (validation accuracy below {DIVERGED:g}x chance; "
                  "their point's mean and interval include them): " + "; ".join(failed) + "."]
    return "\n".join(lines) + "\n"


def selection_markdown(selections: list[Selection], rule: str) -> str:
    """What the tuned comparison trains: per regularizer the strength ``rule`` chose and the
    seeds it was chosen on (the tuned runs use fresh seeds from TUNED_SEED_START, which took
    no part)."""
    lines = [f"Strengths chosen by the {rule} rule on validation, trained again on fresh seeds "
             f"from {TUNED_SEED_START} in rounds until decided (sequential.md):", "",
             "| regularizer | strength | chosen on seeds | mean val accuracy there |",
             "|---|---|---|---|"]
    for s in selections:
        point = s.chosen(rule)
        lines.append(f"| {s.regularizer} | {point.strength:g} | "
                     f"{' '.join(map(str, point.seeds))} | {point.mean:.4f} |")
    return "\n".join(lines) + "\n"


def plot(points: dict[str, list[PathPoint]], selections: list[Selection], path: Path) -> Path:
    """Per regularizer: validation accuracy and test data loss against strength (95% bands
    over seeds, ``none`` as a horizontal band, selections marked), and the penalty's shares."""
    from regbench.analysis.plots import plot_strength_paths

    return plot_strength_paths(points, {s.regularizer: s for s in selections}, CONTROL, path)


@dataclass(frozen=True)
class PathStudy:
    """What a path experiment holds: its runs, its points per regularizer, each selection, the
    calibration probes of its grids."""

    runs: pd.DataFrame
    points: dict[str, list[PathPoint]]
    selections: list[Selection]
    calibrations: list  # calibrate.Calibration of each option whose grid was calibrated
    code_notes: list[str]  # query.keep_todays_code's notes on its runs
    planned: dict[str, tuple[float, ...]] = field(default_factory=dict)  # pinned or calibrated


def chosen_strengths(study: PathStudy, names: list[str], rule: str, experiment: str,
                     every: bool = True) -> dict[str, tuple[float]]:
    """Each of ``names``' strength chosen by ``rule`` on the path, as a one-point grid. A name
    without finished path runs raises CompareError when ``every`` (it was asked for by name),
    else is left out; none of the names on the path raises too."""
    chosen = {s.regularizer: (s.chosen(rule).strength,) for s in study.selections
              if s.regularizer in names}
    missing = [name for name in names if name not in chosen]
    if not chosen or (every and missing):
        raise CompareError(f"the path of {experiment} has no finished runs of "
                                 f"{', '.join(missing)} to choose a strength from")
    return chosen


def planned_seeds(study: PathStudy, chosen: dict[str, tuple[float, ...]],
                  margins: dict[str, float], family: int, budget: int) -> list[str]:
    """Before fresh seeds are trained: per chosen strength and TESTED metric, the seeds per arm
    a comparison with ``none`` is likely to need (``stats.seeds_needed``: a fixed-sample paired
    t-test at alpha / ``family`` detecting a difference of the margin with 80% power, the sd
    of the paired differences on the selection seeds taken as true; sequential looks need a
    few more), and whether that is beyond ``budget``. Read from the selection seeds only."""
    runs = study.runs.assign(strength=strengths(study.runs))
    tag = f"tags.{record.TAG_REGULARIZER}"
    control = runs[runs[tag] == CONTROL]
    lines = []
    for name, grid in chosen.items():
        arm = runs[(runs[tag] == name) & np.isclose(runs["strength"], grid[0])]
        for metric in TESTED:
            a, r = by_seed(arm, metric), by_seed(control, metric)
            shared = stats.shared_seeds(a, r)
            if len(shared) < 2:
                continue
            needed = stats.seeds_needed(np.array([a[s] for s in shared]),
                                        np.array([r[s] for s in shared]), True,
                                        margins[metric], family=family)
            beyond = needed is None or needed > budget
            lines.append(f"- {name} at {grid[0]:g}, {metric}: about "
                         f"{needed or f'more than {stats.MAX_SEEDS_NEEDED}'} seeds per arm "
                         f"(from {len(shared)} selection seeds)"
                         + (f": likely undecided within the budget of {budget}" if beyond
                            else ""))
    return ["Seeds the comparisons are likely to need, estimated before training from the "
            "spread on the selection seeds (a fixed-sample paired t-test detecting a "
            "difference of the margin with 80% power):", "", *lines] if lines else []


NO_OP_SHARE = 0.01  # a gradient share below this (the penalty's pull under 1% of the data's)


def no_op(study: PathStudy, name: str, point: PathPoint) -> str | None:
    """Why ``name`` at ``point`` is in effect no regularizer, or None: its runs agree with
    ``none``'s to round-off (``identical_to_control``), or its mean gradient share on the
    selection seeds is below NO_OP_SHARE."""
    if point.strength in identical_to_control(study).get(name, set()):
        return f"{name} at {point.strength:g} trains the same runs as {CONTROL}"
    if point.gradient_share < NO_OP_SHARE:
        return (f"{name} at {point.strength:g} pulls the weights with {point.gradient_share:.2g} "
                f"of the data's gradient on the selection seeds (below {NO_OP_SHARE:g}): in "
                f"effect {CONTROL}")
    return None


def no_op_reason(study: PathStudy, name: str, rule: str) -> str | None:
    """``no_op`` of ``name``'s strength chosen by ``rule``."""
    return no_op(study, name, next(s.chosen(rule) for s in study.selections
                                   if s.regularizer == name))


RESTORES_PARAM = "params.trainer.restore_best_weights"


def judged_values(runs: pd.DataFrame) -> dict[str, float]:
    """run id -> SELECTED_ON at the weights the run was evaluated with: its best epoch's (the
    weights EarlyStopping restores), or its last epoch's when it kept its last weights
    (``trainer.restore_best_weights=false``; runs that predate the key restored)."""
    values = query.best_values(list(runs["run_id"]), SELECTED_ON)
    if RESTORES_PARAM in runs:
        last = runs[runs[RESTORES_PARAM] == "False"]
        values.update(zip(last["run_id"], last[f"metrics.{SELECTED_ON}"], strict=True))
    return values


def read_path(experiment: str, reuse_stale: bool = False) -> PathStudy:
    """The path experiment's runs of today's code (of any with ``reuse_stale``:
    ``query.keep_todays_code``), its points per regularizer, and each regularizer's
    selection."""
    recorded, code_notes = query.keep_todays_code(query.fetch_runs(experiment, None).runs,
                                                  reuse_stale)
    points = path_points(recorded, judged_values(recorded))
    pinned = PINNED_GRIDS.get(experiment, {})
    calibrations = [c for c in calibrate.in_experiment(experiment) if c.option not in pinned]
    return PathStudy(recorded, points,
                     [select(name, path) for name, path in points.items() if name != CONTROL],
                     calibrations, code_notes,
                     {**{c.option: c.grid for c in calibrations}, **pinned})


def identical_to_control(study: PathStudy) -> dict[str, set[float]]:
    """Per regularizer, the strengths whose runs are identical to ``none``'s
    (``comparison.identical``, the one rule for it)."""
    runs = study.runs.assign(strength=strengths(study.runs))
    by_option = dict(tuple(runs.groupby(f"tags.{record.TAG_REGULARIZER}")))
    control = by_option.pop(CONTROL)
    return {name: {float(strength) for strength, point in group.groupby("strength")
                   if identical(point, control)} for name, group in by_option.items()}


def write_report(study: PathStudy, out: Path, header: str = "") -> list[Path]:
    """path.md (after ``header``) and path.png in ``out``, written whole or not at all
    (``locations.ReportFiles``); their paths."""
    probes = calibrate.markdown(study.calibrations) + "\n" if study.calibrations else ""
    with ReportFiles(out, PATH_REPORT_FILES) as stage:
        text, figure = PATH_REPORT_FILES
        stage(text).write_text(header + probes + markdown(study.points, study.selections,
                                                          study.planned, study.calibrations))
        plot(study.points, study.selections, stage(figure))
    return stage.written
