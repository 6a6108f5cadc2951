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


# ------------------------------------------------------------------ modules people really write (issue 14)


def image_data(n: int = 64, side: int = 8, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, side, side, generator=generator) * 2 - 1
    labels = torch.randint(0, 10, (n,), generator=generator)
    return TensorDataset(images, labels)


class TinyGAN(pl.LightningModule):
    """Two optimizers, manual optimization, ``training_step(self, batch)``; ``forward`` is the generator."""

    def __init__(self, latent_dim: int = 16, side: int = 8, example: bool = True) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.latent_dim = latent_dim
        pixels = side * side
        self.generator = nn.Sequential(
            nn.Linear(latent_dim, 32), nn.BatchNorm1d(32), nn.LeakyReLU(0.2),
            nn.Linear(32, 64), nn.LeakyReLU(0.2),
            nn.Linear(64, pixels), nn.Tanh(),
        )  # fmt: skip
        self.discriminator = nn.Sequential(nn.Linear(pixels, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1), nn.Sigmoid())
        self.side = side
        if example:
            self.example_input_array = torch.zeros(2, latent_dim)
        self.steps_run = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z).view(-1, 1, self.side, self.side)

    def training_step(self, batch):
        images, _ = batch
        opt_g, opt_d = self.optimizers()
        self.steps_run += 1
        z = torch.randn(images.shape[0], self.latent_dim, device=images.device)
        real = torch.ones(images.shape[0], 1, device=images.device)
        fake = torch.zeros_like(real)
        g_loss = F.binary_cross_entropy(self.discriminator(self(z).flatten(1)), real)
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        d_real = F.binary_cross_entropy(self.discriminator(images.flatten(1)), real)
        d_fake = F.binary_cross_entropy(self.discriminator(self(z).detach().flatten(1)), fake)
        d_loss = (d_real + d_fake) / 2
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.log_dict({"g_loss": g_loss, "d_loss": d_loss})

    def configure_optimizers(self):
        return (
            torch.optim.Adam(self.generator.parameters(), lr=2e-4, betas=(0.5, 0.999)),
            torch.optim.Adam(self.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999)),
        )

    def train_dataloader(self):
        return DataLoader(image_data(side=self.side), batch_size=16)


class LitAutoEncoder(pl.LightningModule):
    """Lightning's README autoencoder shape: ``forward`` is the encoder only; the output layer is ``decoder.2``;
    batches are ``(images, labels)`` that ``training_step`` flattens."""

    def __init__(self, side: int = 8, hidden: int = 32, code: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()
        pixels = side * side
        self.encoder = nn.Sequential(nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, code))
        self.decoder = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, pixels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def training_step(self, batch, batch_idx):
        x, _ = batch
        x = x.view(x.size(0), -1)
        loss = F.mse_loss(self.decoder(self.encoder(x)), x)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)

    def train_dataloader(self):
        return DataLoader(image_data(side=self.hparams.side), batch_size=16)


class FullAutoEncoder(LitAutoEncoder):
    """The same, with ``forward`` = encoder + decoder (output layer ``decoder.2`` reached by ``forward`` itself)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x.flatten(1)))

    def training_step(self, batch, batch_idx):
        x, _ = batch
        return F.mse_loss(self(x), x.flatten(1))


def token_data(n: int = 32, length: int = 12, vocab: int = 50, seed: int = 0) -> TensorDataset:
    """Synthetic next-token data for Lightning's LightningTransformer (no WikiText2 download)."""
    generator = torch.Generator().manual_seed(seed)
    stream = torch.randint(0, vocab, (n * length + 1,), generator=generator)
    inputs = stream[:-1].view(n, length)
    targets = stream[1:].view(n, length)
    return TensorDataset(inputs, targets)


class MiniGPT(pl.LightningModule):
    """minGPT-style: a root-level ``pos_emb`` parameter and ``configure_optimizers`` that sorts every parameter into
    decay / no-decay sets by its *name* and asserts that none is left over."""

    def __init__(self, vocab: int = 50, width: int = 32, length: int = 12) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, width)
        self.pos_emb = nn.Parameter(torch.zeros(1, length, width))
        self.attn = nn.MultiheadAttention(width, 2, batch_first=True)
        self.ln = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(idx) + self.pos_emb[:, : idx.shape[1]]
        x = x + self.attn(x, x, x, need_weights=False)[0]
        x = x + self.mlp(self.ln(x))
        return self.head(x)

    def training_step(self, batch, batch_idx):
        idx, targets = batch
        logits = self(idx)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    def configure_optimizers(self):
        decay, no_decay = set(), set()
        for mn, m in self.named_modules():
            for pn, _ in m.named_parameters(recurse=False):
                fpn = f"{mn}.{pn}" if mn else pn
                if pn.endswith("bias"):
                    no_decay.add(fpn)
                elif pn.endswith("weight") and isinstance(m, nn.Linear):
                    decay.add(fpn)
                elif pn.endswith("weight") and isinstance(m, (nn.LayerNorm, nn.Embedding)):
                    no_decay.add(fpn)
        no_decay.add("pos_emb")
        no_decay.add("attn.in_proj_weight")
        params = dict(self.named_parameters())
        assert not decay & no_decay
        left = params.keys() - (decay | no_decay)
        assert not left, f"parameters {left} were not separated into either decay/no_decay set!"
        groups = [
            {"params": [params[n] for n in sorted(decay)], "weight_decay": 0.1},
            {"params": [params[n] for n in sorted(no_decay)], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=1e-3)

    def train_dataloader(self):
        return DataLoader(token_data(), batch_size=8)


#: kaiming_normal with `nonlinearity: auto` on every Linear, biases zero (the rule the depth measurements use)
HE_AUTO_RULES = [
    {"modules": ["linear"], "weight": "kaiming_normal", "weight_args": {"nonlinearity": "auto"}, "bias": "zeros"}
]
#: the activations the issue names for the 20-layer depth measurement
DEPTH_ACTIVATIONS = {
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
}
