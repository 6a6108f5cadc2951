"""What every figure of the pack shares: a bare Agg figure, drawn once, its pixels reused for PNG and TensorBoard."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class MatplotlibMissing(ImportError):
    """A figure was asked for, but matplotlib (the optional ``plot`` extra) is not installed."""


def has_matplotlib() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):  # a broken install, or an import hook that refuses it
        return False


def _require(what: str) -> None:
    if not has_matplotlib():
        raise MatplotlibMissing(
            f'{what} needs matplotlib, which is not installed: `pip install "lightning-tuning[plot]"` '
            "(or `pip install matplotlib`), or turn the figure off."
        )


def new_figure(width: float, height: float, what: str = "This figure") -> Figure:
    """A matplotlib ``Figure`` with an Agg canvas attached, outside pyplot: no global backend change, no window.

    Raises:
        MatplotlibMissing: matplotlib is not installed; the message says how to install it.
    """
    _require(what)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def render_rgb(figure: Figure, dpi: int = 100) -> np.ndarray:
    """Draw ``figure`` once at ``dpi``; its pixels as an ``(H, W, 3)`` uint8 array (for PNG and ``add_image``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure.set_dpi(dpi)
    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(pixels: np.ndarray, path: Path) -> Path:
    """Write pixels from :func:`render_rgb` as a PNG (matplotlib's own writer: no Pillow needed)."""
    from matplotlib.image import imsave

    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, pixels, format="png")
    return path
