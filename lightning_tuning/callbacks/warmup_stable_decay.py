r"""
WarmupStableDecay
=================

Warm up, hold the peak learning rate, decay at the end (WSD): Hugging Face's ``get_wsd_schedule`` as a callback.
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException

from lightning_tuning.callbacks._schedule import LRScheduleCallback, check_duration_arg, check_positive
from lightning_tuning.schedules import Progress, RunLength
from lightning_tuning.schedules.durations import Duration, Interval
from lightning_tuning.schedules.wsd import WSD_SHAPES, WSDShape, wsd_factor

Shape = Literal["linear", "cosine", "1-sqrt"]


class WarmupStableDecay(LRScheduleCallback):
    r"""Warmup-stable-decay: ``warmup`` steps up to the base LR, a stable phase at it, ``decay`` steps down.

    The schedule of recent LLM training (MiniCPM, Hägele et al. 2024): the LR stays at its peak for most of the run
    and decays only at the end, so a run can be extended, or a decayed branch started, from any stable-phase
    checkpoint. Exactly Hugging Face's ``get_wsd_schedule`` (``t`` = units done, ``m`` = ``min_lr_ratio``):

    * warmup, ``t < W``: ``m + (1 - m) * f(t / W)``, ``f`` = ``linear``: ``p``, ``cosine``: ``(1 - cos(pi p)) / 2``,
      ``1-sqrt``: ``1 - sqrt(1 - p)``; the first step runs at ``m`` times the LR (0 for ``m = 0``);
    * stable: 1;
    * decay, ``p = (t - W - S) / D``: ``m + (1 - m) * g(p)``, ``g`` = ``linear``: ``1 - p``, ``cosine``:
      ``(1 + cos(2 pi c p)) / 2`` (``c = num_cycles``), ``1-sqrt``: ``1 - sqrt(p)``; after it, ``m``.

    A factor of each group's base LR, like every schedule of the pack; it brings its own warmup, so it needs no
    ``Warmup`` callback.

    Args:
        warmup: ``W``, the warmup length (``int`` units of ``interval``, ``"500steps"``, ``"2epochs"``, ``"1%"``);
            0 for none.
        decay: ``D``, the decay length; default ``"20%"`` of the run.
        stable: ``S``, the stable length; default: what the run leaves after warmup and decay (Hugging Face's
            ``num_training_steps - num_warmup_steps - num_decay_steps``).
        warmup_shape: ``"linear"`` (default), ``"cosine"`` or ``"1-sqrt"``.
        decay_shape: ``"cosine"`` (default, as Hugging Face), ``"linear"`` or ``"1-sqrt"`` (the shape Hägele et al.
            found best, timm's default).
        min_lr_ratio: ``m`` in ``[0, 1]``, the floor as a fraction of the base LR.
        num_cycles: waves of the cosine decay, ``> 0``; 0.5 (default) is one half cosine.
        interval: ``"step"`` (default) or ``"epoch"``.
        optimizers: indices of the optimizers to schedule; ``None`` (default) for all.
        end: where the schedule hands over (a duration from the start of the run; default: never): from there on
            its factor is 1, so a schedule given ``start`` at the same point starts from its own base LR, as
            after a torch ``SequentialLR`` milestone. Its length, left out, then spans the run up to ``end``.

    Raises:
        MisconfigurationException: at construction, for an unknown shape, ``min_lr_ratio`` outside ``[0, 1]`` or a
            duration that is not one; at the start of fit, when warmup + stable + decay is longer than the run, or
            the stable phase is left out in a run that has no end.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import WarmupStableDecay
        >>> trainer = Trainer(max_steps=10_000, callbacks=[WarmupStableDecay(500, decay="20%", decay_shape="1-sqrt")])
    """

    def __init__(
        self,
        warmup: Duration = 0,
        decay: Duration = "20%",
        stable: Duration | None = None,
        warmup_shape: Shape = "linear",
        decay_shape: Shape = "cosine",
        min_lr_ratio: float = 0.0,
        num_cycles: float = 0.5,
        interval: Interval = "step",
        optimizers: list[int] | None = None,
        end: Duration | None = None,
    ) -> None:
        super().__init__(interval=interval, optimizers=optimizers)
        self._init_end(end)
        check_duration_arg(warmup, "WarmupStableDecay.warmup")
        check_duration_arg(decay, "WarmupStableDecay.decay")
        if stable is not None:
            check_duration_arg(stable, "WarmupStableDecay.stable")
        for name, shape in (("warmup_shape", warmup_shape), ("decay_shape", decay_shape)):
            if shape not in WSD_SHAPES:
                raise MisconfigurationException(
                    f"WarmupStableDecay: `{name}={shape!r}` is not allowed; use one of {list(WSD_SHAPES)}."
                )
        if isinstance(min_lr_ratio, bool) or not isinstance(min_lr_ratio, (int, float)) or not 0 <= min_lr_ratio <= 1:
            raise MisconfigurationException(
                f"WarmupStableDecay: `min_lr_ratio={min_lr_ratio!r}` must lie in [0, 1]: the lowest LR as a fraction "
                "of the base LR."
            )
        check_positive(num_cycles, "num_cycles", "WarmupStableDecay")
        self.warmup = warmup
        self.decay = decay
        self.stable = stable
        self.warmup_shape: WSDShape = warmup_shape
        self.decay_shape: WSDShape = decay_shape
        self.min_lr_ratio = float(min_lr_ratio)
        self.num_cycles = float(num_cycles)
        self._phases: dict[int, tuple[int, int, int]] = {}
        self._config.update(
            warmup=warmup,
            decay=decay,
            stable=stable,
            warmup_shape=warmup_shape,
            decay_shape=decay_shape,
            min_lr_ratio=self.min_lr_ratio,
            num_cycles=self.num_cycles,
        )

    def resolve(self, trainer: pl.Trainer, run: RunLength) -> None:
        self._phases.clear()
        self._resolve_end(trainer, run)
        for index in range(len(trainer.optimizers)):
            if not self.targets(index):
                continue
            total = self.span(run, index)
            warmup = self._duration(self.warmup, run, "warmup")
            decay = self._duration(self.decay, run, "decay")
            if self.stable is None:
                if total is None:
                    raise ValueError(
                        "WarmupStableDecay.stable is left out, so the stable phase fills the run, but the run has no "
                        "end: set `trainer.max_steps`/`trainer.max_epochs`, or give `stable`."
                    )
                stable = total - warmup - decay
                if stable < 0:
                    raise ValueError(
                        f"WarmupStableDecay: warmup ({warmup}) + decay ({decay}) = {warmup + decay} {self.interval}s "
                        f"is longer than the run ({total} {self.interval}s): shorten them (e.g. decay='10%') or "
                        "train longer."
                    )
            else:
                stable = self._duration(self.stable, run, "stable")
                if total is not None and warmup + stable + decay > total:
                    raise ValueError(
                        f"WarmupStableDecay: warmup ({warmup}) + stable ({stable}) + decay ({decay}) = "
                        f"{warmup + stable + decay} {self.interval}s is longer than the run ({total} "
                        f"{self.interval}s): the decay would be cut off. Leave `stable` out to fill the run, or "
                        "shorten the phases."
                    )
            self._phases[index] = (warmup, stable, decay)

    def lint(self, run: RunLength) -> list[str]:
        notes = super().lint(run)
        if self._phases:
            index, (warmup, stable, decay) = next(iter(self._phases.items()))
            end = self._start_units.get(index, 0) + warmup + stable + decay
            notes += self._lint_ends_early(end, run, "holds min_lr_ratio times the base LR")
        return notes

    def phases(self, optimizer_index: int = 0) -> tuple[int, int, int]:
        """``(warmup, stable, decay)`` in units, once resolved at the start of fit."""
        return self._phases[optimizer_index]

    def lr_factor(self, progress: Progress, optimizer_index: int, group_index: int, base_lr: float) -> float:
        warmup, stable, decay = self._phases[optimizer_index]
        return wsd_factor(
            self.units(progress, optimizer_index),
            warmup,
            stable,
            decay,
            self.warmup_shape,
            self.decay_shape,
            self.min_lr_ratio,
            self.num_cycles,
        )
