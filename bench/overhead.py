"""Figure 8 of ``make bench``: how much of a command's wall time is training.

*Overhead ratio* = wall seconds x cores / the sum of the runs' ``train_seconds`` (1.0: the cores
did nothing but ``model.fit``). Measured for one lone run (split by its ``seconds_<phase>``
metrics, ``record.PHASE_METRICS``) and for the same grid of small-data jobs run by Hydra's
multirun on the presets' joblib launcher (``regbench train -m``, how every round of a study
ran before the pool) and on regbench's pool of workers (``regbench sweep``).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import mlflow
from figures import PYTHON, Figure, median_ratio, run

from regbench import record

ENGINES = {"Hydra's joblib launcher (regbench train -m)": ["train", "-m"],
           "regbench's pool of workers (regbench sweep)": ["sweep"]}


def _runs(uri: str, experiment: str):
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[experiment])
    return runs[runs["tags.sweep"] != "parent"] if "tags.sweep" in runs else runs


def lone_run(job: list[str], store: Path) -> tuple[float, dict[str, float]]:
    """Wall seconds of ``regbench train JOB`` from outside, and its run's split: training,
    each phase, and the rest (process start-up, imports, composing, opening and closing the
    run)."""
    uri, experiment = f"sqlite:///{store / 'lone.db'}", f"lone-{time.time_ns()}"
    started = time.perf_counter()
    run([PYTHON, "-m", "regbench", "train", *job, f"mlflow.tracking_uri={uri}",
         f"mlflow.experiment_name={experiment}", f"hydra.run.dir={store / 'lone'}"])
    wall = time.perf_counter() - started
    metrics = _runs(uri, experiment).iloc[0]
    split = {"fit": metrics[f"metrics.{record.TRAIN_SECONDS}"],
             **{phase: metrics[f"metrics.{name}"]
                for phase, name in zip(record.PHASES, record.PHASE_METRICS, strict=True)}}
    split["start-up, imports, the run's opening and closing"] = wall - sum(split.values())
    return wall, split


def grid_overhead(engine: list[str], grid: list[str], store: Path) -> tuple[float, float, float]:
    """``regbench ENGINE GRID`` from an empty experiment: its wall seconds, its overhead
    ratio, and the median fixed cost of a job after its worker's first (the time from a run's
    start to the next run's start in the same process, less its ``train_seconds``)."""
    uri, experiment = f"sqlite:///{store / 'grid.db'}", f"grid-{time.time_ns()}"
    started = time.perf_counter()
    run([PYTHON, "-m", "regbench", *engine, *grid, f"mlflow.tracking_uri={uri}",
         f"mlflow.experiment_name={experiment}", f"hydra.sweep.dir={store / experiment}"])
    wall = time.perf_counter() - started
    runs = _runs(uri, experiment)
    trained = runs[f"metrics.{record.TRAIN_SECONDS}"].sum()
    fixed = []
    for _, worker in runs.sort_values("start_time").groupby("tags.pid"):
        starts = list(worker["start_time"])
        seconds = list(worker[f"metrics.{record.TRAIN_SECONDS}"])
        fixed += [(later - earlier).total_seconds() - trained_seconds for earlier, later,
                  trained_seconds in zip(starts[1:-1], starts[2:], seconds[1:-1], strict=True)]
    return wall, wall * (os.cpu_count() or 1) / trained, (
        statistics.median(fixed) if fixed else float("nan"))


def overhead(job: list[str], grid: list[str], rounds: int, store: Path) -> dict:
    """Figure 8's measurements: the lone run (once), each engine's grid (``rounds`` times,
    alternating)."""
    wall, split = lone_run(job, store)
    engines = {name: [] for name in ENGINES}
    for _ in range(rounds):
        for name, engine in ENGINES.items():
            engines[name].append(grid_overhead(engine, grid, store))
    return {"lone": (wall, split), "engines": engines}


def overhead_figures(quick: bool, scratch: Path) -> list[Figure]:
    """Figure 8: a lone run's split, and the overhead ratio of a grid per engine: the
    small-data preset's jobs (synthetic data and the smoke trainer when quick)."""
    job = ["experiment=path_mnist_small", "regularizer=l2", "regularizer.weight=1e-4",
           *(["data=synthetic", "trainer=smoke"] if quick else []), "seed=0"]
    jobs = 2 if quick else 8
    grid = [*job[:-1], f"seed=range(0,{jobs})"]
    found = overhead(job, grid, 1 if quick else 2, scratch / "overhead")
    wall, split = found["lone"]
    shares = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in split.items())
    figures = [Figure(8, "one small-data run, wall time / its train_seconds",
                      wall / split["fit"], None, "x", [],
                      f"regbench train {' '.join(job)}: {wall:.1f} s wall: {shares}.")]
    ratios = {}
    for name, results in found["engines"].items():
        walls, ratio, fixed = (list(values) for values in zip(*results, strict=True))
        ratios[name] = walls
        figures.append(Figure(
            8, f"overhead ratio, {jobs} small-data jobs, {name}", statistics.median(ratio),
            1.15, "x", ratio, f"wall x {os.cpu_count()} cores / sum of train_seconds; wall "
            f"{statistics.median(walls):.0f} s; a job's fixed cost after its worker's first: "
            f"{statistics.median(fixed):.1f} s (goal <= 3 s)."))
    hydra, pooled = (ratios[name] for name in ENGINES)
    figures.append(Figure(
        8, f"wall time of the {jobs} jobs, pool / Hydra's joblib launcher",
        median_ratio(pooled, hydra), None, "x", [p / h for p, h in zip(pooled, hydra, strict=True)],
        f"regbench sweep against regbench train -m on {' '.join(grid)}, alternating."))
    return figures
