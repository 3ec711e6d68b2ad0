"""What every ``regbench`` command shares: errors as one line with an exit code, Ctrl-C as one
line, the command line a report names, and quick imports. Only ``regbench.cli`` uses it."""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from regbench.processes import EXIT_INTERRUPTED

EXIT_BAD_INPUT = 2
PROGRAM = "regbench"


def command_line(command: str, argv: list[str]) -> str:
    """The command a tool was run as, to be written into what it produces:
    ``regbench <command> <argv>``, quoted as a shell would need it."""
    return shlex.join([PROGRAM, command, *argv])


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print ``error: <message>`` (one line) to stderr and exit with ``code``."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(code)


@contextmanager
def collector_paused() -> Iterator[None]:
    """For a command's imports of large libraries (MLflow, SQLAlchemy, pandas, scipy,
    matplotlib): the cycle collector is off inside the block; on leaving it, every object made
    so far is frozen into the permanent generation (``gc.freeze``) and the collector is on
    again. Imports make hundreds of thousands of long-lived objects and almost no cyclic
    garbage, yet every full collection walks all of them; frozen, no later collection does
    (``make bench`` times compare with and without it)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def interrupted_line(interrupt: BaseException) -> str:
    """The one line a command prints when a signal or Ctrl-C stops it."""
    return f"interrupted ({str(interrupt) or 'Ctrl-C'})"


def interrupts_in_one_line() -> None:
    """Call first in a command's ``__main__``: a Ctrl-C that reaches the top of the program
    before ``run`` catches it (during the command's imports, when nothing is open yet) prints
    ``interrupted (Ctrl-C)`` instead of a traceback and exits EXIT_INTERRUPTED at once."""
    previous = sys.excepthook

    def hook(kind, value, traceback):
        if not issubclass(kind, KeyboardInterrupt):
            previous(kind, value, traceback)
            return
        print(interrupted_line(value), file=sys.stderr, flush=True)
        os._exit(EXIT_INTERRUPTED)

    sys.excepthook = hook


def run(main: Callable[[], int]) -> None:
    """Exit with ``main()``'s code (``exit_skipping_final_collection``); a Ctrl-C inside it
    prints one line and exits EXIT_INTERRUPTED."""
    try:
        code = main()
    except KeyboardInterrupt as interrupt:
        print(interrupted_line(interrupt), file=sys.stderr)
        code = EXIT_INTERRUPTED
    exit_skipping_final_collection(code)


def exit_skipping_final_collection(code: int) -> None:
    """``sys.exit(code)`` without the interpreter's cycle collections at exit over every live
    object (``gc.freeze`` first): for a short command whose files and runs are closed by now,
    those collections only cost time. atexit handlers (MLflow's among them) still run."""
    gc.freeze()
    sys.exit(code)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose refusals are one line, ``error: <prog>: <message>``, exit 2
    (argparse's own prints its usage first); ``--help`` is argparse's, whole."""

    def error(self, message: str) -> None:
        fail(f"{self.prog}: {message}")
