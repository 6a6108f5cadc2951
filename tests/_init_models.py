"""Tiny LightningModules shared by the weight-init tests (module level, so ddp_spawn can pickle them)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int = 256, features: int = 16, classes: int = 4, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    y = torch.randint(0, classes, (n,), generator=generator)
    return TensorDataset(x, y)


class TinyMLP(pl.LightningModule):
    """Linear → ReLU → Linear → GELU → BatchNorm-free head; optional dropout and a BatchNorm to test hygiene."""

    def __init__(self, features: int = 16, width: int = 32, classes: int = 4, depth: int = 2, batchnorm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        size = features
        for i in range(depth):
            layers.append(nn.Linear(size, width))
            if batchnorm and i == 0:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU() if i % 2 == 0 else nn.GELU())
            size = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return DataLoader(make_data(), batch_size=64, shuffle=True)


class NoDataMLP(TinyMLP):
    """No train_dataloader of its own (data given to fit, or none at all)."""

    train_dataloader = None  # type: ignore[assignment]


class LateMLP(TinyMLP):
    """Builds its layers in configure_model (idempotent), as large models do."""

    def __init__(self) -> None:
        pl.LightningModule.__init__(self)
        self.body = None
        self.head = None

    def configure_model(self) -> None:
        if self.body is not None:
            return
        self.body = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.head = nn.Linear(32, 4)


class RankNoiseMLP(TinyMLP):
    """Draws rank-dependent numbers from the global RNG before init, to prove the init does not depend on it."""

    def setup(self, stage: str) -> None:
        torch.manual_seed(1000 + self.global_rank)
        torch.rand(17)
