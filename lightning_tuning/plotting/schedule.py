"""The schedule figure: planned LR (and momentum, where it moves) of every param group against optimizer steps.

Drawn on a bare Agg figure from :func:`lightning_tuning.plotting.new_figure` (no pyplot, no backend change); the
curves are a ``{name: values}`` mapping with one value per optimizer step, e.g. the coordinator's
``planned_curves(trainer)`` (``lr-SGD``, ``lr-SGD/pg2``, ``lr-SGD-momentum``) or the preview's columns
(``lr/SGD/pg0``, ``momentum/SGD/pg0``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from lightning_tuning.plotting._figure import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def is_momentum(name: str) -> bool:
    """Whether a curve name is a momentum (``lr-SGD-momentum``, ``momentum/SGD/pg0``) rather than an LR."""
    return name.endswith("-momentum") or name.startswith("momentum/")


def _label(name: str) -> str:
    for prefix in ("lr_planned/", "lr/", "momentum/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name.removesuffix("-momentum")


def schedule_figure(
    curves: Mapping[str, Sequence[float]],
    steps_per_epoch: int | None = None,
    title: str = "lightning_tuning schedule preview",
) -> Figure:
    """LR per param group on top, momentum / beta1 (if any curve has one) below, against the optimizer step.

    Args:
        curves: one value per optimizer step for each curve, keyed by name.
        steps_per_epoch: draw a faint line at every epoch boundary (left out when there would be more than 50).
        title: the figure's title.

    Raises:
        MatplotlibMissing: matplotlib is not installed; the message says how to install it.

    Example::

        >>> from lightning_tuning.plotting.schedule import schedule_figure
        >>> figure = schedule_figure({"lr-SGD": [0.01 * step for step in range(10)]})  # doctest: +SKIP
    """
    lrs = {name: values for name, values in curves.items() if not is_momentum(name)}
    momenta = {name: values for name, values in curves.items() if is_momentum(name)}
    rows = 2 if momenta else 1
    figure = new_figure(8, 3.2 * rows, what="The schedule figure")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    panels = [(axes[0], lrs, "learning rate")]
    if momenta:
        panels.append((axes[1], momenta, "momentum / beta1"))
    length = max((len(values) for values in curves.values()), default=0)
    for ax, series, ylabel in panels:
        for name, values in series.items():
            ax.plot(range(len(values)), list(values), label=_label(name))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize="small")
        if steps_per_epoch and 1 < length // steps_per_epoch <= 50:
            for boundary in range(steps_per_epoch, length, steps_per_epoch):
                ax.axvline(boundary, color="0.85", linewidth=0.6, zorder=0)
    axes[-1].set_xlabel("optimizer step" + (f" ({steps_per_epoch} per epoch)" if steps_per_epoch else ""))
    figure.suptitle(title)
    figure.tight_layout()
    return figure


__all__ = ["is_momentum", "schedule_figure"]
