"""Processes: signals that unwind like Ctrl-C, child commands run one after another, a quiet
TensorFlow start-up. The commands (``regbench.cli``) and the library both use it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_INTERRUPTED = 130

# TensorFlow's C++ start-up lines on a CPU-only machine. They are written by absl before its log
# is initialised, so TF_CPP_MIN_LOG_LEVEL does not reach them (tried: TF_CPP_MIN_LOG_LEVEL=3,
# ABSL_MIN_LOG_LEVEL, GLOG_minloglevel, CUDA_VISIBLE_DEVICES=-1 in TensorFlow 2.21).
TENSORFLOW_STARTUP_LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 ", "W0000 ", "E0000 ", "To enable the following instructions:",
)


INTERRUPTS = (signal.SIGINT, signal.SIGTERM)
_requested: list[str] = []  # the signal that asked the current block to stop, once one has
_open_blocks: list[None] = []  # one per signals_as_interrupt block open (a sweep's, its job's)


def _raise_interrupt(signum, frame):
    for other in INTERRUPTS:  # the process is on its way out: nothing may cut that short
        signal.signal(other, signal.SIG_IGN)
    _requested.append(f"signal {signal.Signals(signum).name}")
    raise KeyboardInterrupt(_requested[0])


def interrupt_requested() -> str | None:
    """``"signal SIGINT"`` or ``"signal SIGTERM"`` once one has arrived inside the
    ``signals_as_interrupt`` blocks open now, else None. The KeyboardInterrupt the signal
    raises can be lost: it is raised in whatever code runs at that moment, and a ``__del__``
    with a bare ``except`` swallows it without a word (TensorFlow's
    ``ConcreteFunctionGarbageCollector.__del__`` does); so a long loop asks this at its safe
    points and raises again."""
    return _requested[0] if _requested else None


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """The first SIGINT or SIGTERM inside the block raises KeyboardInterrupt and is recorded
    (``interrupt_requested``), so that both unwind like Ctrl-C (also in a process started in
    the background, where the shell leaves SIGINT ignored). From then on both are ignored until
    the process exits: a second Ctrl-C cannot interrupt the closing of the run or the exit.
    Without a signal, the previous handlers come back afterwards. Blocks nest (a sweep's, then
    each job's): a block opened inside one that a signal has already asked to stop raises that
    KeyboardInterrupt at once, so an interrupt lost where it landed still keeps the next job
    from starting. The request is forgotten when the outermost block ends."""
    if _requested:
        raise KeyboardInterrupt(_requested[0])
    _open_blocks.append(None)
    previous = {signum: signal.signal(signum, _raise_interrupt) for signum in INTERRUPTS}
    try:
        yield
    finally:
        _open_blocks.pop()
        if not _open_blocks:
            _requested.clear()
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


@contextmanager
def signals_held():
    """SIGINT and SIGTERM arriving while the block runs are held, then delivered to the
    handlers that were in place, once each, after it: for code that closes a run and must not
    be cut short. (Blocking them with ``pthread_sigmask`` would not hold them: in a process with
    other threads, TensorFlow's or MLflow's, the kernel hands the signal to one of those and
    Python runs the handler in the main thread all the same.) A no-op outside the main thread,
    where handlers cannot be changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: held.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)


ORPHAN_CHECK_SECONDS = 1.0  # how often a worker checks that the process that started it lives
ORPHAN_GRACE_SECONDS = 60.0  # how long an orphan's job may take to close its run
ORPHAN_SAFE_POINT_SECONDS = 5.0  # how long it has to reach a safe point before a signal
ORPHANED = "its command is gone"  # the reason an orphan's job stops (interrupt_requested)
_watching: list[int] = []  # the parent watched, once stop_with_parent has started


