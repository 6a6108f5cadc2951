"""Running a side-effect-free probe forward on a real batch from inside a callback (shared by the init callbacks).

A probe must not change training: the global RNG states (torch, numpy, random), the train/eval flag of every submodule
and every buffer (BatchNorm running statistics) are put back afterwards, and ``self.log`` calls inside
``training_step`` are muted (logging is not allowed in ``on_fit_start``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.trainer.connectors.data_connector import _request_dataloader
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from lightning.pytorch.utilities.seed import isolate_rng
from torch import nn

from lightning_tuning.init.rules import initialisable_modules


def first_train_batch(trainer: pl.Trainer, pl_module: pl.LightningModule) -> Any | None:
    """The first batch of a fresh copy of the training dataloader, on the module's device; ``None`` if there is none.

    A new loader is requested from the same source Lightning uses (``fit(train_dataloaders=...)``, the DataModule or the
    LightningModule), so the loop's own iterator and sampler state are untouched. RNG draws are isolated.
    """
    source = trainer.fit_loop._data_source
    if source.instance is None or not source.is_defined():
        return None
    with isolate_rng():
        loaders = _request_dataloader(source)
        if isinstance(loaders, (Mapping, Sequence)) and not isinstance(loaders, torch.utils.data.Dataset):
            iterator = iter(CombinedLoader(loaders, "max_size_cycle"))
            batch = next(iterator)[0]
        else:
            try:
                batch = next(iter(loaders))
            except StopIteration:
                return None
    return trainer.strategy.batch_to_device(batch)


def require_probe_input(
    trainer: pl.Trainer, pl_module: pl.LightningModule, who: str, need: str
) -> tuple[Any | None, Any | None]:
    """A training batch, else the module's ``example_input_array``; raise a clear error when neither exists."""
    batch = first_train_batch(trainer, pl_module)
    example = None if batch is not None else pl_module.example_input_array
    if batch is None and example is None:
        raise MisconfigurationException(
            f"{who} needs {need}, but `trainer.fit` got no training dataloader (no `train_dataloaders`, no"
            " DataModule `train_dataloader()`, no LightningModule `train_dataloader()`) and the module has no"
            " `example_input_array`. Pass a training dataloader, set `self.example_input_array`, or drop this option."
        )
    if example is not None:
        example = trainer.strategy.batch_to_device(example)
    return batch, example


def _loss_of(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("loss"), torch.Tensor):
        return output["loss"]
    return None


def make_runner(pl_module: pl.LightningModule, batch: Any | None, example: Any | None) -> Callable[[], Any]:
    """A function running one forward: ``training_step(batch, 0)`` on real data (returns its loss), or
    ``forward(example_input_array)`` (returns a mean-square pseudo-loss so gradients can still be measured)."""
    if batch is not None:
        return lambda: _loss_of(pl_module.training_step(batch, 0))

    def run_example() -> torch.Tensor | None:
        out = pl_module(*example) if isinstance(example, tuple) else pl_module(example)
        return out.float().pow(2).mean() if isinstance(out, torch.Tensor) else None

    return run_example


@contextlib.contextmanager
def probe_guard(pl_module: pl.LightningModule) -> Iterator[None]:
    """Isolate RNG, restore train/eval flags and buffers, mute ``self.log`` for the duration of a probe."""
    training = {name: m.training for name, m in pl_module.named_modules()}
    buffers = {name: b.detach().clone() for name, b in pl_module.named_buffers()}
    mute = lambda *_args, **_kwargs: None  # noqa: E731
    pl_module.log = mute  # type: ignore[method-assign]
    pl_module.log_dict = mute  # type: ignore[method-assign]
    try:
        with isolate_rng():
            yield
    finally:
        del pl_module.log, pl_module.log_dict
        for name, module in pl_module.named_modules():
            module.training = training.get(name, module.training)
        with torch.no_grad():
            for name, buffer in pl_module.named_buffers():
                if name in buffers and buffers[name].shape == buffer.shape:
                    buffer.copy_(buffers[name])


def weight_layers(model: nn.Module) -> list[str]:
    """Qualified names of every module holding its own parameters (parametrized ones included)."""
    return [name for name, _ in initialisable_modules(model)]


def is_resuming(trainer: pl.Trainer) -> bool:
    """Whether this fit restores a checkpoint (its weights must be kept)."""
    return trainer.ckpt_path is not None


def shared_seed(trainer: pl.Trainer, seed: int | None) -> int:
    """``seed``, or rank 0's current torch seed broadcast to every rank (so all ranks draw the same weights)."""
    return seed if seed is not None else trainer.strategy.broadcast(torch.initial_seed() % (1 << 63), 0)
