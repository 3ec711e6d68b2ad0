"""``make bench`` (``python bench/run.py [--quick]``): regbench's speed, measured side by side.

Every comparison alternates its contenders in one process or one minute and reports the ratio
of medians; every figure is the median of several runs, with min and max. Writes RESULTS.md
(its first lines say how long the run took). ``--quick`` uses synthetic data, fewer rounds and
a smaller store, and is what the test suite runs. What each figure measures lives beside it:
steps.py (1-3), store_reads.py (4), processes.py (5-7), overhead.py (8), soak.py (9); figures.py has
what they share.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from figures import BENCH_DIR, PYTHON, Figure, median_ratio, write_results
from overhead import overhead_figures
from processes import LAUNCHES, startup, study_throughput, train_peak_mib
from soak import soak_figures
from steps import (
    OPTIONS,
    baseline_epoch_seconds,
    epoch_gflop,
    matmul_gflops,
    option_variants,
    penalty_variants,
    regbench_epoch_seconds,
    step_profile,
    step_times,
)
from store_reads import (
    PLAIN_COMPARE,
    commands_seconds,
    curve_read_seconds,
    fill_store,
    tracking_seconds_per_epoch,
)


def synthetic_npz(folder: Path, n_train: int) -> Path:
    from regbench.run.data import make_synthetic

    arrays = make_synthetic(n_train, 1000, 0.35, 1234)
    path = folder / "synthetic.npz"
    np.savez(path, **arrays)
    return path


def step_figures(quick: bool) -> list[Figure]:
    """Figures 1 and 2: a train step per penalty and per option."""
    figures = []
    rounds = 3 if quick else 5
    times = step_times(penalty_variants(), rounds=rounds, steps=20 if quick else 60)
    ratio = median_ratio(times["custom"], times["l2"])
    naive = median_ratio(times["naive"], times["l2"])
    figures.append(Figure(
        1, "train step, custom penalty / L2 (mlp_bn, batch 128)", ratio, 1.05, "x",
        [c / l2 for c, l2 in zip(times["custom"], times["l2"], strict=True)],
        f"median ms/step: L2 {statistics.median(times['l2']):.1f}, custom "
        f"{statistics.median(times['custom']):.1f}, naive (the notebook's out x out form) "
        f"{statistics.median(times['naive']):.1f}, i.e. naive / L2 = {naive:.2f}x."))

    options = step_times(option_variants(), rounds=rounds + 2, steps=16 if quick else 120)
    default = statistics.median(options["default"])
    for name, (_, label) in OPTIONS.items():
        ratio = median_ratio(options[name], options["default"])
        verdict = ("a clear gain (below 0.9x): worth taking up" if ratio < 0.9 else
                   "the default is faster" if ratio > 1 else "no clear gain (not below 0.9x)")
        figures.append(Figure(2, f"train step with {label} / default (L2 model)", ratio, None,
                              "x", [o / d for o, d in zip(options[name], options["default"],
                                                          strict=True)],
                              f"default {default:.1f} ms/step; {verdict}."))

    return figures


@dataclass(frozen=True)
class Epochs:
    """What figures 4-7 take from figure 2's epochs: the data's overrides, the median epoch
    time."""

    data: list[str]
    epoch_seconds: float



def epoch_figures(quick: bool, scratch: Path) -> tuple[list[Figure], Epochs]:
    """Figures 2 and 3: an epoch of regbench train against the plain Keras script, the floor
    of the floating-point work, the profile of a step."""
    figures = []
    if quick:
        npz, data = synthetic_npz(scratch, 6000), ["data=synthetic", "data.n_train=6000",
                                                   "data.n_test=1000"]
        n_train, n_val, epochs = 5400, 600, 2
    else:
        from regbench.run.data import provide_mnist

        npz, data, n_train, n_val, epochs = provide_mnist(), ["data=mnist"], 54000, 6000, 3
    regbench_seconds, baseline_seconds = [], []
    train_overrides = [*data, "regularizer=l2", f"trainer.epochs={epochs}",
                       "trainer.early_stopping_patience=100"]
    for _ in range(1 if quick else 3):  # alternate: baseline, regbench
        baseline_seconds += baseline_epoch_seconds(npz, "l2", epochs, n_val)[1:]
        measured, run_id = regbench_epoch_seconds(train_overrides, scratch / "train")
        regbench_seconds += measured[1:]
    figures.append(Figure(
        2, "epoch time, regbench train (MLflow on) / plain Keras script (L2 model)",
        median_ratio(regbench_seconds, baseline_seconds), 0.8, "x",
        [r / b for r, b in zip(regbench_seconds, baseline_seconds, strict=True)],
        f"median s/epoch (first epoch, which traces, left out): regbench "
        f"{statistics.median(regbench_seconds):.2f}, baseline "
        f"{statistics.median(baseline_seconds):.2f}; regbench train "
        f"{' '.join(train_overrides)} against python bench/baseline_keras.py <data> "
        f"--regularizer l2 --epochs {epochs} --val {n_val}."))

    gflops = matmul_gflops()
    work = epoch_gflop([1024, 512, 256], n_train, n_val)
    floor = work / gflops
    figures.append(Figure(
        3, "epoch time / floating-point floor", statistics.median(regbench_seconds) / floor,
        2.5, "x", [r / floor for r in regbench_seconds],
        f"a 2048x2048 float32 matmul runs at {gflops:.0f} GFLOP/s here; an epoch "
        f"of {n_train} training and {n_val} validation examples is "
        f"{work:.0f} GFLOP of dense multiply-adds, "
        f"a floor of {floor:.2f} s."))
    wall, kernels, idle = step_profile(24 if quick else 240)
    step_floor = 1000 * epoch_gflop([1024, 512, 256], 128, 0) / gflops
    kernel_total = sum(kernels.values())
    for part, ms in kernels.items():
        figures.append(Figure(
            3, f"train step profile: {part}, kernel ms per step", ms, None, "ms", [],
            f"{ms / kernel_total:.0%} of the kernel time" + (
                "; TensorFlow's profiler over one epoch of mlp_bn (batch 128, L2, the default "
                f"trainer): {kernel_total:.2f} ms of kernels per step, summed over the compute "
                f"threads, in a step of {wall:.2f} ms; the matmuls' floor is {step_floor:.2f} ms"
                if part == "matmuls" else "") + "."))
    figures.append(Figure(
        3, "train step profile: no kernel running (Python, Keras, executor) / step time",
        idle / wall, None, "x", [], f"{idle:.2f} of {wall:.2f} ms per step with no TensorFlow "
        "kernel on any thread."))

    return figures, Epochs(data, statistics.median(regbench_seconds))


def store_figures(quick: bool, scratch: Path, epochs: Epochs) -> list[Figure]:
    """Figure 4: logging per epoch, and compare and path report on large stores."""
    figures = []
    epoch = epochs.epoch_seconds
    logging = tracking_seconds_per_epoch(scratch, 20)
    figures.append(Figure(
        4, "MLflow logging time per epoch / epoch time",
        100 * statistics.median(logging) / epoch, 2.0, "%", [100 * s / epoch for s in logging],
        f"median {1000 * statistics.median(logging):.1f} ms per epoch (10 metrics, SQLite)."))
    for runs, goal in ((100, 3.0),) if quick else ((1000, 3.0), (10_000, 15.0)):
        uri = fill_store(scratch / f"large-{runs}", runs, 20)
        arguments = ["--tracking-uri", uri, "--no-log", "--out", str(scratch / "report")]
        compare = {"compare": [PYTHON, "-m", "regbench", "compare", *arguments]}
        if runs == 1000 or quick:
            compare["plain"] = [PYTHON, "-c", PLAIN_COMPARE, *arguments]
        timed = commands_seconds(compare, 1 if quick else 3)
        seconds, peak = timed["compare"]
        figures.append(Figure(
            4, f"make compare on a store of {runs} runs", statistics.median(seconds), goal, "s",
            seconds, "regbench compare --tracking-uri <store> --no-log --out <folder>, "
            "the whole command: interpreter start, imports, queries, statistics, table, "
            f"plots; 20 epochs of 6 curves a run; peak memory {peak:.0f} MiB (goal < 1,024)."))
        if "plain" in timed:
            plain = timed["plain"][0]
            figures.append(Figure(
                4, f"make compare on {runs} runs, cycle collector paused for the imports and "
                "skipped at exit / as Python has it", median_ratio(seconds, plain), None, "x",
                [a / b for a, b in zip(seconds, plain, strict=True)],
                f"median s: {statistics.median(seconds):.2f} against "
                f"{statistics.median(plain):.2f} (common.collector_paused, "
                "common.exit_skipping_final_collection)."))
        if runs == 1000 or quick:
            plain_uri = fill_store(scratch / f"plain-{runs}", runs, 20, plain_paths=True)
            seconds, peak = commands_seconds({"compare": [
                PYTHON, "-m", "regbench", "compare", "--tracking-uri", plain_uri, "--no-log",
                "--out", str(scratch / "report")]}, 1 if quick else 3)["compare"]
            figures.append(Figure(
                4, f"make compare on a store of {runs} runs whose artifact URIs are plain paths",
                statistics.median(seconds), goal, "s", seconds, "as the figure above, on a "
                "store whose experiment has a plain path for its artifact root (runs logged "
                f"by MLflow's client in a store made elsewhere); peak memory {peak:.0f} MiB."))
        seconds, peak = commands_seconds({"path": [
            PYTHON, "-m", "regbench", "path", "report", "regbench", "--tracking-uri", uri,
            "--out", str(scratch / "path")]}, 1 if quick else 3)["path"]
        figures.append(Figure(
            4, f"make path report on a store of {runs} runs", statistics.median(seconds), goal,
            "s", seconds, "regbench path report regbench --tracking-uri <store> --out "
            "<folder>, the whole command (it also logs the report as a run); peak memory "
            f"{peak:.0f} MiB (goal < 1,024)."))
        if runs == 1000 or quick:
            read = curve_read_seconds(uri, 3)
            figures.append(Figure(
                4, f"reading the curve bands of {runs} runs: SQL aggregates / run by run",
                median_ratio(read["sql"], read["client"]), None, "x",
                [a / b for a, b in zip(read["sql"], read["client"], strict=True)],
                f"median s: SQL aggregates {statistics.median(read['sql']):.2f}, run by run "
                f"through MLflow's client {statistics.median(read['client']):.2f}."))

    return figures


def startup_figures(quick: bool) -> list[Figure]:
    """Figure 5: the start-up of ``regbench train --help`` and ``--cfg job``."""
    figures = []
    for label, arguments in (("--help", ["--help"]), ("--cfg job", ["--cfg", "job"])):
        seconds, imported = startup(arguments, 2 if quick else 5)
        figures.append(Figure(
            5, f"start-up, regbench train {label}", statistics.median(seconds), 1.5,
            "s", seconds, f"TensorFlow imported: {'yes' if imported else 'no'}."))
    return figures


def process_figures(quick: bool, scratch: Path, epochs: Epochs) -> list[Figure]:
    """Figures 6 and 7: peak memory, a study's throughput per launcher."""
    figures = []
    overrides = [*epochs.data, "trainer.epochs=1" if quick else "trainer.epochs=3"]
    figures.append(Figure(
        6, "peak memory of a training run", train_peak_mib(overrides, scratch), None, "MiB", [],
        f"regbench train {' '.join(overrides)} (max RSS of the process)."))

    runs, study_epochs = (2, 1) if quick else (12, 10)
    study_data = [*epochs.data, "data.limit=6000"] if not quick else epochs.data
    seconds = study_throughput(study_data, runs, study_epochs, 1 if quick else 2,
                               scratch / "throughput")
    serial, per_core = (seconds[name] for name in LAUNCHES)
    figures.append(Figure(
        7, "study wall time, one job per core / one job at a time", median_ratio(per_core, serial),
        1 / 1.2, "x", [p / s for p, s in zip(per_core, serial, strict=True)],
        f"regbench train -m {' '.join(study_data)} regularizer=l2 "
        f"seed=range(0,{runs}) trainer.epochs={study_epochs} with hydra/launcher=basic, then "
        f"=per_core ({study_epochs} epochs each, early stopping off): "
        f"{3600 * runs / statistics.median(serial):.0f} runs/hour one at a time with every core, "
        f"{3600 * runs / statistics.median(per_core):.0f} runs/hour one job per core; the goal "
        "(1.2x the runs per hour) is what made per_core the default launcher of the presets."))
    return figures


def measure(quick: bool, scratch: Path, only: frozenset[int] | None = None) -> list[Figure]:
    """Every figure, or those numbered in ``only`` (the groups that make them run, and the
    epochs of figure 2 when a later group needs its data and epoch time)."""
    def wanted(*numbers: int) -> bool:
        return only is None or bool(only.intersection(numbers))

    figures = step_figures(quick) if wanted(1, 2) else []
    if wanted(2, 3, 4, 6, 7):
        epoch, epochs = epoch_figures(quick, scratch)
        figures += epoch
    if wanted(4):
        figures += store_figures(quick, scratch, epochs)
    if wanted(5):
        figures += startup_figures(quick)
    if wanted(6, 7):
        figures += process_figures(quick, scratch, epochs)
    if wanted(8):
        figures += overhead_figures(quick, scratch)
    if wanted(9):
        figures += soak_figures(quick, scratch)
    return [figure for figure in figures if only is None or figure.number in only]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument("--only", type=int, action="append", choices=range(1, 10),
                        metavar="N", help="measure figure N only (repeatable; default: all)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        figures = measure(args.quick, Path(scratch), frozenset(args.only) if args.only else None)
    write_results(figures, args.out, args.quick, time.perf_counter() - started,
                  only=bool(args.only))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