def _wait_for_blocks(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while _open_blocks and time.monotonic() < deadline:
        time.sleep(0.2)


def _watch_parent(parent: int) -> None:
    """Once ``parent`` is gone: ask a job under way to stop at its next safe point (the start
    of a batch, ``callbacks.StopWhenRequested``), where unwinding cannot cut the code that
    logs an epoch short and leave a lock of the store's held for the closing of the run; if
    none comes within ORPHAN_SAFE_POINT_SECONDS (the job is not in a training loop), SIGTERM
    interrupts it where it is; either way the job closes its run KILLED. Then the process
    ends, after ORPHAN_GRACE_SECONDS at most."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    if _open_blocks:
        _requested.append(ORPHANED)
        _wait_for_blocks(ORPHAN_SAFE_POINT_SECONDS)
    if _open_blocks:
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_for_blocks(ORPHAN_GRACE_SECONDS)
    os._exit(128 + signal.SIGTERM)  # then the process ends, whatever ignores signals now


def stop_with_parent(parent: int | None = None) -> None:
    """Send this process SIGTERM once ``parent`` (default: its parent now) is gone, checked
    every ORPHAN_CHECK_SECONDS by a daemon thread started once per process, then end it once
    no ``signals_as_interrupt`` block is open (at most ORPHAN_GRACE_SECONDS later): a worker
    whose command was killed (kill -9) stops its job KILLED and exits, instead of training on
    as an orphan or idling forever."""
    if _watching:
        return
    _watching.append(os.getppid() if parent is None else parent)
    threading.Thread(target=_watch_parent, args=(_watching[0],), daemon=True,
                     name="regbench-parent-watch").start()


def run_commands(commands: list[list[str]]) -> int:
    """Run the commands one after another; the worst exit code (a command ended by signal N
    counts as 128 + N, as a shell says). A Ctrl-C or SIGTERM stops at once: the running command
    is sent SIGINT, as a terminal's Ctrl-C would (a multirun then closes its runs KILLED), and
    is waited for; EXIT_INTERRUPTED. So does a command that was interrupted itself."""
    worst = 0
    with signals_as_interrupt():  # after the first signal, both are ignored here
        for command in commands:
            process = subprocess.Popen(command)
            try:
                code = process.wait()
            except KeyboardInterrupt:
                process.send_signal(signal.SIGINT)
                process.wait()
                return EXIT_INTERRUPTED
            if code < 0:  # ended by a signal: the shell's 128 + its number
                code = 128 - code
            if code in (EXIT_INTERRUPTED, 128 + signal.SIGTERM):
                return EXIT_INTERRUPTED
            worst = max(worst, code)
    return worst


def set_tensorflow_threads(threads: int | None) -> None:
    """TensorFlow's intra- and inter-op thread counts, when ``threads`` is given. They are
    process-wide and fixed by TensorFlow's first op: a process that already ran one (a reused
    worker) keeps the counts it has."""
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # fixed by an op already run
        pass


def import_tensorflow_quietly(threads: int | None = None) -> None:
    """Import TensorFlow with its C++ start-up lines (TENSORFLOW_STARTUP_LINES) left out of
    stderr; anything else it prints is passed on; ``threads``: its intra- and inter-op thread
    counts, set before its first op fixes them. No-op once TensorFlow is imported.

    Nothing cleaner silences them in TensorFlow 2.21: they are printed from C++ while the
    library loads, so this captures file descriptor 2 for the duration of the import.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow

            set_tensorflow_threads(threads)
            tensorflow.constant(0)  # the first op initialises the devices (and their logs)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if not line.startswith(TENSORFLOW_STARTUP_LINES):
                    sys.stderr.write(line)
    tensorflow.get_logger().addFilter(_NotRetracing())


class _NotRetracing(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls to <function ...> triggered tf.function
    retracing" warning. Its detector counts traces per Python function's code object over the
    whole process, and Keras makes each model's train, test and predict functions from one
    closure: a process that trains its fifth model (a worker of a multirun or of the pool),
    each function traced once per input shape, is told it retraces too often."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()
