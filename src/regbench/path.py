"""Strength paths: every regularizer over a log grid of strengths, chosen on validation.

``python -m regbench.path run PRESET [--regularizers a,b]`` trains, for each regularizer (default
every built-in with a penalty), one multirun of its grid x the selection seeds (plus the
``none`` arm) into the experiment named PRESET; finished jobs are skipped, so an interrupted path
resumes. Its grid is calibrated on the preset (``regbench.calibrate``, the probe logged in the
experiment), unless the preset pins one (``PINNED_GRIDS``). ``report`` reads the experiment
and, per regularizer, selects a strength on the validation metrics of the selection seeds only:

* best:   the strength with the highest mean (over seeds) best-epoch validation accuracy;
* 1-SE:   the strongest strength whose mean is within one standard error (sd / sqrt(n), of
          the best strength's seeds) of the best, as glmnet's ``lambda.1se``.

``tuned`` trains each regularizer at its selected strength, and ``none``, on fresh seeds that took
no part in the selection, into ``PRESET-tuned``, and compares them with ``none`` (paired by seed).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from regbench import cli, record
from regbench.locations import REPORTS_DIR, unwritable_folder
from regbench.schema import ConfigError, group_options

if __name__ == "__main__":
    cli.interrupts_in_one_line()

with cli.collector_paused():
    import numpy as np
    import pandas as pd
    from scipy import stats as scipy_stats

    from regbench import calibrate, compare, query, store, sweep
    from regbench import study as rounds
    from regbench.report import provenance
    from regbench.stats import mean_interval
    from regbench.tracking import git_commit

PUBLISHED_GRIDS = {  # option -> regularizer.weight values, written by hand before calibration
    "l1": (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    "l2": (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    "l1_l2": (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    "orthogonal": (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
    "custom": (1e-2, 1.0, 1e2, 1e4, 1e5, 1e6),
    "custom_columns": (1e-2, 1.0, 1e2, 1e4, 1e5, 1e6),
}
# presets that pin their grids on purpose: the path reports in reports/ were trained on these
# grids, and `make path` on the preset trains (or finds) those same runs again
PINNED_GRIDS = {"path_mnist_small": PUBLISHED_GRIDS, "path_fashion_small": PUBLISHED_GRIDS}
SELECTION_SEEDS = (0, 1, 2)
SELECTED_ON = "val_accuracy"  # the curve whose best epoch a strength is chosen on
TUNED_SEED_START = 100  # the tuned comparison's fresh seeds: 100, 101, ... in rounds
RULES = ("best", "1se")
CONTROL = "none"
PRESET_PREFIX = "path_"  # the experiment presets a path trains (path_presets)


def default_options(preset: str) -> list[str]:
    """What a path trains unless told: the preset's pinned options, else every built-in
    option with a penalty."""
    from regbench import registry

    return list(PINNED_GRIDS[preset]) if preset in PINNED_GRIDS else [
        name for name in registry.names()
        if registry.get(name).builtin and registry.get(name).target is not None]


def probe_config(preset: str, option: str, extra: tuple[str, ...]):
    """The composed config a calibration probes: the preset, the option at its default
    strength, the first selection seed, the command line's overrides."""
    from hydra import compose, initialize_config_dir

    from regbench.locations import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[
            f"experiment={preset}", f"regularizer={option}", f"seed={SELECTION_SEEDS[0]}",
            *extra])


def grids(preset: str, options: list[str], extra: tuple[str, ...], tracking_uri: str | None
          ) -> tuple[dict[str, tuple[float, ...]], list]:
    """Each option's grid on ``preset``: pinned, else calibrated (found or probed and logged
    in the experiment PRESET). Returns the grids and the calibrations used."""
    pinned = PINNED_GRIDS.get(preset, {})
    configs = {option: probe_config(preset, option, extra)
               for option in options if option not in pinned}
    calibrated = {}
    if configs:
        uri = tracking_uri or next(iter(configs.values())).mlflow.tracking_uri
        experiment_id = store.use_store(uri, preset)
        calibrated = {option: calibrate.recorded(cfg, preset, experiment_id)
                      for option, cfg in configs.items()}
    return ({option: pinned[option] if option in pinned else calibrated[option].grid
             for option in options}, list(calibrated.values()))


def train_commands(preset: str, grids: dict[str, tuple[float, ...]], seeds: tuple[int, ...],
                   experiment: str, extra: tuple[str, ...] = (),
                   regularizers: frozenset[str] | None = None) -> list[list[str]]:
    """One ``regbench.train`` multirun per regularizer (its grid x seeds) and one for none; of
    those named in ``regularizers`` only, when given."""
    base = [sys.executable, "-m", "regbench.train", "-m", f"experiment={preset}",
            f"mlflow.experiment_name={experiment}", f"seed={','.join(map(str, seeds))}", *extra]
    jobs = {**{option: [f"regularizer={option}",
                        f"regularizer.weight={','.join(f'{w:g}' for w in grid)}"]
               for option, grid in grids.items()},
            CONTROL: [f"regularizer={CONTROL}"]}
    return [[*base, *arguments] for option, arguments in jobs.items()
            if regularizers is None or option in regularizers]


