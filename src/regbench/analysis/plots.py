"""Figures of many runs: a strength path per regularizer (the per-run figures, and the curve
bands and reliability diagrams a comparison draws, are ``regbench.run.plots``')."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from regbench.analysis.stats import mean_interval
from regbench.run.plots import save


def plot_strength_paths(points: dict, selections: dict, control: str, path: Path) -> Path:
    """One row per regularizer: best-epoch validation accuracy and test data loss against
    strength (log axis; mean over seeds with a 95% t band; the ``control`` arm as a horizontal
    band; the best strength marked o, the 1-SE strength x), and the penalty's share of the loss
    and of the gradient (log axis). ``points`` / ``selections`` are a path's
    (``regbench.design.path``: PathPoint, Selection)."""
    names = [name for name in points if name != control]
    figure, axes = plt.subplots(len(names), 3, figsize=(16, 3.6 * len(names)), squeeze=False)
    reference = points.get(control, [])
    for row, name in zip(axes, names, strict=True):
        path_ = points[name]
        strengths = [p.strength for p in path_]
        for axis, values_of, title in ((row[0], lambda p: p.val_accuracy, "val accuracy"),
                                       (row[1], lambda p: p.test_data_loss, "test data loss")):
            means = [float(np.mean(values_of(p))) for p in path_]
            bands = np.array([mean_interval(values_of(p)) for p in path_])
            axis.plot(strengths, means, "o-", label=name)
            axis.fill_between(strengths, bands[:, 0], bands[:, 1], alpha=0.2)
            if reference:
                values = values_of(reference[0])
                low, high = mean_interval(values)
                axis.axhline(float(np.mean(values)), color="grey", linestyle="--", label=control)
                if not np.isnan(low):
                    axis.axhspan(low, high, color="grey", alpha=0.15)
            if name in selections:
                chosen = selections[name]
                for point, marker, label in ((chosen.best, "o", "best"),
                                             (chosen.one_se, "x", "1-SE")):
                    axis.plot(point.strength, float(np.mean(values_of(point))), marker,
                              color="black", markersize=11, fillstyle="none", label=label)
            axis.set(xscale="log", xlabel="strength (regularizer.weight)", title=f"{name}: {title}")
            axis.grid(True)
            axis.legend(fontsize="small")
        shares = row[2]
        shares.plot(strengths, [max(p.loss_share, 1e-12) for p in path_], "s-", label="of loss")
        shares.plot(strengths, [max(p.gradient_share, 1e-12) for p in path_], "^-",
                    label="of gradient")
        shares.axhline(1.0, color="grey", linestyle=":")
        shares.set(xscale="log", yscale="log", xlabel="strength (regularizer.weight)",
                   title=f"{name}: penalty's share at the end of training")
        shares.grid(True)
        shares.legend(fontsize="small")
    figure.tight_layout()
    return save(figure, path)


def plot_sequential(panels: list[dict], path: Path) -> Path:
    """What a sequential verdict reads, one panel per comparison: the paired differences
    arm - reference per seed (dots, in seed order), the interval at each look it took (bars at
    the look's seeds; a look whose interval is unbounded is marked at the top), 0 and the
    margins (dashed). ``panels``: dicts of ``title``, ``differences`` (seed -> value),
    ``looks`` ((seeds, low, high) per look) and ``margin``."""
    columns = 2 if len(panels) > 1 else 1
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 3.6 * rows),
                                squeeze=False)
    for axis, panel in zip(axes.flat, panels, strict=False):
        seeds = sorted(panel["differences"])
        values = [panel["differences"][s] for s in seeds]
        axis.plot(range(1, len(seeds) + 1), values, "o", color="tab:blue", alpha=0.6,
                  label="difference per seed")
        margin = panel["margin"]
        axis.axhline(0.0, color="black", linewidth=0.8)
        for level in (-margin, margin):
            axis.axhline(level, color="tab:red", linestyle="--", linewidth=0.8)
        span = max([margin, *np.abs(values)]) * 1.6 if values else margin * 1.6
        for seeds_at, low, high in panel["looks"]:
            if np.isfinite(low) and np.isfinite(high):
                axis.plot([seeds_at, seeds_at], [max(low, -span), min(high, span)],
                          color="tab:green", linewidth=2.5)
            else:
                axis.plot([seeds_at], [span * 0.95], "^", color="tab:green")
        axis.set_ylim(-span, span)
        axis.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        axis.set(title=panel["title"], xlabel="seeds (in seed order)", ylabel="arm - reference")
        axis.grid(True, alpha=0.3)
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    axes.flat[0].legend(fontsize="small", loc="lower left")
    figure.tight_layout()
    return save(figure, path)
