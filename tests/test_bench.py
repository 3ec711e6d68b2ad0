"""The benchmark runner: one tiny figure end to end (``--quick --only 5``: start-up), and which
groups a selection of figures runs, with the measurements replaced (the whole benchmark is
``make bench``'s, never the suite's)."""

import importlib
import re
import subprocess
import sys

import pytest

from helpers import PROJECT_ROOT

BENCH = PROJECT_ROOT / "bench"


@pytest.fixture
def bench_run(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("run")


def test_one_tiny_figure_end_to_end(tmp_path):
    results = tmp_path / "RESULTS.md"
    subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--only", "5", "--out",
                    str(results)], cwd=PROJECT_ROOT, check=True, capture_output=True,
                   timeout=600)
    text = results.read_text()
    rows = re.findall(r"^\| (\d) \| (.+?) \| ([\d.e+]+) (\S+) \|", text, flags=re.M)
    assert [(number, name) for number, name, *_ in rows] == [
        ("5", "start-up, regbench train --help"), ("5", "start-up, regbench train --cfg job")]
    assert all(float(value) > 0 and unit == "s" for *_, value, unit in rows)
    assert "Machine: " in text and "TensorFlow imported: no." in text


@pytest.mark.parametrize(("only", "groups"), [
    (None, ["step", "epoch", "store", "startup", "process", "overhead"]),
    (frozenset({5}), ["startup"]),
    (frozenset({4}), ["epoch", "store"]),
    (frozenset({1, 7}), ["step", "epoch", "process"]),
])
def test_a_selection_runs_the_groups_its_figures_need(bench_run, monkeypatch, tmp_path, only,
                                                       groups):
    ran = []

    def group(name, numbers, epochs=False):
        def measured(*arguments):
            ran.append(name)
            figures = [bench_run.Figure(n, f"{name} {n}", 1.0, None, "x") for n in numbers]
            return (figures, bench_run.Epochs(["data=synthetic"], 1.0)) if epochs else figures
        return measured

    monkeypatch.setattr(bench_run, "step_figures", group("step", (1, 2)))
    monkeypatch.setattr(bench_run, "epoch_figures", group("epoch", (2, 3), epochs=True))
    monkeypatch.setattr(bench_run, "store_figures", group("store", (4,)))
    monkeypatch.setattr(bench_run, "startup_figures", group("startup", (5,)))
    monkeypatch.setattr(bench_run, "process_figures", group("process", (6, 7)))
    monkeypatch.setattr(bench_run, "overhead_figures", group("overhead", (8,)))
    figures = bench_run.measure(True, tmp_path, only)
    assert ran == groups
    assert sorted({f.number for f in figures}) == sorted(only or range(1, 9))


def test_the_benchmark_is_split_by_what_it_measures():
    for module in ("run", "figures", "steps", "store_reads", "processes", "overhead"):
        lines = (BENCH / f"{module}.py").read_text().count("\n")
        assert lines <= 300, f"bench/{module}.py has {lines} lines"
