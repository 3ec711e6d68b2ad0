"""``regbench <command> [arguments]``: the one command line of regbench.

Each command is a module of ``regbench.cli`` with ``main(argv) -> exit code``; only the one
asked for is imported, so ``regbench --help`` and a mistyped command answer at once. ``train``
keeps every Hydra feature (``-m``, ``--cfg job``, overrides); ``sweep`` is ``train -m`` on the
pool of workers; ``tuned`` is ``path tuned``. argparse (the standard library's) parses the
command's name and prints the list; each command parses its own arguments, so Hydra's grammar
reaches ``train`` untouched (a wrapping CLI library would parse or reject its ``key=value``
words)."""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

from regbench.cli import common


@dataclass(frozen=True)
class Command:
    summary: str
    entry: str  # "module:function" in regbench.cli
    prefix: tuple[str, ...] = ()  # arguments put before the user's


COMMANDS = {
    "train": Command("train one run, or a multirun with -m (Hydra overrides: key=value)",
                     "train:main"),
    "sweep": Command("a multirun grid on a pool of workers, e.g. regularizer=l2,custom "
                     "seed=0,1,2", "train:sweep_main"),
    "compare": Command("the comparison of an experiment's arms, with its uncertainty",
                       "compare:main"),
    "path": Command("a strength path: run|report|tuned PRESET", "path:main"),
    "tuned": Command("the path's selections against none on fresh seeds, in rounds",
                     "path:main", ("tuned",)),
    "study": Command("a preset's arms on fresh seeds, in rounds until decided", "study:main"),
    "calibrate": Command("calibrate every built-in option's strength grid on a preset",
                         "calibrate:main"),
    "verdict": Command("one regularizer from its class to a verdict against none and l2",
                       "verdict:main"),
    "runs": Command("list the runs; --stale --mark-killed ends runs whose process is gone",
                    "runs:main"),
    "data": Command("provide data/mnist.npz", "data:main"),
    "predict": Command("classify an image with a run's model", "predict:main"),
    "serve": Command("serve a run's model over HTTP (MLflow's model server)",
                     "mlflow_tools:serve"),
    "ui": Command("the MLflow UI over the same store", "mlflow_tools:ui"),
    "server": Command("a shared tracking server: PostgreSQL and mlflow server", "server:main"),
    "simulate": Command("the sequential design's error rates, from simulated studies",
                        "simulate:main"),
    "identities": Command("the training code's fingerprint at each published report's commit",
                          "identities:main"),
}


def parser() -> argparse.ArgumentParser:
    parser = common.ArgumentParser(
        prog=common.PROGRAM, description="Compare regularizers for neural networks, recorded "
        "in MLflow.", epilog=f"'{common.PROGRAM} <command> --help' shows a command's options.")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name, command in COMMANDS.items():
        commands.add_parser(name, help=command.summary, add_help=False)
    return parser


def dispatch(argv: list[str]) -> int:
    """Run ``argv[0]``'s command on the rest of ``argv``; its exit code."""
    parser().parse_args(argv[:1])  # an unknown or missing command: argparse's usage, exit 2
    command = COMMANDS[argv[0]]
    module, _, function = command.entry.partition(":")
    main = getattr(importlib.import_module(f"regbench.cli.{module}"), function)
    return main([*command.prefix, *argv[1:]])


def main() -> None:
    """The console script ``regbench``."""
    common.interrupts_in_one_line()
    common.run(lambda: dispatch(sys.argv[1:]))
