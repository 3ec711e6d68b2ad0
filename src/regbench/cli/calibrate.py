"""``regbench calibrate PRESET``: calibrate every built-in option on PRESET (the probes logged
in its experiment) and write reports/PRESET/calibration.md; for a preset that pins its grids,
the pinned grid beside the calibrated one, with the pinned points whose path runs (if in the
store) were identical to none (``regbench.design.calibrate``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from regbench.cli import common, options
from regbench.locations import REPORTS_DIR, write_whole

with common.collector_paused():
    from regbench.analysis.report import provenance
    from regbench.design import calibrate, path, presets
    from regbench.errors import CompareError
    from regbench.run import identity, store
    from regbench.run.tracking import config_hash, git_commit


def parser() -> argparse.ArgumentParser:
    parser = common.ArgumentParser(prog="regbench calibrate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=presets.path_presets())
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--out", type=Path, default=None, help="default: reports/<preset>")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every probe")
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_intermixed_args(argv)
    extra = (*args.overrides, *options.store_override(args.tracking_uri))
    experiment = options.experiment_or_exit(args.preset, extra)  # where the probes are logged
    pinned = presets.PINNED_GRIDS.get(args.preset, {})  # shown beside, as pinned for the preset
    calibrations, shares = [], {}
    for option in presets.default_options(args.preset):
        cfg = presets.probe_config(args.preset, option, extra)
        experiment_id = store.use_store(args.tracking_uri, experiment)
        calibration, shares[option] = calibrate.probe(cfg, args.preset, pinned.get(option, ()))
        calibrate.log(calibration, experiment_id, config_hash(cfg),
                      identity.of_config(cfg).tags())
        calibrations.append(calibration)
    no_ops, runs = {}, None
    try:
        recorded = path.read_path(experiment)
        runs = recorded.runs
        no_ops = path.identical_to_control(recorded)
    except (CompareError, KeyError):
        pass  # no path trained yet: nothing to mark
    command = common.command_line("calibrate", argv)
    header = (provenance(command, git_commit(), runs) if runs is not None else
              f"Written by `{command}` at commit {git_commit()}; no path trained yet.\n\n")
    text = header + calibrate.markdown(calibrations) + ("\n" + calibrate.pinned_markdown(
        calibrations, pinned, shares, no_ops) if pinned else "")
    out = (args.out or REPORTS_DIR / experiment) / "calibration.md"
    write_whole(out, text)
    print(text, end="")
    return 0
