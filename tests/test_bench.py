"""The benchmark runner, end to end in its quick mode (synthetic data): every figure appears."""

import re
import subprocess
import sys

from helpers import PROJECT_ROOT


def test_the_quick_benchmark_reports_every_figure(tmp_path):
    results = tmp_path / "RESULTS.md"
    subprocess.run([sys.executable, str(PROJECT_ROOT / "bench" / "run.py"), "--quick", "--out",
                    str(results)], cwd=PROJECT_ROOT, check=True, capture_output=True,
                   timeout=900)
    text = results.read_text()
    rows = re.findall(r"^\| (\d) \| (.+?) \| ([\d.e+]+) (\S+) \|", text, flags=re.M)
    assert sorted({int(number) for number, *_ in rows}) == [1, 2, 3, 4, 5, 6, 7]
    names = " ".join(name for _, name, *_ in rows)
    for expected in ("custom penalty / L2", "plain Keras script", "floating-point floor",
                     "MLflow logging", "make compare", "--help", "--cfg job", "peak memory",
                     "one job per core / one job at a time", "SQL aggregates / run by run",
                     "cycle collector paused", "make path report", "steps_per_execution=1",
                     "Keras' Adam",
                     "train step profile: matmuls", "train step profile: optimizer update",
                     "train step profile: no kernel running"):
        assert expected in names
    assert all(float(value) > 0 for _, _, value, _ in rows)
    assert "naive" in text and "Machine: " in text


def test_the_benchmark_is_split_by_what_it_measures():
    for module in ("run", "figures", "steps", "store_reads", "processes"):
        lines = (PROJECT_ROOT / "bench" / f"{module}.py").read_text().count("\n")
        assert lines <= 300, f"bench/{module}.py has {lines} lines"
