"""The schedule figure (``lightning_tuning.plotting.schedule``): what it draws, on a bare Agg figure."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from lightning_tuning.plotting import render_rgb
from lightning_tuning.plotting.schedule import schedule_figure


def test_lr_and_momentum_panels_hold_the_curves() -> None:
    warmup = [0.1 * min(1.0, (step + 1) / 5) for step in range(20)]
    momentum = [0.95 - 0.1 * min(1.0, step / 10) for step in range(20)]
    figure = schedule_figure({"lr-SGD": warmup, "lr-SGD/head": warmup[::-1], "lr-SGD-momentum": momentum}, 4)
    lr_axes, momentum_axes = figure.axes[:2]
    lines = {line.get_label(): line for line in lr_axes.get_lines() if not line.get_label().startswith("_")}
    assert set(lines) == {"lr-SGD", "lr-SGD/head"}
    np.testing.assert_array_equal(lines["lr-SGD"].get_ydata(), warmup)
    np.testing.assert_array_equal(lines["lr-SGD"].get_xdata(), range(20))
    (drawn,) = [line for line in momentum_axes.get_lines() if not line.get_label().startswith("_")]
    np.testing.assert_array_equal(drawn.get_ydata(), momentum)
    assert lr_axes.get_ylabel() == "learning rate"
    assert momentum_axes.get_xlabel() == "optimizer step (4 per epoch)"


def test_one_panel_without_momentum_and_no_pyplot() -> None:
    import matplotlib

    backend = matplotlib.get_backend()
    had_pyplot = "matplotlib.pyplot" in sys.modules
    figure = schedule_figure({"lr-Adam": [1e-3] * 10})
    assert len(figure.axes) == 1
    pixels = render_rgb(figure, dpi=50)
    assert pixels.shape == (160, 400, 3), "8 x 3.2 inches at 50 dpi"
    assert pixels.dtype == np.uint8
    assert pixels.min() < 128 < pixels.max(), "something was drawn on white"
    assert matplotlib.get_backend() == backend, "the global backend is left alone"
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot, "pyplot is not imported"
