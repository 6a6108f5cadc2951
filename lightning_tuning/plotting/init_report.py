"""Per-layer init diagnostics as one figure and one table: weight std, output std, gradient std and the fraction of
dead ReLU units against layer index, so layers can be compared side by side (issue 16).

Drawn on a bare Agg figure (:func:`~lightning_tuning.plotting.new_figure`); matplotlib is imported only here, when a
figure is asked for. The table is plain Markdown (TensorBoard's Text tab renders it) and needs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lightning_tuning.init.report import LayerStats
from lightning_tuning.plotting._figure import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: (attribute, panel title, log scale)
PANELS = (
    ("weight_std", "weight std", True),
    ("act_std", "output std", True),
    ("grad_std", "gradient std", True),
    ("dead_frac", "dead ReLU fraction", False),
)


def _cell(value: float, percent: bool = False) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.0%}" if percent else f"{value:.3g}"


def init_report_markdown(stats: Sequence[LayerStats]) -> str:
    """One Markdown row per layer: index, name, type, activation after it, and the four statistics."""
    lines = [
        "| # | layer | type | act | weight std | out mean | out std | grad std | dead |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for index, s in enumerate(stats):
        lines.append(
            f"| {index} | {s.layer} | {s.kind} | {s.activation} | {_cell(s.weight_std)} | {_cell(s.act_mean)}"
            f" | {_cell(s.act_std)} | {_cell(s.grad_std)} | {_cell(s.dead_frac, percent=True)} |"
        )
    return "\n".join(lines)


def init_report_figure(stats: Sequence[LayerStats], title: str = "Init report") -> Figure:
    """Four panels against layer index (x tick labels are the layer names); NaN values are left out.

    Raises:
        MatplotlibMissing: matplotlib is not installed; the message says how to install it.
    """
    count = len(stats)
    figure = new_figure(max(8.0, 0.35 * count + 4.0), 7.0, "The init report figure")
    axes = figure.subplots(2, 2, sharex=True).flatten()
    index = list(range(count))
    for ax, (attribute, label, log) in zip(axes, PANELS, strict=True):
        points = [(i, getattr(s, attribute)) for i, s in zip(index, stats, strict=True)]
        points = [(i, v) for i, v in points if not math.isnan(v) and (not log or v > 0)]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", linewidth=1.2)
        if log and points:
            ax.set_yscale("log")
        if attribute == "act_std":
            ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        if attribute == "dead_frac":
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
    for ax in axes[2:]:
        ax.set_xticks(index)
        ax.set_xticklabels([s.layer for s in stats], rotation=90, fontsize=7)
        ax.set_xlabel("layer (execution order)")
    figure.suptitle(title)
    figure.tight_layout()
    return figure
