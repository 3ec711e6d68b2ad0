"""``make bench`` (``python bench/run.py [--quick]``): regbench's speed, measured side by side.

Every comparison alternates its contenders in one process or one minute and reports the ratio
of medians; every figure is the median of several runs, with min and max. Writes RESULTS.md.
Full mode uses MNIST and finishes in about 17 minutes here; ``--quick`` uses synthetic data,
fewer rounds and a smaller store (about 3 minutes), and is what the test suite runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
PYTHON = sys.executable


@dataclass
class Figure:
    """One measured figure: ``value`` against ``goal`` (``value <= goal`` meets it)."""

    number: int
    name: str
    value: float
    goal: float | None
    unit: str
    samples: list[float] = field(default_factory=list)
    notes: str = ""

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return "(no goal)"
        return "met" if self.value <= self.goal else "MISSED"

    def spread(self) -> str:
        if len(self.samples) < 2:
            return ""
        return f"min {min(self.samples):.3g}, max {max(self.samples):.3g}, n={len(self.samples)}"


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    return statistics.median(numerators) / statistics.median(denominators)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **kwargs.pop("env", {})}
    return subprocess.run(command, cwd=kwargs.pop("cwd", PROJECT_ROOT), env=env,
                          capture_output=True, text=True, check=True, **kwargs)


# 1. penalty cost -------------------------------------------------------------------------------

def mlp_bn_classifier(make_regularizer, overrides: dict):
    """mlp_bn compiled with the default trainer, ``overrides`` merged into the trainer config."""
    from omegaconf import OmegaConf

    from regbench.locations import CONF_DIR
    from regbench.models import build_mlp, compile_classifier

    model_cfg = OmegaConf.load(CONF_DIR / "model" / "mlp_bn.yaml")
    trainer_cfg = OmegaConf.merge(OmegaConf.load(CONF_DIR / "trainer" / "default.yaml"),
                                  overrides)
    return compile_classifier(build_mlp(model_cfg, make_regularizer), trainer_cfg)


def random_batches(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` batches of 128 random MNIST-shaped examples."""
    rng = np.random.default_rng(0)
    return (rng.uniform(size=(128 * steps, 784)).astype(np.float32),
            rng.integers(0, 10, size=128 * steps))


class Variant(NamedTuple):
    """A way to train mlp_bn: its regularizer factory and trainer config overrides."""

    regularizer: Callable
    trainer: dict = {}


def step_times(variants: dict[str, Variant], rounds: int, steps: int) -> dict[str, list[float]]:
    """ms per train step of mlp_bn (batch 128) for each variant, alternating over ``rounds``."""
    x, y = random_batches(steps)
    models = {}
    for name, variant in variants.items():
        models[name] = mlp_bn_classifier(variant.regularizer, variant.trainer)
        models[name].fit(x, y, batch_size=128, epochs=1, verbose=0)  # trace and warm up
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            started = time.perf_counter()
            model.fit(x, y, batch_size=128, epochs=1, verbose=0)
            times[name].append(1000 * (time.perf_counter() - started) / steps)
    return times


def penalty_variants() -> dict[str, Variant]:
    """L2, the fast custom penalty and the notebook's naive form of it."""
    import keras

    from regbench.regularizers import RedundancyRegularizer, redundancy_penalty_naive

    class NaiveRedundancy(RedundancyRegularizer):
        def __call__(self, x):
            return self.weight * redundancy_penalty_naive(x, self.eps)

    return {"l2": Variant(lambda: keras.regularizers.L2(1e-4)),
            "custom": Variant(RedundancyRegularizer), "naive": Variant(NaiveRedundancy)}


OPTIONS = {  # a variant of the default trainer -> (its trainer overrides, what the bench calls it)
    "steps_per_execution=1": ({"steps_per_execution": 1}, "trainer.steps_per_execution=1"),
    "keras_adam": ({"optimizer": "adam"}, "Keras' Adam (trainer.optimizer=adam)"),
    "xla": ({"jit_compile": True}, "XLA (trainer.jit_compile=true)"),
}


