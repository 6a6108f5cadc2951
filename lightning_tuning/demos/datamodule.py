"""Dataloaders shared by the demo DataModules: in-memory splits, one batch size, optional workers."""

from __future__ import annotations

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lightning_tuning.demos.resumable import ResumableShuffleSampler


class SplitDataModule(LightningDataModule):
    """Base of the demo DataModules: subclasses fill ``train_set``/``val_set``/``test_set`` in ``setup``.

    The predict dataloader serves the test set, so ``predict`` works on every demo. The training set is shuffled
    by a :class:`~lightning_tuning.demos.resumable.ResumableShuffleSampler` seeded with ``shuffle_seed`` (the
    subclass's ``seed`` attribute, else 0): the batches depend on the seed and the epoch only, and a run resumed
    mid-epoch trains on exactly the batches an uninterrupted run would have.

    Args:
        batch_size: Batch size of every dataloader.
        num_workers: Dataloader worker processes; 0 loads in the main process (fastest for these small sets).

    Raises:
        ValueError: If ``batch_size`` < 1 or ``num_workers`` < 0.
    """

    def __init__(self, batch_size: int, num_workers: int) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be at least 1, got {batch_size}.")
        if num_workers < 0:
            raise ValueError(f"`num_workers` must be >= 0, got {num_workers}.")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders are requested.")
        sampler = ResumableShuffleSampler(
            len(self.train_set),  # type: ignore[arg-type]
            seed=int(getattr(self, "seed", 0)),
            batch_size=self.batch_size,
            trainer=lambda: self.trainer,
        )
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)

    def _loader(self, dataset: Dataset | None, shuffle: bool = False) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders are requested.")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
