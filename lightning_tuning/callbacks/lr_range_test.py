r"""
LRRangeTest
===========

Sweep the learning rate over a range on the real data and optimizer, suggest one, and put everything back.
"""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import CombinedLoader
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from lightning_utilities.core.apply_func import apply_to_collection
from typing_extensions import override

from lightning_tuning.callbacks._coordinator import base_lr, coordinator_for, set_base_lr, suspend_schedules
from lightning_tuning.range_test import SUGGESTIONS, smooth, suggest, sweep_lrs

MIN_STEPS = 10


class LRRangeTest(Callback):
    r"""The LR range test (Smith, 2017; fastai's ``lr_find``) at the start of ``fit``, restoring everything after.

    At ``on_train_start`` it trains ``num_steps`` optimizer steps on the real training data with the real optimizer
    while the LR sweeps from ``min_lr`` to ``max_lr``; it smooths the loss, stops early when the loss is not finite
    or exceeds ``divergence_threshold`` times the best, and suggests an LR three ways: ``min_div_10`` (the LR of the
    lowest loss / 10), ``valley`` (fastai) and ``steepest`` (steepest descent of the loss on the log-LR axis).
    Then it restores model weights, optimizer state, the GradScaler, the RNG states (torch, CUDA, numpy, python),
    and it never touches the trainer's loops, so what follows trains exactly as if the test had not run. No
    checkpoint file is written: the snapshot stays in host memory.

    Param groups keep their LR ratios: group ``g`` sweeps ``lr * base_lr[g] / base_lr[0]``, and the
    suggestion is kept per group in :attr:`suggested_lrs`, which ``OneCycle(max_lr="auto")`` and
    ``CyclicLR(max_lr="auto")`` take. With ``apply="optimizer"`` the suggestion also becomes the optimizer's LR
    (and the base of every schedule). Under DDP the loss is averaged over ranks, so every rank gets the same curve
    and suggestion. It does not run when resuming from a checkpoint: the saved suggestion is reused.

    Args:
        min_lr: the first LR of the sweep, ``> 0``.
        max_lr: the last LR of the sweep, ``> min_lr``.
        num_steps: optimizer steps of the sweep (each of ``accumulate_grad_batches`` batches), at least 10.
        mode: ``"exponential"`` (even steps of log-LR, the usual choice) or ``"linear"``.
        smoothing: the EMA factor of the loss, in ``[0, 1)``.
        divergence_threshold: stop when the smoothed loss exceeds this multiple of the best, ``> 1``.
        suggestion: the suggestion used: ``"min_div_10"`` (the default: in ``benchmarks/lr_range_test.py`` it gave
            the best accuracy as a constant LR and close to the best as a one-cycle peak, where ``"valley"`` was
            too low for both), ``"valley"`` or ``"steepest"`` (best as a one-cycle peak, erratic as a constant LR).
        apply: ``"optimizer"`` sets the optimizer's LR to the suggestion; ``"none"`` only records it.
        optimizer_index: which optimizer to test.
        skip_start: points left out at the start for ``steepest``.
        skip_end: points left out at the end for ``steepest``.

    Raises:
        MisconfigurationException: at construction for values outside the ranges above; at the start of training
            for a manual-optimization module or an ``optimizer_index`` out of range.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import LRRangeTest, OneCycle
        >>> trainer = Trainer(max_epochs=5, callbacks=[LRRangeTest(), OneCycle(max_lr="auto")])
    """

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_steps: int = 100,
        mode: Literal["exponential", "linear"] = "exponential",
        smoothing: float = 0.98,
        divergence_threshold: float = 4.0,
        suggestion: Literal["valley", "steepest", "min_div_10"] = "min_div_10",
        apply: Literal["optimizer", "none"] = "optimizer",
        optimizer_index: int = 0,
        skip_start: int = 10,
        skip_end: int = 5,
    ) -> None:
        def bad(argument: str, value: Any, allowed: str) -> MisconfigurationException:
            return MisconfigurationException(f"LRRangeTest: `{argument}={value!r}` is not allowed; {allowed}.")

        if not isinstance(min_lr, (int, float)) or isinstance(min_lr, bool) or min_lr <= 0:
            raise bad("min_lr", min_lr, "it must be a number > 0")
        if not isinstance(max_lr, (int, float)) or isinstance(max_lr, bool) or max_lr <= min_lr:
            raise bad("max_lr", max_lr, f"it must be a number > min_lr={min_lr}")
        if not isinstance(num_steps, int) or num_steps < MIN_STEPS:
            raise bad("num_steps", num_steps, f"it must be an integer >= {MIN_STEPS}")
        if mode not in ("exponential", "linear"):
            raise bad("mode", mode, "use 'exponential' or 'linear'")
        if not isinstance(smoothing, (int, float)) or not 0 <= smoothing < 1:
            raise bad("smoothing", smoothing, "it must lie in [0, 1)")
        if not isinstance(divergence_threshold, (int, float)) or divergence_threshold <= 1:
            raise bad("divergence_threshold", divergence_threshold, "it must be a number > 1")
        if suggestion not in SUGGESTIONS:
            raise bad("suggestion", suggestion, f"use one of {list(SUGGESTIONS)}")
        if apply not in ("optimizer", "none"):
            raise bad("apply", apply, "use 'optimizer' or 'none'")
        for name, value in (("optimizer_index", optimizer_index), ("skip_start", skip_start), ("skip_end", skip_end)):
            if not isinstance(value, int) or value < 0:
                raise bad(name, value, "it must be an integer >= 0")
        self.min_lr = float(min_lr)
        self.max_lr = float(max_lr)
        self.num_steps = num_steps
        self.mode = mode
        self.smoothing = float(smoothing)
        self.divergence_threshold = float(divergence_threshold)
        self.suggestion = suggestion
        self.apply = apply
        self.optimizer_index = optimizer_index
        self.skip_start = skip_start
        self.skip_end = skip_end
        self.suggested_lrs: dict[int, list[float]] | None = None
        self.results: dict[str, Any] | None = None
        self.png_path: Path | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(optimizer_index=self.optimizer_index)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path is not None and self.suggested_lrs is not None:
            return
        if not pl_module.automatic_optimization:
            raise MisconfigurationException(
                "LRRangeTest drives the optimizer itself through training_step, which needs automatic optimization; "
                f"{type(pl_module).__name__} uses manual optimization. Remove LRRangeTest, or run the range test "
                "on a version of the module with automatic optimization."
            )
        if self.optimizer_index >= len(trainer.optimizers):
            raise MisconfigurationException(
                f"LRRangeTest: `optimizer_index={self.optimizer_index}`, but configure_optimizers returned "
                f"{len(trainer.optimizers)} optimizer(s)."
            )
        self.results = self._sweep_and_restore(trainer, pl_module)
        suggestions = self.results["suggestions"]
        if self.suggestion not in suggestions:
            raise MisconfigurationException(
                f"LRRangeTest: the sweep stopped after {len(self.results['lrs'])} steps (the loss diverged at "
                f"lr={self.results['lrs'][-1]:.3g}), too few for the '{self.suggestion}' suggestion. Lower `max_lr` "
                "or `min_lr`, or raise `divergence_threshold`."
            )
        chosen = suggestions[self.suggestion]
        self.results["chosen"] = chosen
        optimizer = trainer.optimizers[self.optimizer_index]
        ratios = self.results["ratios"]
        self.suggested_lrs = {self.optimizer_index: [chosen * ratio for ratio in ratios]}
        if self.apply == "optimizer":
            for group, lr in zip(optimizer.param_groups, self.suggested_lrs[self.optimizer_index], strict=True):
                group["lr"] = lr
                set_base_lr(group, lr)
        coordinator = coordinator_for(trainer)
        if coordinator is not None:
            # schedules multiply the new base LRs (and an "auto" max_lr takes the suggestion) from the first step on
            coordinator.begin(trainer)
            coordinator.write_all()
        # trainer.log_dir is a collective under DDP: every rank asks, rank 0 writes
        directory = Path(trainer.log_dir or trainer.default_root_dir)
        if trainer.is_global_zero:
            self._report(trainer, directory)

    def _sweep_and_restore(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        optimizer = trainer.optimizers[self.optimizer_index]
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        saved_model = host_copy(pl_module.state_dict())
        saved_optimizer = host_copy(optimizer.state_dict())
        saved_groups = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        saved_scaler = copy.deepcopy(scaler.state_dict()) if scaler is not None else None
        saved_rng = _rng_states()
        was_training = pl_module.training
        bases = [base_lr(group) for group in optimizer.param_groups]
        ratios = [base / bases[0] for base in bases]
        try:
            # training_step may call self.log, which must not reach the trainer's results
            pl_module.log = _no_log  # type: ignore[method-assign]
            pl_module.log_dict = _no_log  # type: ignore[method-assign]
            pl_module.train()
            with suspend_schedules(trainer, [optimizer]):
                lrs, losses = self._sweep(trainer, optimizer, scaler, ratios)
        finally:
            del pl_module.log, pl_module.log_dict
            pl_module.load_state_dict(saved_model)
            optimizer.load_state_dict(saved_optimizer)
            for group, saved in zip(optimizer.param_groups, saved_groups, strict=True):
                group.update(saved)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None and saved_scaler is not None:
                scaler.load_state_dict(saved_scaler)
            _set_rng_states(saved_rng)
            pl_module.train(was_training)
        smoothed = smooth(losses, self.smoothing) if losses else []
        suggestions = suggest(lrs, smoothed, self.skip_start, self.skip_end)
        return {"lrs": lrs, "losses": losses, "smoothed": smoothed, "suggestions": suggestions, "ratios": ratios}

    def _sweep(
        self, trainer: pl.Trainer, optimizer: torch.optim.Optimizer, scaler: Any, ratios: list[float]
    ) -> tuple[list[float], list[float]]:
        accumulate = max(1, trainer.accumulate_grad_batches)
        loader = CombinedLoader(trainer.train_dataloader, mode="max_size_cycle")
        iterator = iter(loader)
        lrs: list[float] = []
        losses: list[float] = []
        best, average = math.inf, 0.0
        batch_index = 0
        for step, lr in enumerate(sweep_lrs(self.min_lr, self.max_lr, self.num_steps, self.mode)):
            for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                group["lr"] = lr * ratio
            optimizer.zero_grad(set_to_none=True)
            total = torch.zeros((), device=trainer.strategy.root_device)
            for _ in range(accumulate):
                try:
                    batch, _, _ = next(iterator)
                except StopIteration:
                    iterator = iter(loader)
                    batch, _, _ = next(iterator)
                batch = trainer.strategy.batch_to_device(batch)
                output = trainer.strategy.training_step(batch, batch_index)
                batch_index += 1
                loss = output["loss"] if isinstance(output, dict) else output
                scaled = loss / accumulate
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
                total += loss.detach().float()
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            value = float(trainer.strategy.reduce(total / accumulate, reduce_op="mean"))
            lrs.append(lr)
            losses.append(value)
            if not math.isfinite(value):
                break
            average = self.smoothing * average + (1 - self.smoothing) * value
            smoothed = average / (1 - self.smoothing ** (step + 1))
            best = min(best, smoothed)
            if step > 0 and smoothed > self.divergence_threshold * best:
                break
        if losses and not math.isfinite(losses[-1]):
            rank_zero_warn(f"LRRangeTest: the loss became {losses[-1]} at lr={lrs[-1]:.3g}; the sweep stopped there.")
            lrs, losses = lrs[:-1], losses[:-1]
        return lrs, losses

    def _report(self, trainer: pl.Trainer, directory: Path) -> None:
        assert self.results is not None
        results = self.results
        lines = [f"LR range test: {len(results['lrs'])} steps from {results['lrs'][0]:.3g} to {results['lrs'][-1]:.3g}"]
        for name, lr in results["suggestions"].items():
            mark = "  <- used" if name == self.suggestion else ""
            lines.append(f"  {name:<11} {lr:.4g}{mark}")
        directory.mkdir(parents=True, exist_ok=True)
        # matplotlib's draw dominates the report's cost: draw once, reuse the pixels for the PNG and TensorBoard
        pixels = render_rgb(range_test_figure(results))
        self.png_path = directory / "lr_range_test.png"
        from PIL import Image

        Image.fromarray(pixels).save(self.png_path)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for step, (lr, loss) in enumerate(zip(results["lrs"], results["smoothed"], strict=True)):
                    logger.experiment.add_scalar("lr_range_test/smoothed_loss", loss, step)
                    logger.experiment.add_scalar("lr_range_test/lr", lr, step)
                logger.experiment.add_image("lr_range_test", pixels, 0, dataformats="HWC")
        lines.append(f"Plot: {self.png_path}")
        rank_zero_info("\n".join(lines))

    def yaml_snippet(self) -> str:
        """The suggestion as config lines to paste."""
        if self.results is None:
            return ""
        chosen = self.results["chosen"]
        return (
            f"# LR range test ({self.suggestion}): {chosen:.3g}\n"
            f"optimizer:            # or the module's own `lr` argument\n"
            f"  init_args:\n    lr: {chosen:.3g}\n"
            f"schedule:             # or as the peak of a cycle\n"
            f"  - class_path: lightning_tuning.OneCycle\n    init_args:\n      max_lr: {chosen:.3g}\n"
        )

    @override
    def state_dict(self) -> dict[str, Any]:
        results = None
        if self.results is not None:
            results = {key: value for key, value in self.results.items() if key != "suggestions"}
            results["suggestions"] = dict(self.results["suggestions"])
        suggested = None if self.suggested_lrs is None else {str(k): v for k, v in self.suggested_lrs.items()}
        return {"suggested_lrs": suggested, "results": results}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        suggested = state_dict.get("suggested_lrs")
        self.suggested_lrs = None if suggested is None else {int(k): list(v) for k, v in suggested.items()}
        self.results = state_dict.get("results")


def range_test_figure(results: dict[str, Any]) -> Any:
    """Loss against LR (log axis), raw and smoothed, with the suggestions marked."""
    from matplotlib.figure import Figure

    # a bare Figure (no pyplot manager) with fixed margins: tight_layout would cost a second layout pass
    figure = Figure(figsize=(7, 4))
    figure.subplots_adjust(left=0.1, right=0.97, bottom=0.13, top=0.92)
    axis = figure.add_subplot()
    axis.plot(results["lrs"], results["losses"], alpha=0.3, label="loss")
    axis.plot(results["lrs"], results["smoothed"], label="smoothed loss")
    for (name, lr), color in zip(results["suggestions"].items(), ("tab:red", "tab:green", "tab:purple"), strict=False):
        axis.axvline(lr, color=color, linestyle="--", label=f"{name}: {lr:.3g}")
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss")
    axis.set_title("LR range test")
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)
    return figure


def host_copy(state: Any) -> Any:
    """A deep copy of ``state`` in which every tensor is copied to host memory.

    The snapshot taken before the sweep lives on the host: it costs no accelerator memory (a model that fills the
    device would not fit twice) and no disk, and loading it back is exact. ``deepcopy`` keeps the containers as they
    are (a module state dict's ``_metadata`` included); its memo hands it the host copy of each tensor.
    """
    memo: dict[int, Any] = {}
    apply_to_collection(state, torch.Tensor, lambda t: memo.setdefault(id(t), t.detach().to("cpu", copy=True)))
    return copy.deepcopy(state, memo)


def render_rgb(figure: Any, dpi: int = 100) -> np.ndarray:
    """Draw ``figure`` once at ``dpi`` with Agg; returns its pixels as an ``(H, W, 3)`` uint8 array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure.set_dpi(dpi)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _no_log(*args: Any, **kwargs: Any) -> None:
    return None


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])
