"""Tensor LRs under a compiled optimizer step (torch's compiled-optimizer recipe): schedules cause no recompilation."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch._dynamo.utils import counters
from torch.utils.data import DataLoader, TensorDataset

from lightning_tuning import CosineAnnealing, OneCycle, Warmup
from tests.lr_helpers import LRRecorder, quiet_trainer

STEPS = 50


class CompiledStep(LightningModule):
    """Manual optimization with the optimizer step compiled, LR and betas held as tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = nn.Linear(8, 1)
        self.compiled_step: Any = None

    def training_step(self, batch: Any, batch_idx: int) -> None:
        (x,) = batch
        optimizer = self.optimizers().optimizer  # type: ignore[union-attr]
        if self.compiled_step is None:
            self.compiled_step = torch.compile(optimizer.step, backend="aot_eager")
        optimizer.zero_grad()
        self.manual_backward(self.net(x).pow(2).mean())
        self.compiled_step()

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(
            self.parameters(), lr=torch.tensor(0.01), betas=(torch.tensor(0.9), torch.tensor(0.999))
        )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(STEPS * 2, 8)), batch_size=2)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("callbacks", "expected"),
    [
        (
            lambda: [Warmup(5), CosineAnnealing(start="after_warmup")],
            lambda t: 0.01 * min(1.0, (t + 1) / 5) * (1 + math.cos(math.pi * max(0, t - 4) / (STEPS - 4))) / 2,
        ),
        (lambda: [OneCycle(max_lr=0.02)], None),
    ],
    ids=["warmup-cosine", "one-cycle-momentum"],
)
def test_compiled_step_never_recompiles(callbacks: Any, expected: Any) -> None:
    torch._dynamo.reset()
    counters.clear()
    recorder = LRRecorder()
    with torch._dynamo.config.patch(error_on_recompile=True):
        quiet_trainer(max_epochs=1, callbacks=[*callbacks(), recorder]).fit(CompiledStep())
    lrs = [lrs[0] for lrs in recorder.lrs]
    assert len(lrs) == STEPS
    assert len(set(lrs)) > STEPS // 2, "the LR must actually move every step"
    if expected is not None:
        assert lrs == pytest.approx([expected(t) for t in range(STEPS)], rel=1e-5)
    else:
        reference = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.01)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.02, total_steps=STEPS)
        want, want_betas = [], []
        for _ in range(STEPS):
            want.append(reference.param_groups[0]["lr"])
            want_betas.append(reference.param_groups[0]["betas"][0])
            reference.step()
            scheduler.step()
        assert lrs == pytest.approx(want, rel=1e-5)
        assert [m[0] for m in recorder.momenta] == pytest.approx(want_betas, rel=1e-5)
    assert counters["stats"]["unique_graphs"] >= 1, "the step was not compiled"
