"""The options the study commands share (path tuned, study, verdict): the rounds of seeds, what
a resumed command does with runs of other code, the store, and the Hydra overrides of every
job."""

from __future__ import annotations

import argparse

from omegaconf import DictConfig

from regbench.cli import common
from regbench.config import registry
from regbench.config.overrides import composed_jobs
from regbench.design import presets, sequential
from regbench.errors import ConfigError


def add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    """--design, --first, --step, --max-seeds: the plan of looks (``sequential.Schedule``)."""
    parser.add_argument("--design", choices=sequential.DESIGNS,
                        default=sequential.GROUP_SEQUENTIAL,
                        help="group-sequential (default: error spent over the planned looks, "
                        "up to the budget) or anytime (any looks, past the budget too, fewer "
                        "decisions)")
    parser.add_argument("--first", type=int, default=None,
                        help="seeds per arm at the first look (default: the first that can "
                        "decide anything with the study's comparisons)")
    parser.add_argument("--step", type=int, default=sequential.ROUND, dest="seeds_per_round",
                        help="seeds per arm added at each later look")
    parser.add_argument("--max-seeds", type=int, default=sequential.MAX_SEEDS,
                        help="the budget: seeds per arm at the last look; the group-sequential "
                        "design spends its error rate by it, so fix it before the first look")
    parser.add_argument("--any-budget", action="store_true",
                        help="accept a budget below the first look that can decide anything "
                        "(a check of the plumbing: every comparison ends inconclusive)")


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """--reuse-stale, --tracking-uri and the Hydra overrides of every job."""
    parser.add_argument("--reuse-stale", action="store_true",
                        help="reuse and analyse FINISHED runs trained by other code (another "
                        "code identity, or none recorded) instead of training them again; the "
                        "report names each identity")
    parser.add_argument("--tracking-uri", default=None,
                        help="default: $MLFLOW_TRACKING_URI, else the project's SQLite store")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")


def job_overrides(args: argparse.Namespace) -> tuple[str, ...]:
    """The Hydra overrides of every job of ``add_job_arguments``' options: the command line's,
    ``reuse_stale=true`` and the store."""
    return (*args.overrides, *(["reuse_stale=true"] if args.reuse_stale else []),
            *store_override(args.tracking_uri))


def store_override(tracking_uri: str | None) -> list[str]:
    """The Hydra override that sends a job to ``--tracking-uri``'s store (none without one)."""
    return [f"mlflow.tracking_uri={tracking_uri}"] if tracking_uri else []


def schedule_from(args: argparse.Namespace, family: int) -> sequential.Schedule:
    """The schedule of ``add_schedule_arguments``' options for a study of ``family``
    comparisons; a bad one, or a budget below the first look that can decide anything
    (``sequential.first_decisive_seeds``) unless ``--any-budget``, is one line, exit 2,
    before anything trains."""
    needed = sequential.first_decisive_seeds(family, args.design)
    first = args.first if args.first is not None else min(needed, args.max_seeds)
    try:
        schedule = sequential.Schedule(first, args.seeds_per_round, args.max_seeds, args.design)
    except ValueError as error:
        common.fail(str(error))
    if schedule.max_seeds < needed and not args.any_budget:
        common.fail(f"--max-seeds {schedule.max_seeds}: with {family} comparisons nothing can "
                    f"be decided below {needed} seeds per arm; give --max-seeds {needed} or "
                    "more (--any-budget: a check of the plumbing)")
    return schedule


def options_list(text: str) -> list[str]:
    """``--regularizers a,b``: registered options with a penalty (argparse type)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        try:
            option = registry.get(name)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if option.target is None:
            raise argparse.ArgumentTypeError(f"{name}: the control arm, which every path trains")
    return names


def composed_or_exit(*arguments: str) -> list[DictConfig]:
    """Every job ``regbench train ARGUMENTS`` would run, composed and validated before a study
    trains anything or makes a folder (``overrides.composed_jobs``); a bad override, option or
    value is one line, exit 2."""
    try:
        return composed_jobs(list(arguments))[0]
    except ConfigError as error:
        common.fail(str(error))


def experiment_or_exit(preset: str, extra: tuple[str, ...]) -> str:
    """The experiment of a path of ``preset`` under ``extra`` (``presets.experiment_name``),
    the overrides checked first (``composed_or_exit``)."""
    return presets.experiment_of(preset, composed_or_exit(f"experiment={preset}", *extra)[0])


def margins_or_exit(*arguments: str) -> dict[str, float]:
    """The margins (``margins``) of the jobs of ``regbench train ARGUMENTS``: the preset's,
    stated in its config before the data."""
    margins = composed_or_exit(*arguments)[0].margins
    return {key: float(value) for key, value in margins.items()}


def options_or_exit(preset: str, names: tuple[str, ...], extra: tuple[str, ...]) -> None:
    """A path's jobs on ``preset`` composed for each option of ``names`` and for ``none``
    (``composed_or_exit``) before it calibrates or trains any."""
    for name in (*names, presets.CONTROL):
        composed_or_exit(f"experiment={preset}", f"regularizer={name}", *extra)
