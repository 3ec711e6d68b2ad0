"""`make server`: PostgreSQL-backed MLflow server on loopback; a sweep logs there over HTTP."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers import PROJECT_ROOT, api, free_port, require_tool, run_command, wait_until_up

HAVE_POSTGRES = any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


@pytest.fixture(scope="module")
def server():
    require_tool(HAVE_POSTGRES, "postgresql")
    folder = Path(tempfile.mkdtemp(prefix="regbench-server-"))
    folder.chmod(0o755)  # PostgreSQL runs as its own user
    port, pg_port = free_port(), free_port()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "server", f"port={port}", f"pg_port={pg_port}",
         f"ARGS=--dir {folder}"], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/health", process, timeout=180)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        # make exits at once; regbench.cli.server then stops PostgreSQL, which may take a moment
        pid_file = folder / "pgdata" / "postmaster.pid"
        deadline = time.monotonic() + 60
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not pid_file.exists(), "PostgreSQL was not stopped"
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.long
def test_a_sweep_logs_to_the_server_and_reads_back_over_http(server, tmp_path):
    result = run_command(
        "train", "-m", "data=synthetic", "trainer=smoke", "model=mlp_small", "seed=0,1",
        f"hydra.sweep.dir={tmp_path / 'multirun'}", cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": server})
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = api(server, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=regbench")
    found = api(server, "/api/2.0/mlflow/runs/search",
                {"experiment_ids": [experiment["experiment"]["experiment_id"]]})["runs"]
    tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in found]
    parents = [run for run, t in zip(found, tags, strict=True) if t.get("sweep") == "parent"]
    children = [run for run, t in zip(found, tags, strict=True)
                if t.get("mlflow.parentRunId") == parents[0]["info"]["run_id"]]
    assert len(parents) == 1 and len(children) == 2
    assert {run["info"]["status"] for run in found} == {"FINISHED"}
    child = children[0]["info"]["run_id"]
    listed = api(server, f"/api/2.0/mlflow/artifacts/list?run_id={child}")
    assert "config.yaml" in {f["path"] for f in listed["files"]}
