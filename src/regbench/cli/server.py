"""``make server`` (``regbench server``): a shared tracking server on this machine.

Starts Debian's PostgreSQL on loopback with its data under ``<dir>/pgdata`` (default
``mlruns/server``) (created with initdb
on first use), then ``mlflow server`` with that database as its backend store and artifacts
served by the server from ``<dir>/artifacts``. Point any client at it with
``MLFLOW_TRACKING_URI=http://127.0.0.1:<port>``. Ctrl-C or SIGTERM stops both.
PostgreSQL refuses to run as root, so as root its commands run as the ``postgres`` user.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from regbench.cli import common
from regbench.cli.mlflow_tools import mlflow_command
from regbench.locations import MLRUNS_DIR

DATABASE = "regbench"


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin (Debian's layout)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if not versions:
        raise SystemExit("error: PostgreSQL is not installed: apt-get install postgresql")
    return versions[-1].parent


def as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def start_postgres(folder: Path, port: int) -> Path:
    """initdb (first time), start on 127.0.0.1:port, create the database; return the data dir."""
    binaries, data = postgres_bin(), folder / "pgdata"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    if not (data / "PG_VERSION").exists():
        subprocess.run(as_postgres([str(binaries / "initdb"), "-D", str(data), "-U", "postgres",
                                    "--auth=trust", "-E", "UTF8"]), check=True,
                       stdout=subprocess.DEVNULL)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}"
    subprocess.run(as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-w",
                                "-l", str(folder / "postgres.log"), "start"]), check=True,
                   stdout=subprocess.DEVNULL)
    exists = subprocess.run(as_postgres([str(binaries / "psql"), "-h", "127.0.0.1", "-p", str(port),
                                         "-U", "postgres", "-tAc",
                                         f"SELECT 1 FROM pg_database WHERE datname='{DATABASE}'"]),
                            capture_output=True, text=True, check=True).stdout.strip()
    if exists != "1":
        subprocess.run(as_postgres([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                                    "-U", "postgres", DATABASE]), check=True)
    return data


def stop_postgres(data: Path) -> None:
    subprocess.run(as_postgres([str(postgres_bin() / "pg_ctl"), "-D", str(data), "-m", "fast",
                                "-w", "stop"]), stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = common.ArgumentParser(prog="regbench server", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000, help="MLflow server port")
    parser.add_argument("--pg-port", type=int, default=54329, help="PostgreSQL port")
    parser.add_argument("--dir", type=Path, default=MLRUNS_DIR / "server",
                        help="where PostgreSQL's data and the artifacts live")
    args = parser.parse_args(argv)
    folder = args.dir.absolute()
    data = start_postgres(folder, args.pg_port)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    mlflow = Path(mlflow_command())
    command = [str(mlflow), "server",
               "--backend-store-uri",
               f"postgresql+psycopg2://postgres@127.0.0.1:{args.pg_port}/{DATABASE}",
               "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts",
               "--host", "127.0.0.1", "--port", str(args.port)]
    print(f"tracking server on http://127.0.0.1:{args.port} (PostgreSQL on 127.0.0.1:"
          f"{args.pg_port}, data in {folder})", flush=True)
    server = subprocess.Popen(command, env={**os.environ,
                                            "PATH": f"{mlflow.parent}:{os.environ['PATH']}"})
    try:
        return server.wait()
    finally:
        try:
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        finally:
            stop_postgres(data)

