"""A small GAN on synthetic data, written the way third-party Lightning code usually is: manual optimization, two
optimizers stepped at will, ``training_step(self, batch)``, and losses named ``d_loss``/``g_loss``.

The data is a ring of ``modes`` Gaussians in the plane (the classic "8 Gaussians" toy problem); the validation metric
``val_mode_distance`` is the mean distance from generated points to their nearest mode centre, so it falls as the
generator learns, and ``val_modes_covered`` counts the modes that receive at least ``1/(4 * modes)`` of the samples.
It knows nothing of this package, which is the point: the dashboard and the schedules have to work on it as is.
"""

from __future__ import annotations

import math

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def ring_centres(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The ``(modes, 2)`` centres of the ring's Gaussians, evenly spaced on a circle of ``radius``."""
    angles = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def ring_samples(count: int, modes: int = 8, radius: float = 2.0, std: float = 0.05, seed: int = 0) -> torch.Tensor:
    """``count`` points drawn from the ring of Gaussians, reproducibly (own generator; global RNG untouched)."""
    generator = torch.Generator().manual_seed(seed)
    which = torch.randint(modes, (count,), generator=generator)
    noise = torch.randn(count, 2, generator=generator) * std
    return ring_centres(modes, radius)[which] + noise


class RingDataModule(LightningDataModule):
    """Points from a ring of Gaussians: ``num_samples`` for training, a quarter as many for validation.

    Args:
        num_samples: training points per epoch.
        batch_size: points per batch.
        modes: Gaussians on the ring.
        seed: seed of the data (independent of the global seed).
    """

    def __init__(self, num_samples: int = 4096, batch_size: int = 128, modes: int = 8, seed: int = 0) -> None:
        super().__init__()
        if num_samples < batch_size or batch_size < 1:
            raise ValueError(
                f"RingDataModule: `num_samples={num_samples}` must be at least `batch_size={batch_size}` (>= 1)."
            )
        self.save_hyperparameters()
        self.train_points = ring_samples(num_samples, modes, seed=seed)
        self.val_points = ring_samples(max(batch_size, num_samples // 4), modes, seed=seed + 1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.train_points), batch_size=self.hparams["batch_size"], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.val_points), batch_size=len(self.val_points))


def _mlp(inputs: int, hidden: int, outputs: int, activation: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden), activation(), nn.Linear(hidden, hidden), activation(), nn.Linear(hidden, outputs)
    )


class RingGAN(LightningModule):
    """Generator and discriminator MLPs trained with the non-saturating GAN loss, one step of each per batch.

    Args:
        latent_dim: size of the generator's input noise.
        hidden: width of both MLPs.
        lr_g: the generator's Adam learning rate.
        lr_d: the discriminator's Adam learning rate.
        modes: Gaussians on the ring (for the validation metrics; match the data).
    """

    def __init__(
        self, latent_dim: int = 8, hidden: int = 64, lr_g: float = 1e-3, lr_d: float = 1e-3, modes: int = 8
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = _mlp(latent_dim, hidden, 2, nn.ReLU)
        self.discriminator = _mlp(2, hidden, 1, lambda: nn.LeakyReLU(0.2))  # type: ignore[arg-type]
        self.register_buffer("centres", ring_centres(modes))

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.generator(noise)

    def sample(self, count: int) -> torch.Tensor:
        return self(torch.randn(count, self.hparams["latent_dim"], device=self.device))

    def training_step(self, batch: list[torch.Tensor]) -> None:
        (real,) = batch
        optimizers = self.optimizers()
        assert isinstance(optimizers, list), "configure_optimizers returns two optimizers"
        g_opt, d_opt = optimizers
        loss = nn.functional.binary_cross_entropy_with_logits
        ones = torch.ones(len(real), 1, device=self.device)
        zeros = torch.zeros(len(real), 1, device=self.device)

        fake = self.sample(len(real))
        d_loss = loss(self.discriminator(real), ones) + loss(self.discriminator(fake.detach()), zeros)
        d_opt.zero_grad()
        self.manual_backward(d_loss)
        d_opt.step()

        g_loss = loss(self.discriminator(fake), ones)
        g_opt.zero_grad()
        self.manual_backward(g_loss)
        g_opt.step()
        self.log_dict({"d_loss": d_loss, "g_loss": g_loss}, prog_bar=True)

    def validation_step(self, batch: list[torch.Tensor]) -> None:
        (real,) = batch
        fake = self.sample(len(real))
        distances = torch.cdist(fake, self.centres)  # type: ignore[arg-type]
        nearest = distances.min(dim=1)
        counts = torch.bincount(nearest.indices, minlength=self.hparams["modes"]).float()
        covered = (counts >= len(fake) / (4 * self.hparams["modes"])).sum().float()
        self.log_dict({"val_mode_distance": nearest.values.mean(), "val_modes_covered": covered})

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (0.5, 0.999)
        return [
            torch.optim.Adam(self.generator.parameters(), lr=self.hparams["lr_g"], betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams["lr_d"], betas=betas),
        ]