def train_path(preset: str, grids: dict[str, tuple[float, ...]], extra: tuple[str, ...]) -> int:
    """Train the path: ``train_commands`` on the selection seeds into the preset's experiment,
    those with a job still to train (``sweep.still_to_train``); ``cli.run_commands``' code."""
    return cli.run_commands(sweep.still_to_train(train_commands(
        preset, grids, SELECTION_SEEDS, preset, extra)))


@dataclass(frozen=True)
class PathPoint:
    """One strength of one regularizer: per selection seed, its best-epoch validation accuracy
    and test data loss; the mean shares of the penalty at the end of training."""

    strength: float
    seeds: tuple[int, ...]
    val_accuracy: np.ndarray
    test_data_loss: np.ndarray
    loss_share: float
    gradient_share: float

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


def path_points(runs: pd.DataFrame, best_val: dict[str, float]) -> dict[str, list[PathPoint]]:
    """Group the runs of a path by regularizer and strength (``none`` has one point at 0);
    raises CompareError if one point would pool runs of different configs."""
    runs = runs.assign(best_val=runs["run_id"].map(best_val),
                       strength=pd.to_numeric(runs.get("params.regularizer.weight"),
                                              errors="coerce").fillna(0.0))
    points: dict[str, list[PathPoint]] = {}
    for (name, strength), group in runs.groupby([f"tags.{record.TAG_REGULARIZER}", "strength"]):
        if group["arm"].nunique() > 1:
            raise query.CompareError(f"{name} at {strength:g} holds runs of more than one "
                                     f"config: {'; '.join(sorted(group['arm'].unique()))}")
        group = group.sort_values("seed")
        points.setdefault(name, []).append(PathPoint(
            float(strength), tuple(int(s) for s in group["seed"]),
            group["best_val"].to_numpy(float),
            group[f"metrics.{record.TEST_DATA_LOSS}"].to_numpy(float),
            float(group[f"metrics.{record.PENALTY_LOSS_SHARE}"].mean()),
            float(group[f"metrics.{record.PENALTY_GRADIENT_SHARE}"].mean())))
    return {name: sorted(p, key=lambda p: p.strength) for name, p in points.items()}


def markdown(points: dict[str, list[PathPoint]], selections: list[Selection]) -> str:
    lines = ["Selected strengths (on the selection seeds' best-epoch validation accuracy only):",
             "", "| regularizer | best | val accuracy | 1-SE rule | val accuracy | seeds |",
             "|---|---|---|---|---|---|"]
    for s in selections:
        lines.append(f"| {s.regularizer} | {s.best.strength:g} | {s.best.mean:.4f} | "
                     f"{s.one_se.strength:g} | {s.one_se.mean:.4f} | "
                     f"{' '.join(map(str, s.best.seeds))} |")
    for s in selections:
        strengths = [p.strength for p in points[s.regularizer]]
        if s.best.strength in (min(strengths), max(strengths)):
            lines.append(f"- warning: {s.regularizer}'s best strength {s.best.strength:g} is at "
                         "the edge of its grid: the best may lie beyond it")
    lines += ["", "| regularizer | strength | seeds | val accuracy [95% CI] | test data loss | "
              "penalty share of loss | of gradient |", "|---|---|---|---|---|---|---|"]
    for name, path in points.items():
        for p in path:
            low, high = mean_interval(p.val_accuracy)
            interval = "" if np.isnan(low) else f" [{low:.4f}, {high:.4f}]"
            lines.append(f"| {name} | {p.strength:g} | {len(p.seeds)} | {p.mean:.4f}{interval} | "
                         f"{np.mean(p.test_data_loss):.4f} | {p.loss_share:.3g} | "
                         f"{p.gradient_share:.3g} |")
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
    from regbench.plots import plot_strength_paths

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


def chosen_strengths(study: PathStudy, names: list[str], rule: str, experiment: str,
                     every: bool = True) -> dict[str, tuple[float]]:
    """Each of ``names``' strength chosen by ``rule`` on the path, as a one-point grid. A name
    without finished path runs raises CompareError when ``every`` (it was asked for by name),
    else is left out; none of the names on the path raises too."""
    chosen = {s.regularizer: (s.chosen(rule).strength,) for s in study.selections
              if s.regularizer in names}
    missing = [name for name in names if name not in chosen]
    if not chosen or (every and missing):
        raise query.CompareError(f"the path of {experiment} has no finished runs of "
                                 f"{', '.join(missing)} to choose a strength from")
    return chosen


