"""A shuffling sampler that makes a run resumed mid-epoch see exactly the batches an uninterrupted run sees."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import lightning.pytorch as pl
import torch
from torch.utils.data import Sampler


class ResumableShuffleSampler(Sampler[int]):
    """Shuffle with a permutation that depends only on ``(seed, epoch)``, and skip what a resumed epoch has seen.

    torch's ``RandomSampler`` draws its permutation from the global RNG, which a resumed process does not restore,
    and Lightning restarts a non-stateful dataloader from its first batch. Here the permutation of epoch ``e`` is
    ``randperm(n, seed + e)``, and when the trainer is restarting mid-epoch the sampler starts after the batches the
    checkpoint had already trained on. Together: bit-identical training after a kill-and-resume on the CPU.

    Args:
        length: number of samples in the dataset.
        seed: the base seed of the permutations.
        batch_size: samples per batch, to turn trained batches into samples to skip.
        trainer: returns the trainer driving this sampler, or ``None`` outside of ``fit``.
    """

    def __init__(self, length: int, seed: int, batch_size: int, trainer: Callable[[], pl.Trainer | None]) -> None:
        self.length = length
        self.seed = seed
        self.batch_size = batch_size
        self._trainer = trainer

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        trainer = self._trainer()
        epoch, skip = 0, 0
        if trainer is not None:
            epoch = trainer.current_epoch
            loop = trainer.fit_loop
            if loop.restarting:
                skip = loop.epoch_loop.batch_progress.current.completed * self.batch_size
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.length, generator=generator).tolist()
        return iter(order[skip:])
