"""scikit-learn's 8x8 handwritten digits (1,797 images, bundled with scikit-learn) and a small conv net."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from lightning_tuning.demos.classification import ClassificationModule
from lightning_tuning.demos.datamodule import SplitDataModule

NUM_CLASSES = 10
_MAX_PIXEL_VALUE = 16.0  # load_digits stores 4-bit intensities


class DigitsDataModule(SplitDataModule):
    """The ``sklearn.datasets.load_digits`` images as ``(batch, 1, 8, 8)`` tensors scaled to [0, 1].

    The data ships with scikit-learn (no download). Validation and test sets are held out with a stratified,
    seeded split, so every class appears in every split.

    Args:
        val_fraction: Fraction of all images held out for validation.
        test_fraction: Fraction of all images held out for testing.
        batch_size: Batch size of every dataloader.
        num_workers: Dataloader worker processes.
        seed: Seeds the split.

    Raises:
        ValueError: If a fraction is outside (0, 1) or the two leave no training images.

    Example::

        dm = DigitsDataModule(batch_size=64)
        dm.setup("fit")
        images, labels = next(iter(dm.train_dataloader()))  # (64, 1, 8, 8), (64,)
    """

    def __init__(
        self,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 42,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < fraction < 1.0:
                raise ValueError(f"`{name}` must be strictly between 0 and 1, got {fraction}.")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"`val_fraction` + `test_fraction` must be below 1 to leave training images,"
                f" got {val_fraction} + {test_fraction}."
            )
        self.save_hyperparameters()
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed

    def setup(self, stage: str) -> None:
        if self.train_set is not None:
            return
        # scikit-learn is an optional (demos) dependency and slow to import: load it only when needed
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        images, labels = load_digits(return_X_y=True)
        images = (images / _MAX_PIXEL_VALUE).astype(np.float32).reshape(-1, 1, 8, 8)
        indices = np.arange(len(labels))
        rest, test_idx = train_test_split(
            indices, test_size=self.test_fraction, stratify=labels, random_state=self.seed
        )
        train_idx, val_idx = train_test_split(
            rest,
            test_size=self.val_fraction / (1.0 - self.test_fraction),
            stratify=labels[rest],
            random_state=self.seed,
        )
        self.train_set, self.val_set, self.test_set = (
            TensorDataset(torch.from_numpy(images[idx]), torch.from_numpy(labels[idx]).long())
            for idx in (train_idx, val_idx, test_idx)
        )


class DigitsConvNet(ClassificationModule):
    """A small 2-D conv net for 8x8 digits: two ``Conv2d`` + ``ReLU``, ``MaxPool2d``, one ``Linear``.

    Args:
        channels: Channels of the first convolution; the second has twice as many.
        lr: Learning rate of the default optimizer (AdamW).
        weight_decay: Weight decay of the default optimizer.

    Raises:
        ValueError: If ``channels`` < 1.

    Example::

        model = DigitsConvNet(channels=16)
        logits = model(torch.rand(4, 1, 8, 8))  # (4, 10)
    """

    def __init__(self, channels: int = 16, lr: float = 3e-3, weight_decay: float = 1e-2) -> None:
        super().__init__(num_classes=NUM_CLASSES, lr=lr, weight_decay=weight_decay)
        if channels < 1:
            raise ValueError(f"`channels` must be at least 1, got {channels}.")
        self.save_hyperparameters()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * channels * 4 * 4, NUM_CLASSES))

    def forward(self, images: Tensor) -> Tensor:
        """Maps images of shape ``(batch, 1, 8, 8)`` to logits of shape ``(batch, 10)``."""
        return self.head(self.features(images))
