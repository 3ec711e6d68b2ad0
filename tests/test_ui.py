"""`make ui` serves the store: its REST API and its pages, read by a real headless browser."""

import os
import shutil
import signal
import subprocess

import pytest

from helpers import PROJECT_ROOT, api, free_port, require_tool, sqlite_uri, wait_until_up

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--window-size=1400,900", "--virtual-time-budget=20000"]


@pytest.fixture(scope="module")
def ui(smoke_store):
    """``make ui`` on a free port over the smoke store; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "ui", f"port={port}"], cwd=PROJECT_ROOT,
        env={**os.environ, "MLFLOW_TRACKING_URI": sqlite_uri(smoke_store)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/health", process)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_the_ui_serves_the_runs_over_its_rest_api(ui):
    experiment = api(ui, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=regbench")
    experiment_id = experiment["experiment"]["experiment_id"]
    found = api(ui, "/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]})
    names = {run["info"]["run_name"] for run in found["runs"]}
    assert names == {"none-mlp_bn-synthetic-s0", "l2-0.0001-mlp_bn-synthetic-s0",
                     "custom-0.0001-mlp_bn-synthetic-s0"}
    assert {run["info"]["status"] for run in found["runs"]} == {"FINISHED"}


def test_a_browser_sees_the_runs_on_the_experiment_runs_page(ui, tmp_path):
    chromium = shutil.which("chromium")
    require_tool(chromium is not None, "chromium")
    experiment = api(ui, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=regbench")
    page = f"{ui}/#/experiments/{experiment['experiment']['experiment_id']}/runs"
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, *profile, "--dump-dom", page],
                         capture_output=True, text=True, timeout=120).stdout
    assert "<strong>3</strong> matching runs" in dom
    for name in ("none-mlp_bn-synthetic-s0", "l2-0.0001-mlp_bn-synthetic-s0",
                 "custom-0.0001-mlp_bn-synthetic-s0"):
        assert name in dom
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "mlflow-ui-experiment.png"
    screenshot.unlink(missing_ok=True)
    subprocess.run([chromium, *CHROMIUM_FLAGS, *profile, f"--screenshot={screenshot}", page],
                   capture_output=True, timeout=120, check=True)
    assert screenshot.exists() and screenshot.stat().st_size > 10_000


def test_compare_over_rest_reads_what_it_reads_from_the_store_itself(ui, smoke_store, tmp_path):
    """Against a tracking server the curves are read run by run over REST; from the SQLite
    store in one SQL read: the report is the same (all but its first line, the command)."""
    from regbench.analysis import query
    from regbench.cli import compare

    reports = {}
    for name, uri in (("rest", ui), ("sql", sqlite_uri(smoke_store))):
        out = tmp_path / name
        assert compare.main(["--tracking-uri", uri, "--reference", "none", "--out", str(out),
                             "--no-log"]) == 0
        assert (query._sql_store() is None) == (name == "rest")
        reports[name] = (out / "comparison.md").read_text().split("\n", 1)[1]
    assert reports["rest"] == reports["sql"]
    assert "| l2-0.0001 | 1 | 0 |" in reports["rest"]
