"""What every figure of ``make bench`` shares: the Figure record, ratios of medians, running a
command of the project, and RESULTS.md with the machine it was measured on."""

from __future__ import annotations

import os
import platform
import re
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


KEPT = re.compile(r"^Figures ([\d, ]+) are kept from (.+)\.$")  # a line write_results writes


def _kept(path: Path, quick: bool, measured: set[int]) -> tuple[list[str], list[str], list[str]]:
    """Of an earlier RESULTS.md of the same mode: its table rows and notes of the figures not
    in ``measured``, and lines saying, per run that measured them, when and where (a figure kept
    already keeps the run it came from)."""
    if not path.exists():
        return [], [], []
    lines = path.read_text().splitlines()
    mode = "quick" if quick else "full"
    if not lines[2:3] or not lines[2].startswith(f"Mode: {mode}"):
        return [], [], []
    number = re.compile(r"^(?:\| |- )(\d+)[ .]")

    def others(prefix: str) -> list[str]:
        return [line for line in lines if line.startswith(prefix) and (
            found := number.match(line)) and int(found.group(1)) not in measured]

    rows, notes = others("| "), others("- ")
    machine_then = next((line for line in lines if line.startswith("Machine: ")), "")
    header_run = (f"the run of {lines[2].removeprefix('Mode: ').split('; ', 1)[-1].rstrip('.')}"
                  f", on {machine_then.removeprefix('Machine: ').rstrip('.')}")
    origin = {int(figure): run for line in lines if (found := KEPT.match(line))
              for figure, run in ((f, found.group(2)) for f in found.group(1).split(", "))}
    runs: dict[str, set[int]] = {}
    for row in rows:
        figure = int(number.match(row).group(1))
        runs.setdefault(origin.get(figure, header_run), set()).add(figure)
    return rows, notes, [f"Figures {', '.join(map(str, sorted(figures)))} are kept from {run}."
                         for run, figures in runs.items()]


def write_results(figures: list[Figure], path: Path, quick: bool, elapsed: float,
                  only: bool = False) -> None:
    """RESULTS.md: the machine, then every figure's row and note. With ``only`` (a selection
    of figures measured), the other figures of the file's earlier run of the same mode are kept,
    each row as it was, and a line says when they were measured."""
    measured = {f.number for f in figures}
    rows, notes, kept = _kept(path, quick, measured) if only else ([], [], [])
    lines = ["# regbench benchmark", "",
             f"Mode: {'quick (synthetic data)' if quick else 'full (MNIST)'}; "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; took {elapsed:.0f} s"
             + (f" for figures {', '.join(map(str, sorted(measured)))}" if only else "") + ".",
             f"Command: `make bench{' quick=1' if quick else ''}` (`python bench/run.py"
             f"{' --quick' if quick else ''}`); a figure that times a command names it in its "
             "note, the others time train steps inside the benchmark's process.",
             f"Machine: {machine()}.", *kept, "",
             "| # | figure | value | goal | verdict | spread |", "|---|---|---|---|---|---|"]
    new_rows = []
    for f in figures:
        goal = "" if f.goal is None else f"<= {f.goal:g} {f.unit}"
        new_rows.append(f"| {f.number} | {f.name} | {f.value:.3g} {f.unit} | {goal} | "
                        f"{f.verdict} | {f.spread()} |")
    new_notes = [f"- {f.number}. {f.name}: {f.notes}" for f in figures if f.notes]

    def by_number(line: str) -> int:
        return int(re.match(r"^(?:\| |- )(\d+)", line).group(1))

    lines += sorted(rows + new_rows, key=by_number)
    lines += ["", "Notes:", ""] + sorted(notes + new_notes, key=by_number)
    path.write_text("\n".join(lines) + "\n")