def read_path(experiment: str, reuse_stale: bool = False) -> PathStudy:
    """The path experiment's runs of today's code (of any with ``reuse_stale``:
    ``query.keep_todays_code``), its points per regularizer, and each regularizer's
    selection."""
    recorded, code_notes = query.keep_todays_code(query.fetch_runs(experiment, None).runs,
                                                  reuse_stale)
    best_val = query.best_values(list(recorded["run_id"]), SELECTED_ON)
    points = path_points(recorded, best_val)
    return PathStudy(recorded, points,
                     [select(name, path) for name, path in points.items() if name != CONTROL],
                     [c for c in calibrate.in_experiment(experiment)
                      if c.option not in PINNED_GRIDS.get(experiment, {})], code_notes)


def write_report(study: PathStudy, out: Path, header: str = "") -> list[Path]:
    """path.md (after ``header``) and path.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    text = out / "path.md"
    probes = calibrate.markdown(study.calibrations) + "\n" if study.calibrations else ""
    text.write_text(header + probes + markdown(study.points, study.selections))
    return [text, plot(study.points, study.selections, out / "path.png")]


def path_presets() -> list[str]:
    """The experiment presets a path trains: conf/experiment/path_*.yaml."""
    return [o for o in group_options("experiment") if o.startswith(PRESET_PREFIX)]


def options_list(text: str) -> list[str]:
    """``--regularizers a,b``: registered options with a penalty (argparse type)."""
    from regbench import registry

    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        try:
            option = registry.get(name)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if option.target is None:
            raise argparse.ArgumentTypeError(f"{name}: the control arm, which every path trains")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("run", "report", "tuned"))
    parser.add_argument("preset", help="an experiment preset, e.g. path_mnist_small; also the "
                        "name of the MLflow experiment")
    parser.add_argument("--regularizers", type=options_list, default=None,
                        help="run: the options to train; tuned: the options to compare (each "
                        "needs path runs); comma-separated (default: the preset's pinned ones, "
                        "else every built-in with a penalty)")
    parser.add_argument("--rule", choices=RULES, default="best", help="selection for tuned")
    rounds.add_schedule_arguments(parser)  # tuned: its rounds of fresh seeds
    rounds.add_code_arguments(parser)
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--out", type=Path, default=None,
                        help="default: reports/<preset> (report), reports/<preset>-tuned (tuned)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_intermixed_args(argv)
    presets = path_presets()
    if args.step != "report" and args.preset not in presets:
        cli.fail(f"{args.step} {args.preset}: not a path preset; allowed are {', '.join(presets)}")
    if args.out and (reason := unwritable_folder(args.out)):
        cli.fail(f"--out {args.out}: cannot be created, {reason}")
    extra = (*args.overrides, *rounds.code_overrides(args),
             *([f"mlflow.tracking_uri={args.tracking_uri}"] if args.tracking_uri else []))
    if args.step == "run":
        try:
            found, calibrations = grids(args.preset, args.regularizers or default_options(
                args.preset), extra, args.tracking_uri)
        except (ConfigError, store.StoreError) as error:
            cli.fail(str(error))
        if calibrations:
            print(calibrate.markdown(calibrations), file=sys.stderr)
        return train_path(args.preset, found, extra)

    try:
        store.connect(args.tracking_uri, create=False)
        study = read_path(args.preset, args.reuse_stale)
    except (store.StoreError, query.CompareError) as error:
        cli.fail(str(error))
    header = provenance(cli.command_line(__spec__.name, argv), git_commit(), study.runs,
                        study.code_notes)
    if args.step == "report":
        paths = write_report(study, args.out or REPORTS_DIR / args.preset, header)
        run_id = compare.log_report(paths, args.tracking_uri, f"path-{args.preset}",
                                    {"compared_experiment": args.preset, "report": "path"})
        print(paths[0].read_text(), end="")
        print(f"report: {paths[0].parent}/ (path.md, path.png), logged as run {run_id}")
        return 0
    tuned = f"{args.preset}-tuned"
    try:  # default: the options a path trains unless told, those this path has
        chosen_grids = chosen_strengths(study, args.regularizers or default_options(args.preset),
                                        args.rule, args.preset, every=bool(args.regularizers))
    except query.CompareError as error:
        cli.fail(str(error))
    out = args.out or REPORTS_DIR / tuned
    out.mkdir(parents=True, exist_ok=True)
    chosen = selection_markdown([s for s in study.selections if s.regularizer in chosen_grids],
                                args.rule)
    (out / "selection.md").write_text(header + chosen)
    print(chosen)
    return rounds.grow(
        lambda seeds, regularizers: train_commands(args.preset, chosen_grids, tuple(seeds), tuned,
                                                   extra, regularizers),
        tuned,
        CONTROL, rounds.schedule_from(args), TUNED_SEED_START, out,
        cli.command_line(__spec__.name, argv), args.tracking_uri, arms=tuple(chosen_grids),
        reuse_stale=args.reuse_stale)


if __name__ == "__main__":
    cli.run(main)
