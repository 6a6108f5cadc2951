"""Figures of the pack, drawn on bare Agg figures: matplotlib is an optional extra (``pip install
"lightning-tuning[plot]"``), imported only when a figure is asked for, and the global pyplot backend is never changed.

One file per figure family: :mod:`~lightning_tuning.plotting.schedule` (the planned LR/momentum curves),
:mod:`~lightning_tuning.plotting.range_test` (loss against LR), :mod:`~lightning_tuning.plotting.init_report`
(per-layer init diagnostics); :mod:`~lightning_tuning.plotting._figure` holds what they share.
"""

from lightning_tuning.plotting._figure import MatplotlibMissing, has_matplotlib, new_figure, render_rgb, save_png

__all__ = ["MatplotlibMissing", "has_matplotlib", "new_figure", "render_rgb", "save_png"]
