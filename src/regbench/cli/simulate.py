"""``regbench simulate``: the sequential design's error rates and seeds, from simulated studies
(no runs), written to reports/sequential-design/simulation.md (``regbench.design.simulation``)."""

from __future__ import annotations

from pathlib import Path

from regbench.cli import common
from regbench.design.simulation import REPORT, table
from regbench.locations import write_whole
from regbench.run.tracking import git_commit


def main(argv: list[str]) -> int:
    parser = common.ArgumentParser(prog="regbench simulate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    write_whole(args.out, f"Written by `{common.command_line('simulate', argv)}` at commit "
                f"{git_commit()}, from simulated studies (no runs).\n\n" + table())
    print(args.out.read_text(), end="")
    return 0
