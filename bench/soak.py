"""Figure 9 of ``make bench``: two studies and a compare racing on one store, killed at random.

Two identical ``regbench study`` commands (synthetic data, the smoke trainer) and a loop of
``regbench compare`` share one SQLite store. At random moments one of them gets Ctrl-C (SIGINT to
its process group, as a terminal sends it) or kill -9 (SIGKILL to the command alone, its workers
left to notice) and is started again. Then both studies run to their end unhindered and a last
compare runs. Checked: no config trained twice (FINISHED runs per config hash), no run left
RUNNING (the studies' experiment and ``regbench-comparisons``), and no report of mixed writings
(each report folder's ``compared_run_ids.txt`` and ``per_seed.csv`` name the same runs).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pandas as pd
from figures import PYTHON, Figure

from regbench import record

EXPERIMENT = "soak"
STUDY = ["study", "l2_vs_custom", "--experiment", EXPERIMENT, "--first", "2", "--step", "1",
         "--max-seeds", "4", "--any-budget", "data=synthetic", "trainer=smoke", "model=mlp_small"]


def _start(arguments: list[str], uri: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MLFLOW_TRACKING_URI": uri}
    with open(log, "a") as output:
        return subprocess.Popen([PYTHON, "-m", "regbench", *arguments], cwd=log.parent,
                                stdout=output, stderr=output, env=env, start_new_session=True)


def _commands(scratch: Path) -> dict[str, list[str]]:
    return {"study a": [*STUDY, "--out", str(scratch / "study-a")],
            "study b": [*STUDY, "--out", str(scratch / "study-b")],
            "compare": ["compare", "--experiment", EXPERIMENT, "--out", str(scratch / "compare")]}


def _kill(process: subprocess.Popen, how: str) -> None:
    if how == "SIGINT":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.kill()
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def race(kills: int, scratch: Path, seed: int = 0) -> dict[str, int]:
    """Run the race with ``kills`` random kills; the counts of each kind and of each fault."""
    rng = random.Random(seed)
    uri, log = f"sqlite:///{scratch / 'mlflow.db'}", scratch / "soak.log"
    commands = _commands(scratch)
    running = {name: _start(arguments, uri, log) for name, arguments in commands.items()}
    counts = {"SIGINT": 0, "SIGKILL": 0}
    for _ in range(kills):
        time.sleep(rng.uniform(3, 12))
        for name, process in running.items():  # a command that ended is started again
            if process.poll() is not None:
                running[name] = _start(commands[name], uri, log)
        victim, how = rng.choice(sorted(running)), rng.choice(sorted(counts))
        _kill(running[victim], how)
        counts[how] += 1
        running[victim] = _start(commands[victim], uri, log)
    for process in running.values():
        process.wait()
    for name in ("study a", "study b", "compare"):  # to their end, unhindered
        subprocess.run([PYTHON, "-m", "regbench", *commands[name]], cwd=scratch, check=True,
                       capture_output=True, env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    return {**counts, **faults(uri, scratch)}


def faults(uri: str, scratch: Path) -> dict[str, int]:
    """Duplicates, runs left RUNNING and mixed reports in the store and report folders."""
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[EXPERIMENT], max_results=50_000)
    training = runs[runs[f"tags.{record.TAG_SWEEP}"].isna()] if (
        f"tags.{record.TAG_SWEEP}" in runs) else runs
    finished = training[training["status"] == record.FINISHED]
    duplicates = int(finished.duplicated(f"tags.{record.TAG_CONFIG_HASH}").sum())
    reports = mlflow.search_runs(experiment_names=["regbench-comparisons"], max_results=50_000)
    left_running = int((runs["status"] == record.RUNNING).sum()
                       + (reports["status"] == record.RUNNING).sum())
    mixed = 0
    for ids in scratch.glob("*/compared_run_ids.txt"):
        per_seed = pd.read_csv(ids.with_name("per_seed.csv"))
        mixed += set(ids.read_text().split()) != set(per_seed["run_id"])
    return {"duplicates": duplicates, "left running": left_running, "mixed reports": mixed,
            "runs": len(finished)}


def soak_figures(quick: bool, scratch: Path) -> list[Figure]:
    """Figure 9: the faults of the race, each against a goal of none."""
    folder = scratch / "soak"
    folder.mkdir()
    kills = 3 if quick else 20
    found = race(kills, folder)
    note = (f"{kills} random kills ({found['SIGINT']} Ctrl-C to a command's process group, "
            f"{found['SIGKILL']} kill -9 of a command alone) of two identical `regbench "
            f"{' '.join(STUDY)}` and a `regbench compare` loop on one store, then both studies "
            f"and a compare to their end: {found['runs']} FINISHED training runs.")
    return [Figure(9, f"soak: {fault} after the race", found[fault], 0, "", [], note)
            for fault in ("duplicates", "left running", "mixed reports")]