def option_variants() -> dict[str, Variant]:
    """The default trainer and each of OPTIONS, with the L2 model: options that change no
    science, or only by float32 round-off."""
    import keras

    def l2():
        return keras.regularizers.L2(1e-4)

    return {"default": Variant(l2)} | {name: Variant(l2, overrides)
                                       for name, (overrides, _) in OPTIONS.items()}


# 2. regbench against the plain script ----------------------------------------------------------

def regbench_epoch_seconds(overrides: list[str], store: Path) -> tuple[list[float], str]:
    """Run ``python -m regbench.train`` (MLflow on) and read its per-epoch ``epoch_seconds``."""
    import mlflow
    from mlflow.tracking import MlflowClient


    uri = f"sqlite:///{store / 'mlflow.db'}"
    run([PYTHON, "-m", "regbench.train", *overrides, "trainer.verbose=0",
         f"mlflow.tracking_uri={uri}", "mlflow.experiment_name=bench",
         f"hydra.run.dir={store / 'outputs'}"])
    mlflow.set_tracking_uri(uri)
    run_id = mlflow.search_runs(experiment_names=["bench"], order_by=["start_time DESC"],
                                max_results=1).iloc[0].run_id
    points = sorted(MlflowClient().get_metric_history(run_id, "epoch_seconds"),
                    key=lambda m: m.step)
    return [p.value for p in points], run_id


def baseline_epoch_seconds(npz: Path, regularizer: str, epochs: int, val: int) -> list[float]:
    result = run([PYTHON, str(BENCH_DIR / "baseline_keras.py"), str(npz), "--regularizer",
                  regularizer, "--epochs", str(epochs), "--val", str(val)])
    return json.loads(result.stdout.strip().splitlines()[-1])["epoch_seconds"]


# 3. distance from the machine's limit ----------------------------------------------------------

def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    import tensorflow as tf

    a = tf.random.uniform((size, size))
    b = tf.random.uniform((size, size))
    tf.matmul(a, b).numpy()
    started = time.perf_counter()
    for _ in range(repeats):
        c = tf.matmul(a, b)
    c.numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


STEP_PARTS = ("matmuls", "optimizer update", "BatchNorm", "Dropout", "other ops")


def step_part(scope: str, op: str, optimizer: str) -> str:
    """The part of a train step (STEP_PARTS) a TensorFlow kernel belongs to, by its op type
    and name scope; a part's backward pass goes with it (its scope is inside the part's)."""
    if "MatMul" in op:
        return "matmuls"
    if f"/{optimizer}/" in f"/{scope}/":
        return "optimizer update"
    if "batch_normalization" in scope:
        return "BatchNorm"
    if "dropout" in scope:
        return "Dropout"
    return "other ops"


def step_profile(steps: int) -> tuple[float, dict[str, float], float]:
    """TensorFlow's profiler over one epoch of ``steps`` train steps of mlp_bn (batch 128, L2,
    the default trainer), after a warm-up epoch. Returns the wall ms per step; the kernel ms
    per step of each of STEP_PARTS, summed over TensorFlow's compute threads; and the ms per
    step in which no kernel runs on any thread (Python, Keras, the executor and the input
    pipeline between kernels)."""
    import keras
    import tensorflow as tf

    # TensorFlow's profiler writes XSpace protos; its wheel ships their Python bindings only
    # under tensorflow.tsl (TensorBoard's profile plugin, the public reader, is not a
    # dependency). The quick benchmark in the test suite reads a trace through it.
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    model = mlp_bn_classifier(lambda: keras.regularizers.L2(1e-4), {})
    x, y = random_batches(steps)
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        started = time.perf_counter()
        model.fit(x, y, batch_size=128, epochs=1, verbose=0)
        wall = time.perf_counter() - started
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace.FromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    kernel_ps = dict.fromkeys(STEP_PARTS, 0)
    intervals = []
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if "::" in name or ":" not in name:  # the executor's own events, not kernels
                    continue
                scope, _, op = name.rpartition(":")
                kernel_ps[step_part(scope, op, model.optimizer.name)] += event.duration_ps
                start = line.timestamp_ns * 1000 + event.offset_ps
                intervals.append((start, start + event.duration_ps))
    busy_ps, reached = 0, 0
    for start, end in sorted(intervals):  # the union of the kernels' intervals
        busy_ps += max(0, end - max(start, reached))
        reached = max(reached, end)
    wall_ms = 1000 * wall / steps
    return (wall_ms, {part: ps / 1e9 / steps for part, ps in kernel_ps.items()},
            wall_ms - busy_ps / 1e9 / steps)


