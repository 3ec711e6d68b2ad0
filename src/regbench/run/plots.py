"""PNG figures (matplotlib, Agg backend) for one run or for several arms of runs.

An arm's curve of one metric is a CurveBand: by epoch, the mean over its runs with a min-max
band when it has several runs.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from regbench.run.metrics import ReliabilityBins  # noqa: E402

PANELS = (
    ("Total loss (penalty included)", "loss"),
    ("Data loss (cross-entropy)", "data_loss"),
    ("Accuracy", "accuracy"),
)


@dataclass(frozen=True)
class CurveBand:
    """One metric of an arm of ``runs`` runs, by epoch (index e is epoch e + 1): ``mean``,
    ``low`` and ``high`` are the mean, minimum and maximum of the values the runs logged at that
    epoch, NaN values left out (NaN where no run has a value there)."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    runs: int

    @classmethod
    def of_runs(cls, series: list[list[float]]) -> "CurveBand":
        """The band of runs given as their values by epoch (runs may stop at different
        epochs)."""
        longest = max(len(s) for s in series)
        padded = np.array([list(s) + [np.nan] * (longest - len(s)) for s in series],
                          dtype=float)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an epoch where every value is NaN
            return cls(np.nanmean(padded, axis=0), np.nanmin(padded, axis=0),
                       np.nanmax(padded, axis=0), len(series))


def _draw(axis, band: CurveBand, color, style, label):
    epochs = np.arange(1, len(band.mean) + 1)
    axis.plot(epochs, band.mean, style, color=color, label=label)
    if band.runs > 1:
        axis.fill_between(epochs, band.low, band.high, color=color, alpha=0.15)


def plot_learning_curves(curves: dict[str, dict[str, CurveBand]], path: Path) -> Path:
    """Train (solid) and validation (dashed) curves of each arm (arm -> metric -> band), one
    panel per PANELS entry."""
    figure, axes = plt.subplots(1, len(PANELS), figsize=(6 * len(PANELS), 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (title, metric), axis in zip(PANELS, axes, strict=True):
        for index, (arm, metrics) in enumerate(curves.items()):
            color = colors[index % len(colors)]
            for prefix, style, split_name in (("", "-", "train"), ("val_", "--", "val")):
                if prefix + metric in metrics:
                    _draw(axis, metrics[prefix + metric], color, style, f"{arm} {split_name}")
        axis.set(title=title, xlabel="Epoch")
        axis.grid(True)
        axis.legend(fontsize="small")
    figure.tight_layout()
    return save(figure, path)


def plot_reliability(bins_by_arm: dict[str, ReliabilityBins], path: Path) -> Path:
    """Accuracy against confidence per bin (the diagonal: perfectly reliable), ECE in the legend."""
    figure, axis = plt.subplots(figsize=(5.5, 5.5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly reliable")
    for arm, bins in bins_by_arm.items():
        filled = bins.counts > 0
        axis.plot(bins.confidence[filled], bins.accuracy[filled], "o-",
                  label=f"{arm} (ECE {bins.ece:.4f})")
    axis.set(title="Reliability diagram", xlabel="Confidence", ylabel="Accuracy",
             xlim=(0, 1), ylim=(0, 1))
    axis.grid(True)
    axis.legend(fontsize="small")
    return save(figure, path)


def plot_per_seed(values: dict[str, dict[int, float]], metric: str, path: Path) -> Path:
    """One point per run (x: seed), one series per arm."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for arm, by_seed in values.items():
        seeds = sorted(by_seed)
        axis.plot(seeds, [by_seed[s] for s in seeds], "o", label=arm)
    axis.set(title=f"{metric} per seed", xlabel="seed", ylabel=metric)
    axis.grid(True)
    axis.legend(fontsize="small")
    return save(figure, path)


def save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
