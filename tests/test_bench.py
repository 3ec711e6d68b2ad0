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
    (None, ["step", "epoch", "store", "startup", "process", "overhead", "soak"]),
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
    monkeypatch.setattr(bench_run, "soak_figures", group("soak", (9,)))
    figures = bench_run.measure(True, tmp_path, only)
    assert ran == groups
    assert sorted({f.number for f in figures}) == sorted(only or range(1, 10))


def test_the_benchmark_is_split_by_what_it_measures():
    for module in ("run", "figures", "steps", "store_reads", "processes", "overhead", "soak"):
        lines = (BENCH / f"{module}.py").read_text().count("\n")
        assert lines <= 300, f"bench/{module}.py has {lines} lines"


def test_a_selection_keeps_the_other_figures_of_the_file(bench_run, tmp_path):
    """``--only N`` writes figure N anew and keeps every other row and note of the earlier run
    of the same mode, saying when those were measured."""
    results = tmp_path / "RESULTS.md"
    old = [bench_run.Figure(1, "one", 1.0, None, "x", [], "note one"),
           bench_run.Figure(2, "two", 2.0, None, "x", [], "note two")]
    bench_run.write_results(old, results, quick=True, elapsed=5.0)
    bench_run.write_results([bench_run.Figure(2, "two", 3.0, None, "x", [], "new two")],
                            results, quick=True, elapsed=1.0, only=True)
    text = results.read_text()
    assert re.findall(r"^\| (\d) \| \w+ \| ([\d.]+) x", text, flags=re.M) == [
        ("1", "1"), ("2", "3")]
    assert "- 1. one: note one" in text and "- 2. two: new two" in text
    assert "note two" not in text and "Figures 1 are kept from the run of " in text
    assert "took 5 s, on " in text  # the run that measured figure 1
    bench_run.write_results([bench_run.Figure(2, "two", 3.5, None, "x")], results, quick=True,
                            elapsed=2.0, only=True)
    assert "took 5 s, on " in results.read_text()  # still that run, not the one before this
    bench_run.write_results([bench_run.Figure(2, "two", 4.0, None, "x")], results,
                            quick=False, elapsed=1.0, only=True)  # another mode: none kept
    assert "| 1 |" not in results.read_text()
