"""What every figure of ``make bench`` shares: the Figure record, ratios of medians, running a
command of the project, and RESULTS.md with the machine it was measured on."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

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
