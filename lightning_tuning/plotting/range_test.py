"""The LR range test's figure: loss against LR (log axis), raw and smoothed, with the suggestions marked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lightning_tuning.plotting._figure import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: room left above and below the useful range, as a fraction of it
MARGIN = 0.08


def useful_range(losses: Sequence[float], smoothed: Sequence[float]) -> tuple[float, float]:
    """The y-range that shows the fall: from below the lowest loss up to the smoothed loss's highest point before its
    minimum. The divergence spike after the minimum is clipped (it would squash the fall into a flat line)."""
    if not smoothed:
        return 0.0, 1.0
    bottom = min(range(len(smoothed)), key=smoothed.__getitem__)
    high = max(smoothed[: bottom + 1])
    low = min(min(losses[: bottom + 1]), smoothed[bottom])
    span = high - low or abs(high) or 1.0
    return low - MARGIN * span, high + MARGIN * span


def range_test_figure(results: dict[str, Any]) -> Figure:
    """The figure of a range test's ``results`` (``LRRangeTest.results``).

    Raises:
        MatplotlibMissing: matplotlib is not installed.
    """
    figure = new_figure(7, 4, "The LR range test's plot")
    # fixed margins: tight_layout would cost a second layout pass
    figure.subplots_adjust(left=0.1, right=0.97, bottom=0.13, top=0.92)
    axis = figure.add_subplot()
    axis.plot(results["lrs"], results["losses"], alpha=0.3, label="loss")
    axis.plot(results["lrs"], results["smoothed"], label="smoothed loss")
    colors = ("tab:red", "tab:green", "tab:purple")
    for (name, lr), color in zip(results["suggestions"].items(), colors, strict=False):
        used = " (used)" if name == results.get("used") else ""
        axis.axvline(lr, color=color, linestyle="--", label=f"{name}: {lr:.3g}{used}")
    axis.set_xscale("log")
    axis.set_ylim(*useful_range(results["losses"], results["smoothed"]))
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss (divergence clipped)")
    title = "LR range test" if results.get("chosen") is not None else "LR range test: no clear fall, no suggestion"
    axis.set_title(title)
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)
    return figure
