"""Figures 5-7 of ``make bench``, each a whole process: start-up of ``regbench train``, peak
memory of a run, and a study's wall time one job per core against one job at a time."""

from __future__ import annotations

import time
from pathlib import Path

from figures import PYTHON, run

# 5. start-up ------------------------------------------------------------------------------------

def startup(arguments: list[str], repeats: int) -> tuple[list[float], bool]:
    """Wall seconds of ``regbench train ARGUMENTS``, and whether TensorFlow was
    imported (per ``python -X importtime``)."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run([PYTHON, "-m", "regbench", "train", *arguments])
        seconds.append(time.perf_counter() - started)
    trace = run([PYTHON, "-X", "importtime", "-m", "regbench", "train", *arguments]).stderr
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
    """Peak resident memory of one ``regbench train OVERRIDES``."""
    uri = f"sqlite:///{store / 'memory.db'}"
    return seconds_and_peak_mib([PYTHON, "-m", "regbench", "train", *overrides,
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
    run([PYTHON, "-m", "regbench", "train", "-m", *data, "regularizer=l2",
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
