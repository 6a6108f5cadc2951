"""Make ``fit(ckpt_path=...)`` continue exactly where the checkpoint left off: RNG states and a pending validation."""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler
from typing_extensions import override

from lightning_tuning import _compat


def collect_rng_states() -> dict[str, Any]:
    """The global RNG states of torch (CPU and CUDA), numpy and Python, as plain values a checkpoint can hold."""
    version, internal, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with every torch wheel
        return states
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states["numpy"] = [kind, keys.tolist(), int(position), int(has_gauss), float(cached)]
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`collect_rng_states` returned (states of generators this process lacks are skipped)."""
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = states.get("torch.cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if "numpy" in states:
        import numpy as np

        kind, keys, position, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))


class ExactResume(Callback):
    """Resume a run from a checkpoint so that it goes on exactly like the uninterrupted run would have.

    Lightning restores the weights, optimizers, loops and callbacks, but two things are left out:

    - the global random states (torch, CUDA, numpy, Python): dropout and any other random op draw different numbers
      after a resume. This callback stores them in the checkpoint and puts them back just before the next training
      batch; for a checkpoint written at the end of an epoch it then draws the seeds that the next epoch's dataloader
      iterators drew in the uninterrupted run (one per ``DataLoader`` without a ``generator`` of its own, one more
      for a ``RandomSampler`` without one; none for persistent workers);
    - a validation that was due on the batch the checkpoint was written at (``ModelCheckpoint(every_n_train_steps=...)``
      on an epoch end or a ``val_check_interval`` point): Lightning 2.6 skips it on restart, so callbacks that act on
      validation metrics (``PlateauDecay``, ``EarlyStopping``, a monitored ``ModelCheckpoint``) miss one observation.
      This callback runs it before the first training batch after the resume.

    With a deterministic dataloader order (the demos' samplers, ``shuffle=False``, or a stateful loader) a run killed
    at any point and resumed with ``fit --ckpt_path last`` then trains on the CPU with the same per-step learning rates
    and ends with the same weights as a run that was never interrupted. The ``python -m lightning_tuning`` command line
    adds this callback to every run.

    Not covered: random augmentations drawn while a batch is loaded in the main process (Lightning fetches the next
    batch before the checkpoint is written), and under DDP every rank gets rank 0's states back (ranks seeded alike
    by ``seed_everything`` have the same states).

    Example::

        trainer = Trainer(callbacks=[ModelCheckpoint(save_last=True), ExactResume()])
        trainer.fit(model, ckpt_path="last")
    """

    def __init__(self) -> None:
        self._states: dict[str, Any] | None = None
        self._pending_validation = False
        self._epoch_ended = False

    @property
    @override
    def state_key(self) -> str:
        return "ExactResume"

    @override
    def state_dict(self) -> dict[str, Any]:
        trainer = getattr(self, "_trainer", None)
        state: dict[str, Any] = {"rng_states": collect_rng_states()}
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            state.update(_position(trainer))
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._states = state_dict.get("rng_states")
        self._pending_validation = bool(state_dict.get("validation_pending", False))
        self._epoch_ended = bool(state_dict.get("at_epoch_end", False))

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # the states go back at the last moment before training goes on: the dataloader iterators that a restart
        # creates draw their seeds from the global RNG before this
        if self._states is not None:
            set_rng_states(self._states)
            self._states = None
            if self._epoch_ended:
                # the uninterrupted run started the next epoch's dataloader iterators after the checkpoint
                replay_epoch_start_draws(trainer.train_dataloader)
        if self._pending_validation:
            self._pending_validation = False
            _compat.run_validation_inside_fit(trainer)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a checkpoint written on the very last batch, before its validation: no batch is left to run it before
        if self._pending_validation:
            self._pending_validation = False
            _compat.run_validation_inside_fit(trainer)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._states, self._pending_validation, self._epoch_ended = None, False, False


def replay_epoch_start_draws(dataloaders: Any) -> None:
    """Draw from the global torch RNG what starting an epoch over ``dataloaders`` draws (their iterators' seeds)."""
    for loader in _flatten(dataloaders):
        if not isinstance(loader, DataLoader):
            continue
        if loader.generator is None and not (loader.persistent_workers and loader.num_workers > 0):
            torch.empty((), dtype=torch.int64).random_()  # _BaseDataLoaderIter's base seed
        sampler = loader.batch_sampler.sampler if isinstance(loader.batch_sampler, BatchSampler) else loader.sampler
        if isinstance(sampler, RandomSampler) and sampler.generator is None:
            torch.empty((), dtype=torch.int64).random_()  # RandomSampler's seed of the epoch


def _flatten(collection: Any) -> list[Any]:
    if isinstance(collection, dict):
        return [item for value in collection.values() for item in _flatten(value)]
    if isinstance(collection, (list, tuple)):
        return [item for value in collection for item in _flatten(value)]
    return [collection]


def _position(trainer: pl.Trainer) -> dict[str, bool]:
    """Where in the fit loop a checkpoint is being written: a validation still to run, an epoch that is over."""
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    in_batch_end = progress.processed == progress.completed + 1 and not trainer.validating
    pending = in_batch_end and _compat.validation_due(trainer)
    at_epoch_end = (
        progress.processed >= trainer.num_training_batches or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
    )
    return {"validation_pending": pending, "at_epoch_end": bool(at_epoch_end)}
