r"""
LRRangeTest
===========

Sweep the learning rate over a range on the real data and optimizer, suggest one, and put everything back.
"""

from __future__ import annotations

import copy
import math
import random
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature
from lightning_utilities.core.apply_func import apply_to_collection
from typing_extensions import override

from lightning_tuning.callbacks.base_lr import base_lrs, scale_lrs
from lightning_tuning.range_test import SUGGESTIONS, RangeTestWarning, falling_stretch, smooth, suggest, sweep_lrs

MIN_STEPS = 10
#: optimizer steps in a row whose every batch returned ``None`` before the sweep gives up
MAX_SKIPPED_STEPS = 100
#: what the sweep restores besides ``state_dict``: metric state attributes torchmetrics keeps outside ``_defaults``
_METRIC_EXTRAS = ("_update_count", "_computed", "_forward_cache", "_is_synced", "_cache")


class LRRangeTest(Callback):
    r"""The LR range test (Smith, 2017; fastai's ``lr_find``) at the start of ``fit``, restoring everything after.

    At ``on_train_start`` it trains ``num_steps`` optimizer steps on the real training data with the real optimizer
    while the LR sweeps from ``min_lr`` to ``max_lr``, exactly as the training step would (gradient accumulation,
    the trainer's gradient clipping, mixed precision; a ``training_step`` returning ``None`` skips the batch). It
    smooths the loss, stops early when the loss is not finite or exceeds ``divergence_threshold`` times the best,
    and suggests an LR three ways from the stretch where the smoothed loss falls (rules and evidence in
    :mod:`lightning_tuning.range_test`): ``min_div_10`` (the LR of the lowest loss / 10), ``valley`` (the
    geometric middle of the useful part of the fall) and ``steepest`` (the steepest descent on the log-LR axis).
    A curve without a clear fall, or with its minimum at the start of the sweep, gives a warning and no
    suggestion: the module keeps its own LR.

    Then it restores the model's weights and buffers, every submodule's train/eval flag, the states of torchmetrics
    metrics, the optimizer state, the GradScaler and the RNG states (torch, CUDA, numpy, python), and it never
    touches the trainer's loops, so what follows trains exactly as if the test had not run. No checkpoint file is
    written: the snapshot stays in host memory.

    Param groups keep their LR ratios: group ``g`` sweeps ``lr * base_lr[g] / base_lr[0]``, and the suggestion is
    kept per group in :attr:`suggested_lrs`, which ``OneCycle(max_lr="auto")`` and ``CyclicLR(max_lr="auto")``
    take. With ``apply="optimizer"`` the suggestion also becomes the optimizer's LR (and the base of every
    schedule). Under DDP the loss is averaged over ranks, so every rank gets the same curve and suggestion. It does
    not run when resuming from a checkpoint: the saved suggestion is reused.

    Args:
        min_lr: the first LR of the sweep, a finite number ``> 0``.
        max_lr: the last LR of the sweep, a finite number ``> min_lr``.
        num_steps: optimizer steps of the sweep (each of ``accumulate_grad_batches`` batches), at least 10, and at
            least ``skip_start + skip_end + 3`` for ``suggestion="steepest"``.
        mode: ``"exponential"`` (even steps of log-LR, the usual choice) or ``"linear"``.
        smoothing: the EMA factor of the loss, in ``[0, 1)``.
        divergence_threshold: stop when the smoothed loss exceeds this multiple of the best, a finite number ``> 1``.
        suggestion: the suggestion used: ``"min_div_10"`` (the default: in ``benchmarks/lr_range_test.py`` it gave
            the best accuracy as a constant LR and close to the best as a one-cycle peak), ``"valley"`` or
            ``"steepest"``.
        apply: ``"optimizer"`` scales the optimizer's LRs to the suggestion; ``"none"`` only records it.
        optimizer_index: which optimizer to test.
        skip_start: points left out at the start for ``steepest``.
        skip_end: points left out at the end for ``steepest``.

    Raises:
        MisconfigurationException: at construction for values outside the ranges above, naming the argument; at
            the start of training for a manual-optimization module, an ``optimizer_index`` out of range, or a loss
            that is not finite from the first step of the sweep.

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
        _check_number("min_lr", min_lr, "a finite number > 0", lambda v: v > 0)
        _check_number("max_lr", max_lr, f"a finite number > min_lr={min_lr}", lambda v: v > min_lr)
        _check_integer("num_steps", num_steps, MIN_STEPS)
        if mode not in ("exponential", "linear"):
            raise _bad("mode", mode, "use 'exponential' or 'linear'")
        _check_number("smoothing", smoothing, "a number in [0, 1)", lambda v: 0 <= v < 1)
        _check_number("divergence_threshold", divergence_threshold, "a finite number > 1", lambda v: v > 1)
        if suggestion not in SUGGESTIONS:
            raise _bad("suggestion", suggestion, f"use one of {list(SUGGESTIONS)}")
        if apply not in ("optimizer", "none"):
            raise _bad("apply", apply, "use 'optimizer' or 'none'")
        for name, value in (("optimizer_index", optimizer_index), ("skip_start", skip_start), ("skip_end", skip_end)):
            _check_integer(name, value, 0)
        if suggestion == "steepest" and num_steps < skip_start + skip_end + 3:
            raise _bad(
                "num_steps",
                num_steps,
                f"suggestion='steepest' needs at least skip_start + skip_end + 3 = {skip_start + skip_end + 3} "
                "points; raise num_steps or lower skip_start/skip_end",
            )
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
        optimizer = trainer.optimizers[self.optimizer_index]
        results = self._sweep_and_restore(trainer, pl_module, optimizer)
        self.results = results
        chosen = results["suggestions"].get(self.suggestion)
        results["chosen"] = chosen
        results["used"] = None if chosen is None else self.suggestion
        bases = base_lrs(optimizer)
        if chosen is None:
            results["warning"] = self._no_suggestion(results)
            rank_zero_warn(f"LRRangeTest: {results['warning']}", category=RangeTestWarning)
            # the module's own LRs stand in, so `max_lr="auto"` schedules still get a (user-chosen) number
            self.suggested_lrs = {self.optimizer_index: bases}
        else:
            self.suggested_lrs = {self.optimizer_index: [chosen * ratio for ratio in results["ratios"]]}
            if self.apply == "optimizer":
                schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
                scale_lrs(optimizer, chosen / bases[0], schedulers)
        _resume_schedules(trainer)
        # trainer.log_dir is a collective under DDP: every rank asks, rank 0 writes
        directory = Path(trainer.log_dir or trainer.default_root_dir)
        if trainer.is_global_zero:
            self._report(trainer, directory)

    def _no_suggestion(self, results: dict[str, Any]) -> str:
        if results.get("problem"):
            return f"{results['problem']}. No LR suggested; training keeps the module's own LR."
        points = len(results["lrs"])
        return (
            f"the sweep stopped after {points} of {self.num_steps} steps (the loss diverged at "
            f"lr={results['lrs'][-1]:.3g}), too few for the '{self.suggestion}' suggestion (it needs "
            f"{self.skip_start + self.skip_end + 3 if self.suggestion == 'steepest' else 3}). Lower `max_lr` or "
            "`min_lr`, or raise `divergence_threshold`. No LR suggested; training keeps the module's own LR."
        )

    def _sweep_and_restore(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> dict[str, Any]:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        bases = base_lrs(optimizer)
        if bases[0] <= 0:
            raise MisconfigurationException(
                f"LRRangeTest: param group 0 of optimizer {self.optimizer_index} has LR {bases[0]}; the sweep keeps "
                "the groups' LR ratios to group 0, so it must be > 0."
            )
        ratios = [base / bases[0] for base in bases]
        saved_optimizer = host_copy(optimizer.state_dict())
        saved_groups = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        saved_scaler = copy.deepcopy(scaler.state_dict()) if scaler is not None else None
        saved_rng = _rng_states()
        with _module_restored(pl_module):
            try:
                with _schedules_suspended(trainer, optimizer):
                    lrs, losses = self._sweep(trainer, pl_module, optimizer, scaler, ratios)
            finally:
                optimizer.load_state_dict(saved_optimizer)
                for group, saved in zip(optimizer.param_groups, saved_groups, strict=True):
                    group.update(saved)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None and saved_scaler is not None:
                    scaler.load_state_dict(saved_scaler)
                _set_rng_states(saved_rng)
        smoothed = smooth(losses, self.smoothing)
        problem = None
        with warnings.catch_warnings():
            # the reason is reported once, by on_train_start, on rank 0
            warnings.simplefilter("ignore", RangeTestWarning)
            suggestions = suggest(lrs, smoothed, self.skip_start, self.skip_end, losses, self.smoothing)
        if len(lrs) >= 3:
            problem = falling_stretch(lrs, smoothed, losses, self.smoothing).problem
        return {
            "lrs": lrs,
            "losses": losses,
            "smoothed": smoothed,
            "suggestions": suggestions,
            "ratios": ratios,
            "problem": problem,
        }

    def _sweep(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        optimizer: torch.optim.Optimizer,
        scaler: Any,
        ratios: list[float],
    ) -> tuple[list[float], list[float]]:
        accumulate = max(1, trainer.accumulate_grad_batches)
        loader = CombinedLoader(trainer.train_dataloader, mode="max_size_cycle")
        iterator = iter(loader)
        takes_index = is_param_in_hook_signature(pl_module.training_step, "batch_idx", min_args=2)
        device = trainer.strategy.root_device
        lrs: list[float] = []
        losses: list[float] = []
        best, average = math.inf, 0.0
        batch_index = 0
        skipped = 0
        schedule = sweep_lrs(self.min_lr, self.max_lr, self.num_steps, self.mode)
        while len(lrs) < len(schedule):
            lr = schedule[len(lrs)]
            for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                group["lr"] = lr * ratio
            optimizer.zero_grad(set_to_none=True)
            # [sum of the losses, number of batches that returned one]: one collective per step under DDP
            tally = torch.zeros(2, device=device)
            for _ in range(accumulate):
                try:
                    batch, _, _ = next(iterator)
                except StopIteration:
                    iterator = iter(loader)
                    batch, _, _ = next(iterator)
                batch = trainer.strategy.batch_to_device(batch)
                arguments = (batch, batch_index) if takes_index else (batch,)
                output = trainer.strategy.training_step(*arguments)
                batch_index += 1
                loss = output.get("loss") if isinstance(output, Mapping) else output
                if output is None:  # Lightning skips the batch: no backward, no step
                    continue
                if not isinstance(loss, torch.Tensor):
                    raise MisconfigurationException(
                        f"LRRangeTest: training_step returned {type(loss).__name__}; return the loss as a tensor, a "
                        "dict with a 'loss' tensor, or None to skip the batch."
                    )
                scaled = loss / accumulate
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
                tally += torch.stack([loss.detach().float(), torch.ones((), device=loss.device)]).to(device)
            total, count = trainer.strategy.reduce(tally, reduce_op="sum").tolist()
            if count == 0:
                skipped += 1
                if skipped >= MAX_SKIPPED_STEPS:
                    raise MisconfigurationException(
                        f"LRRangeTest: training_step returned None for every batch of {skipped} optimizer steps in a "
                        "row, so there is no loss to sweep. Return the loss from training_step."
                    )
                continue
            skipped = 0
            self._step(trainer, pl_module, optimizer, scaler)
            value = total / count
            if not math.isfinite(value):
                if not lrs:
                    raise MisconfigurationException(
                        f"LRRangeTest: the loss was {value} at the first step of the sweep (lr={lr:.3g}), before the "
                        "LR could have changed anything: the module's loss is not finite at its starting weights. "
                        "Check the loss (data, initialisation, precision) or lower `min_lr`."
                    )
                rank_zero_warn(f"LRRangeTest: the loss became {value} at lr={lr:.3g}; the sweep stopped there.")
                break
            lrs.append(lr)
            losses.append(value)
            average = self.smoothing * average + (1 - self.smoothing) * value
            smoothed = average / (1 - self.smoothing ** len(lrs))
            best = min(best, smoothed)
            if len(lrs) > 1 and smoothed > self.divergence_threshold * best:
                break
        return lrs, losses

    @staticmethod
    def _step(
        trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer, scaler: Any
    ) -> None:
        """The optimizer step as Lightning's precision plugins take it: unscale, clip, step (and update the scaler)."""
        if scaler is not None:
            scaler.unscale_(optimizer)
        pl_module.configure_gradient_clipping(
            optimizer,
            gradient_clip_val=trainer.gradient_clip_val,
            gradient_clip_algorithm=trainer.gradient_clip_algorithm,
        )
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()

    def _report(self, trainer: pl.Trainer, directory: Path) -> None:
        assert self.results is not None
        results = self.results
        lrs = results["lrs"]
        lines = [f"LR range test: {len(lrs)} steps from {lrs[0]:.3g} to {lrs[-1]:.3g}"]
        for name, lr in results["suggestions"].items():
            mark = "  <- used" if name == self.suggestion else ""
            lines.append(f"  {name:<11} {lr:.4g}{mark}")
        if results["chosen"] is None:
            lines.append("  no suggestion (see the warning above); the module keeps its own LR")
        from lightning_tuning.plotting import has_matplotlib, render_rgb, save_png

        if has_matplotlib():
            from lightning_tuning.plotting.range_test import range_test_figure

            # matplotlib's draw dominates the report's cost: draw once, reuse the pixels for the PNG and TensorBoard
            pixels = render_rgb(range_test_figure(results))
            self.png_path = save_png(pixels, directory / "lr_range_test.png")
            lines.append(f"Plot: {self.png_path}")
        else:
            pixels = None
            lines.append('Plot: skipped, matplotlib is not installed (pip install "lightning-tuning[plot]")')
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for step, (lr, loss) in enumerate(zip(lrs, results["smoothed"], strict=True)):
                    logger.experiment.add_scalar("lr_range_test/smoothed_loss", loss, step)
                    logger.experiment.add_scalar("lr_range_test/lr", lr, step)
                if pixels is not None:
                    logger.experiment.add_image("lr_range_test", pixels, 0, dataformats="HWC")
        rank_zero_info("\n".join(lines))

    def yaml_snippet(self) -> str:
        """The suggestion as a config to pass after the run's own config (``--config snippet.yaml``).

        It adds a :class:`~lightning_tuning.BaseLR` callback, which scales the LRs of the module's own optimizer so
        that param group 0 starts at the suggestion: ``configure_optimizers``, its groups and their ratios stay.
        Empty when the test suggested nothing.
        """
        if self.results is None or self.results.get("chosen") is None:
            return ""
        chosen = self.results["chosen"]
        ratios = self.results["ratios"]
        groups = "" if len(ratios) == 1 else f"; the other {len(ratios) - 1} param group(s) keep their LR ratios"
        index = "" if self.optimizer_index == 0 else f"\n        optimizer_index: {self.optimizer_index}"
        return (
            f"# LR range test ({self.suggestion}): lr {chosen:.3g} for param group 0{groups}.\n"
            "# Pass this file after your config: --config <this file>. `callbacks+` adds to your callbacks.\n"
            "trainer:\n"
            "  callbacks+:\n"
            "    - class_path: lightning_tuning.BaseLR\n"
            "      init_args:\n"
            f"        lr: {chosen:.3g}{index}\n"
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


# ---- the schedules' side: the only two places the range test touches them ----------------------------------------


@contextmanager
def _schedules_suspended(trainer: pl.Trainer, optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Schedule callbacks neither count the sweep's steps nor write the LR while it runs."""
    from lightning_tuning.callbacks._coordinator import suspend_schedules

    with suspend_schedules(trainer, [optimizer]):
        yield


def _resume_schedules(trainer: pl.Trainer) -> None:
    """Write the schedules' LR again (from the restored or the newly applied base LRs)."""
    from lightning_tuning.callbacks._coordinator import coordinator_for

    coordinator = coordinator_for(trainer)
    if coordinator is not None:
        coordinator.begin(trainer)  # if the range test runs before the schedules' own on_train_start
        coordinator.reset_written()  # the new base LRs are the range test's, not another owner's change
        coordinator.write_all()


# ---- the module's state outside state_dict ---------------------------------------------------------------------


@contextmanager
def _module_restored(pl_module: pl.LightningModule) -> Iterator[None]:
    """Put back, after the block, what training steps change in a module: weights and every buffer, each
    submodule's train/eval flag, the gradients, torchmetrics metric states; ``self.log`` is muted meanwhile."""
    weights = host_copy(pl_module.state_dict())
    buffers = {name: buffer.detach().to("cpu", copy=True) for name, buffer in pl_module.named_buffers()}
    modes = {name: module.training for name, module in pl_module.named_modules()}
    grads = {name: None if p.grad is None else p.grad.detach().clone() for name, p in pl_module.named_parameters()}
    metrics = {name: _metric_state(module) for name, module in pl_module.named_modules() if _is_metric(module)}
    # training_step may call self.log, which must not reach the trainer's results
    pl_module.log = _no_log  # type: ignore[method-assign]
    pl_module.log_dict = _no_log  # type: ignore[method-assign]
    try:
        yield
    finally:
        del pl_module.log, pl_module.log_dict
        pl_module.load_state_dict(weights)
        with torch.no_grad():
            for name, buffer in pl_module.named_buffers():
                if name in buffers and buffers[name].shape == buffer.shape:
                    buffer.copy_(buffers[name])
        for name, module in pl_module.named_modules():
            module.training = modes.get(name, module.training)
            if name in metrics:
                for attribute, value in metrics[name].items():
                    setattr(module, attribute, value)
        for name, parameter in pl_module.named_parameters():
            saved = grads.get(name)
            parameter.grad = None if saved is None else saved


def _is_metric(module: torch.nn.Module) -> bool:
    try:
        from torchmetrics import Metric
    except ImportError:  # pragma: no cover - torchmetrics is a dependency of lightning
        return False
    return isinstance(module, Metric)


def _metric_state(metric: Any) -> dict[str, Any]:
    """A copy of a torchmetrics ``Metric``'s accumulated state (its ``add_state`` attributes, update count and
    cached results), which lives outside ``state_dict`` unless registered as persistent."""
    names = [*metric.metric_state, *(name for name in _METRIC_EXTRAS if hasattr(metric, name))]
    return {name: copy.deepcopy(getattr(metric, name)) for name in names}


def host_copy(state: Any) -> Any:
    """A deep copy of ``state`` in which every tensor is copied to host memory.

    The snapshot taken before the sweep lives on the host: it costs no accelerator memory (a model that fills the
    device would not fit twice) and no disk, and loading it back is exact. ``deepcopy`` keeps the containers as they
    are (a module state dict's ``_metadata`` included); its memo hands it the host copy of each tensor.
    """
    memo: dict[int, Any] = {}
    apply_to_collection(state, torch.Tensor, lambda t: memo.setdefault(id(t), t.detach().to("cpu", copy=True)))
    return copy.deepcopy(state, memo)


def _bad(argument: str, value: Any, allowed: str) -> MisconfigurationException:
    return MisconfigurationException(f"LRRangeTest: `{argument}={value!r}` is not allowed; {allowed}.")


def _check_number(argument: str, value: Any, allowed: str, valid: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not valid(value):
        raise _bad(argument, value, f"it must be {allowed}")


def _check_integer(argument: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(argument, value, f"it must be an integer >= {minimum}")


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
