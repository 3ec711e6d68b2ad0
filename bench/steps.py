"""Figures 1-3 of ``make bench``: the cost of a train step (penalties, trainer options), an
epoch of ``regbench train`` against the plain notebook script, and the step against the
machine's floating-point floor, with TensorFlow's profile of a step by part."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from figures import BENCH_DIR, PYTHON, run


def mlp_bn_classifier(make_regularizer, overrides: dict):
    """mlp_bn compiled with the default trainer, ``overrides`` merged into the trainer config."""
    from omegaconf import OmegaConf

    from regbench.locations import CONF_DIR
    from regbench.run.models import build_mlp, compile_classifier

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

    from regbench.run.regularizers import RedundancyRegularizer, redundancy_penalty_naive

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
    """Run ``regbench train`` (MLflow on) and read its per-epoch ``epoch_seconds``."""
    import mlflow
    from mlflow.tracking import MlflowClient


    uri = f"sqlite:///{store / 'mlflow.db'}"
    run([PYTHON, "-m", "regbench", "train", *overrides, "trainer.verbose=0",
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