def epoch_gflop(units: list[int], train: int, val: int) -> float:
    """Dense multiply-adds: 6 flops per weight per training example (forward 2, backward 4),
    2 per weight per validation example."""
    weights = sum(a * b for a, b in zip([784, *units], [*units, 10], strict=True))
    return weights * (6 * train + 2 * val) / 1e9


# 4. tracking overhead and compare on a large store ---------------------------------------------

def tracking_seconds_per_epoch(store: Path, epochs: int) -> list[float]:
    """Wall time of the MLflow callback's on_epoch_end, logging a real epoch's metrics."""
    import mlflow

    from regbench import record
    from regbench.callbacks import EpochMetricsCallback
    from regbench.store import use_store

    experiment_id = use_store(f"sqlite:///{store / 'tracking.db'}", "tracking")
    logs = {name: 0.5 for name in record.EPOCH_METRICS}
    callback = EpochMetricsCallback()
    seconds = []
    with mlflow.start_run(experiment_id=experiment_id):
        for epoch in range(epochs):
            started = time.perf_counter()
            callback.on_epoch_end(epoch, dict(logs))
            seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        mlflow.flush_async_logging()
        flush = time.perf_counter() - started
    return [s + flush / epochs for s in seconds]


def fill_store(store: Path, runs: int, epochs: int) -> str:
    """A store with ``runs`` FINISHED runs in three arms, each with per-epoch curves, params,
    tags and final metrics as regbench.train records them.

    The experiment is created through MLflow; the rows are inserted into the SQL store's run,
    param, tag, metric and latest-metric tables in one transaction, because logging through the
    client (three transactions a run) took 146 s per 1,000 runs here (4.7 s this way). Compare reads
    the result through MLflow's client, so a row it could not read would fail the benchmark."""
    import uuid

    import mlflow
    import sqlalchemy
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from mlflow.tracking import MlflowClient

    from regbench import record

    uri = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    experiment_id = client.create_experiment("regbench",
                                             artifact_location=(store / "art").as_uri())
    rng = np.random.default_rng(0)
    arms = [("l2", [1e-4]), ("custom", [1e-4]), ("none", [])]
    now = int(time.time() * 1000)
    rows = {table: [] for table in (SqlRun, SqlParam, SqlTag, SqlMetric, SqlLatestMetric)}
    for index in range(runs):
        name, strengths = arms[index % 3]
        run_id = uuid.uuid4().hex
        rows[SqlRun].append(dict(
            run_uuid=run_id, name=f"{name}-{index}", source_type="LOCAL", status="FINISHED",
            start_time=now + index, end_time=now + index + 1, lifecycle_stage="active",
            artifact_uri=f"{(store / 'art').as_uri()}/{run_id}/artifacts",
            experiment_id=int(experiment_id)))
        params = {record.PARAM_REGULARIZER: name, record.PARAM_SEED: str(index // 3)}
        if strengths:
            params["regularizer.weight"] = str(strengths[0])
        rows[SqlParam] += [dict(run_uuid=run_id, key=k, value=v) for k, v in params.items()]
        tags = {record.TAG_REGULARIZER: name, record.TAG_ARM: record.arm_label(name, strengths)}
        rows[SqlTag] += [dict(run_uuid=run_id, key=k, value=v) for k, v in tags.items()]
        points = [(key, step, float(rng.uniform())) for step in range(epochs)
                  for key in record.CURVE_METRICS]
        points += [(key, 0, float(rng.uniform())) for key in record.FINAL_METRICS]
        latest = {key: (step, value) for key, step, value in points}
        rows[SqlMetric] += [dict(run_uuid=run_id, key=key, step=step, value=value,
                                 timestamp=now, is_nan=False) for key, step, value in points]
        rows[SqlLatestMetric] += [dict(run_uuid=run_id, key=key, step=step, value=value,
                                       timestamp=now, is_nan=False)
                                  for key, (step, value) in latest.items()]
    engine = sqlalchemy.create_engine(uri)
    with engine.begin() as connection:
        for table, values in rows.items():
            connection.execute(sqlalchemy.insert(table.__table__), values)
    engine.dispose()
    return uri


# ``python -m regbench.compare`` with its collector pause and final-collection skip turned off
PLAIN_COMPARE = ("import contextlib, runpy, sys; from regbench import cli; "
                 "cli.collector_paused = contextlib.nullcontext; "
                 "cli.exit_skipping_final_collection = sys.exit; "
                 "runpy.run_module('regbench.compare', run_name='__main__', alter_sys=True)")


def commands_seconds(commands: dict[str, list[str]],
                     repeats: int) -> dict[str, tuple[list[float], float]]:
    """name -> (wall seconds of each of ``repeats`` runs, the largest peak memory in MiB) of
    each command, the commands alternated."""
    measured = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            measured[name].append(seconds_and_peak_mib(command))
    return {name: ([seconds for seconds, _ in runs], max(peak for _, peak in runs))
            for name, runs in measured.items()}


def curve_read_seconds(uri: str, repeats: int) -> dict[str, list[float]]:
    """Seconds to read the curve bands of every arm of the store at ``uri``, alternately as
    the database's aggregates (``sql``) and run by run through MLflow's client (``client``,
    the read a tracking server gets)."""
    import mlflow

    from regbench import query

    mlflow.set_tracking_uri(uri)
    by_arm = query.runs_by_arm(query.fetch_runs("regbench", None).runs)
    seconds = {"sql": [], "client": []}
    for _ in range(repeats):
        for name, bulk in (("sql", True), ("client", False)):
            started = time.perf_counter()
            query.curve_bands(by_arm, bulk=bulk)
            seconds[name].append(time.perf_counter() - started)
    return seconds


# 5. start-up ------------------------------------------------------------------------------------

def startup(arguments: list[str], repeats: int) -> tuple[list[float], bool]:
    """Wall seconds of ``python -m regbench.train ARGUMENTS``, and whether TensorFlow was
    imported (per ``python -X importtime``)."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run([PYTHON, "-m", "regbench.train", *arguments])
        seconds.append(time.perf_counter() - started)
    trace = run([PYTHON, "-X", "importtime", "-m", "regbench.train", *arguments]).stderr
    return seconds, any(line.rstrip().endswith("| tensorflow") for line in trace.splitlines())


# 6. peak memory ----------------------------------------------------------------------------------

def seconds_and_peak_mib(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of one run of ``command``: a fresh process
    measured by a fresh parent, so that RUSAGE_CHILDREN holds that process alone."""
    probe = ("import resource, subprocess, sys, time; started = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
             "stderr=subprocess.DEVNULL); print(time.perf_counter() - started, "
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    seconds, kib = run([PYTHON, "-c", probe, *command]).stdout.split()
    return float(seconds), int(kib) / 1024


def train_peak_mib(overrides: list[str], store: Path) -> float:
    """Peak resident memory of one ``python -m regbench.train OVERRIDES``."""
    uri = f"sqlite:///{store / 'memory.db'}"
    return seconds_and_peak_mib([PYTHON, "-m", "regbench.train", *overrides,
                                 "trainer.verbose=0", f"mlflow.tracking_uri={uri}",
                                 f"hydra.run.dir={store / 'outputs'}"])[1]


# 7. study throughput -----------------------------------------------------------------------------

LAUNCHES = {  # how a multirun shares the cores: launcher overrides per split
    "one job at a time on every core": ["hydra/launcher=basic"],
    "one job per core, 1 thread each (per_core)": ["hydra/launcher=per_core"],
}


def study_seconds(data: list[str], runs: int, epochs: int, launch: list[str],
                  store: Path) -> float:
    """Wall seconds of a study of ``runs`` mlp_bn runs (L2, one per seed), each exactly
    ``epochs`` epochs, launched with ``launch``: the whole command, start-up included."""
    uri = f"sqlite:///{store / 'mlflow.db'}"
    started = time.perf_counter()
    run([PYTHON, "-m", "regbench.train", "-m", *data, "regularizer=l2",
         f"seed=range(0,{runs})", f"trainer.epochs={epochs}",
         f"trainer.early_stopping_patience={epochs}", "trainer.verbose=0",
         f"mlflow.tracking_uri={uri}", f"mlflow.experiment_name=throughput-{time.time_ns()}",
         f"hydra.sweep.dir={store / 'multirun'}", *launch])
    return time.perf_counter() - started


def study_throughput(data: list[str], runs: int, epochs: int, rounds: int,
                     store: Path) -> dict[str, list[float]]:
    """Wall seconds of the study under each split in LAUNCHES, alternating over ``rounds``."""
    seconds = {name: [] for name in LAUNCHES}
    for _ in range(rounds):
        for name, launch in LAUNCHES.items():
            seconds[name].append(study_seconds(data, runs, epochs, launch, store))
    return seconds


# the report ---------------------------------------------------------------------------------------

def machine() -> str:
    import keras
    import mlflow
    import tensorflow as tf

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Python "
            f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras "
            f"{keras.__version__}, MLflow {mlflow.__version__}")


def write_results(figures: list[Figure], path: Path, quick: bool, elapsed: float) -> None:
    lines = ["# regbench benchmark", "",
             f"Mode: {'quick (synthetic data)' if quick else 'full (MNIST)'}; "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; took {elapsed:.0f} s.",
             f"Command: `make bench{' quick=1' if quick else ''}` (`python bench/run.py"
             f"{' --quick' if quick else ''}`); a figure that times a command names it in its "
             "note, the others time train steps inside the benchmark's process.",
             f"Machine: {machine()}.", "",
             "| # | figure | value | goal | verdict | spread |", "|---|---|---|---|---|---|"]
    for f in figures:
        goal = "" if f.goal is None else f"<= {f.goal:g} {f.unit}"
        lines.append(f"| {f.number} | {f.name} | {f.value:.3g} {f.unit} | {goal} | {f.verdict} "
                     f"| {f.spread()} |")
    lines += ["", "Notes:", ""] + [f"- {f.number}. {f.name}: {f.notes}" for f in figures
                                     if f.notes]
    path.write_text("\n".join(lines) + "\n")


def synthetic_npz(folder: Path, n_train: int) -> Path:
    from regbench.data import make_synthetic

    arrays = make_synthetic(n_train, 1000, 0.35, 1234)
    path = folder / "synthetic.npz"
    np.savez(path, **arrays)
    return path


def measure(quick: bool, scratch: Path) -> list[Figure]:
    rounds = 3 if quick else 5
    figures = []

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

    if quick:
        npz, data = synthetic_npz(scratch, 6000), ["data=synthetic", "data.n_train=6000",
                                                   "data.n_test=1000"]
        n_train, n_val, epochs = 5400, 600, 2
    else:
        from regbench.data import provide_mnist

        npz, data, n_train, n_val, epochs = provide_mnist(), ["data=mnist"], 54000, 6000, 3
    regbench_seconds, baseline_seconds = [], []
    train_overrides = [*data, "regularizer=l2", f"trainer.epochs={epochs}",
                       "trainer.early_stopping_patience=100"]
    for _ in range(2 if quick else 3):  # alternate: baseline, regbench
        baseline_seconds += baseline_epoch_seconds(npz, "l2", epochs, n_val)[1:]
        measured, run_id = regbench_epoch_seconds(train_overrides, scratch / "train")
        regbench_seconds += measured[1:]
    figures.append(Figure(
        2, "epoch time, regbench.train (MLflow on) / plain Keras script (L2 model)",
        median_ratio(regbench_seconds, baseline_seconds), 0.8, "x",
        [r / b for r, b in zip(regbench_seconds, baseline_seconds, strict=True)],
        f"median s/epoch (first epoch, which traces, left out): regbench "
        f"{statistics.median(regbench_seconds):.2f}, baseline "
        f"{statistics.median(baseline_seconds):.2f}; python -m regbench.train "
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

    epoch = statistics.median(regbench_seconds)
    logging = tracking_seconds_per_epoch(scratch, 20)
    figures.append(Figure(
        4, "MLflow logging time per epoch / epoch time",
        100 * statistics.median(logging) / epoch, 2.0, "%", [100 * s / epoch for s in logging],
        f"median {1000 * statistics.median(logging):.1f} ms per epoch (10 metrics, SQLite)."))
    for runs, goal in ((100, 3.0),) if quick else ((1000, 3.0), (10_000, 15.0)):
        uri = fill_store(scratch / f"large-{runs}", runs, 20)
        arguments = ["--tracking-uri", uri, "--no-log", "--out", str(scratch / "report")]
        compare = {"compare": [PYTHON, "-m", "regbench.compare", *arguments]}
        if runs == 1000 or quick:
            compare["plain"] = [PYTHON, "-c", PLAIN_COMPARE, *arguments]
        timed = commands_seconds(compare, 1 if quick else 3)
        seconds, peak = timed["compare"]
        figures.append(Figure(
            4, f"make compare on a store of {runs} runs", statistics.median(seconds), goal, "s",
            seconds, "python -m regbench.compare --tracking-uri <store> --no-log --out <folder>, "
            "the whole command: interpreter start, imports, queries, statistics, table, "
            f"plots; 20 epochs of 6 curves a run; peak memory {peak:.0f} MiB (goal < 1,024)."))
        if "plain" in timed:
            plain = timed["plain"][0]
            figures.append(Figure(
                4, f"make compare on {runs} runs, cycle collector paused for the imports and "
                "skipped at exit / as Python has it", median_ratio(seconds, plain), None, "x",
                [a / b for a, b in zip(seconds, plain, strict=True)],
                f"median s: {statistics.median(seconds):.2f} against "
                f"{statistics.median(plain):.2f} (cli.collector_paused, "
                "cli.exit_skipping_final_collection)."))
        seconds, peak = commands_seconds({"path": [
            PYTHON, "-m", "regbench.path", "report", "regbench", "--tracking-uri", uri,
            "--out", str(scratch / "path")]}, 1 if quick else 3)["path"]
        figures.append(Figure(
            4, f"make path report on a store of {runs} runs", statistics.median(seconds), goal,
            "s", seconds, "python -m regbench.path report regbench --tracking-uri <store> --out "
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

    for label, arguments in (("--help", ["--help"]), ("--cfg job", ["--cfg", "job"])):
        seconds, imported = startup(arguments, 3 if quick else 5)
        figures.append(Figure(
            5, f"start-up, python -m regbench.train {label}", statistics.median(seconds), 1.5,
            "s", seconds, f"TensorFlow imported: {'yes' if imported else 'no'}."))

    overrides = [*data, "trainer.epochs=1" if quick else "trainer.epochs=3"]
    figures.append(Figure(
        6, "peak memory of a training run", train_peak_mib(overrides, scratch), None, "MiB", [],
        f"python -m regbench.train {' '.join(overrides)} (max RSS of the process)."))

    runs, study_epochs = (2, 1) if quick else (12, 10)
    study_data = [*data, "data.limit=6000"] if not quick else data
    seconds = study_throughput(study_data, runs, study_epochs, 1 if quick else 2,
                               scratch / "throughput")
    serial, per_core = (seconds[name] for name in LAUNCHES)
    figures.append(Figure(
        7, "study wall time, one job per core / one job at a time", median_ratio(per_core, serial),
        1 / 1.2, "x", [p / s for p, s in zip(per_core, serial, strict=True)],
        f"python -m regbench.train -m {' '.join(study_data)} regularizer=l2 "
        f"seed=range(0,{runs}) trainer.epochs={study_epochs} with hydra/launcher=basic, then "
        f"=per_core ({study_epochs} epochs each, early stopping off): "
        f"{3600 * runs / statistics.median(serial):.0f} runs/hour one at a time with every core, "
        f"{3600 * runs / statistics.median(per_core):.0f} runs/hour one job per core; the goal "
        "(1.2x the runs per hour) is what made per_core the default launcher of the presets."))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        figures = measure(args.quick, Path(scratch))
    write_results(figures, args.out, args.quick, time.perf_counter() - started)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
