"""MNIST-1D (Greydanus, 2020): 1-D signals of the ten digits, generated locally and cached on disk."""

from __future__ import annotations

import importlib.metadata
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from lightning_tuning.demos.cache import cache_key, resolve_cache_dir, save_arrays_atomically
from lightning_tuning.demos.datamodule import SplitDataModule

SEQUENCE_LENGTH = 40
NUM_CLASSES = 10


def generate_mnist1d(num_samples: int, train_split: float, seed: int) -> dict[str, np.ndarray]:
    """Generates MNIST-1D with the ``mnist1d`` package, without network access.

    Args:
        num_samples: Total number of signals (rounded down to a multiple of 10: equal counts per digit).
        train_split: Fraction of the signals in the training part; the rest is the held-out test part.
        seed: Seed of the generator; 42 with 5000 samples and 0.8 reproduces the official 4000/1000 split.

    Returns:
        ``x``, ``y`` (training part) and ``x_test``, ``y_test`` (test part); signals are float32 of shape
        ``(n, 40)``, labels int64.
    """
    # mnist1d imports matplotlib and requests at import time: load it only when data must be generated
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.train_split = train_split
    args.seed = seed
    # make_dataset reseeds the global `random` and numpy generators; leave the caller's random streams untouched
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        dataset = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return {
        "x": dataset["x"].astype(np.float32),
        "y": dataset["y"].astype(np.int64),
        "x_test": dataset["x_test"].astype(np.float32),
        "y_test": dataset["y_test"].astype(np.int64),
    }


def mnist1d_cache_path(num_samples: int, train_split: float, seed: int, cache_dir: str | Path | None = None) -> Path:
    """The cache file of one generated MNIST-1D variant; the name hashes every generation parameter."""
    from mnist1d.data import get_dataset_args

    params: dict[str, Any] = get_dataset_args(as_dict=True)
    params.pop("url")  # where the official pickle is hosted does not change what we generate
    params.update(num_samples=num_samples, train_split=train_split, seed=seed)
    params["mnist1d_version"] = importlib.metadata.version("mnist1d")
    return resolve_cache_dir(cache_dir) / "mnist1d" / f"mnist1d-{cache_key(params)}.npz"


def load_mnist1d(
    num_samples: int, train_split: float, seed: int, cache_dir: str | Path | None = None
) -> dict[str, np.ndarray]:
    """Loads MNIST-1D from the cache, generating and caching it first if needed (see :func:`generate_mnist1d`)."""
    path = mnist1d_cache_path(num_samples, train_split, seed, cache_dir)
    if not path.is_file():
        save_arrays_atomically(path, generate_mnist1d(num_samples, train_split, seed))
    with np.load(path) as arrays:
        return {name: arrays[name] for name in arrays.files}


class MNIST1DDataModule(SplitDataModule):
    """MNIST-1D: classify 40-sample 1-D signals into the ten digits.

    The ``mnist1d`` package generates the data locally (nothing is downloaded); the arrays are cached under
    ``cache_dir`` keyed by every generation parameter. The validation set is held out from the training part
    (a seeded random ``val_fraction`` of it); the test set is the generator's held-out test part. Batches are
    ``(signals, labels)`` with signals of shape ``(batch, 40)``.

    Args:
        num_samples: Total number of generated signals; the official data set has 5000.
        train_split: Fraction of ``num_samples`` for training + validation; the rest is the test set.
        val_fraction: Fraction of the training part held out for validation.
        batch_size: Batch size of every dataloader.
        num_workers: Dataloader worker processes; 0 loads in the main process (fastest for this small set).
        seed: Seeds generation and the train/validation split.
        cache_dir: Directory of cached arrays; defaults to ``$LIGHTNING_TUNING_CACHE`` or
            ``~/.cache/lightning_tuning``.

    Raises:
        ValueError: If a size or fraction is out of range, or a split would be empty.

    Example::

        dm = MNIST1DDataModule(num_samples=5000, batch_size=100)
        dm.prepare_data()
        dm.setup("fit")
        signals, labels = next(iter(dm.train_dataloader()))  # (100, 40), (100,)
    """

    def __init__(
        self,
        num_samples: int = 5000,
        train_split: float = 0.8,
        val_fraction: float = 0.1,
        batch_size: int = 100,
        num_workers: int = 0,
        seed: int = 42,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        if num_samples < NUM_CLASSES:
            raise ValueError(f"`num_samples` must be at least {NUM_CLASSES} (one per digit), got {num_samples}.")
        for name, fraction in (("train_split", train_split), ("val_fraction", val_fraction)):
            if not 0.0 < fraction < 1.0:
                raise ValueError(f"`{name}` must be strictly between 0 and 1, got {fraction}.")
        self.save_hyperparameters()
        self.num_samples = num_samples
        self.train_split = train_split
        self.val_fraction = val_fraction
        self.seed = seed
        self.cache_dir = cache_dir

    @property
    def cache_path(self) -> Path:
        """The cache file of this configuration."""
        return mnist1d_cache_path(self.num_samples, self.train_split, self.seed, self.cache_dir)

    def prepare_data(self) -> None:
        load_mnist1d(self.num_samples, self.train_split, self.seed, self.cache_dir)

    def setup(self, stage: str) -> None:
        if self.train_set is not None:
            return
        arrays = load_mnist1d(self.num_samples, self.train_split, self.seed, self.cache_dir)
        num_train = len(arrays["y"])
        num_val = round(num_train * self.val_fraction)
        if num_val < 1 or num_val >= num_train or len(arrays["y_test"]) < 1:
            raise ValueError(
                f"num_samples={self.num_samples}, train_split={self.train_split} and val_fraction={self.val_fraction}"
                f" give {num_train - num_val} training, {num_val} validation and {len(arrays['y_test'])} test"
                " signals; every split needs at least one. Increase `num_samples` or adjust the fractions."
            )
        order = np.random.default_rng(self.seed).permutation(num_train)
        val_idx, train_idx = order[:num_val], order[num_val:]
        signals, labels = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
        self.train_set = TensorDataset(signals[train_idx], labels[train_idx])
        self.val_set = TensorDataset(signals[val_idx], labels[val_idx])
        self.test_set = TensorDataset(torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"]))
