"""NonFiniteLossGuard: one report with the step and LR, stop or go on, manual optimization, deferred reads."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningModule
from lightning.pytorch.demos.boring_classes import BoringModel

from lightning_tuning import NonFiniteLossGuard
from tests.lr_helpers import quiet_trainer

NAN_FROM = 5


class DivergesAt(BoringModel):
    """BoringModel whose loss is NaN from optimizer step ``NAN_FROM`` on; records the steps that ran."""

    def __init__(self) -> None:
        super().__init__()
        self.steps_run: list[int] = []

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        self.steps_run.append(self.global_step)
        output = super().training_step(batch, batch_idx)
        if self.global_step >= NAN_FROM:
            output["loss"] = output["loss"] * float("nan")
        return output


class ManualGAN(LightningModule):
    """Two optimizers stepped by hand, nothing returned: the guard reads the logged ``d_loss``/``g_loss``."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator = torch.nn.Linear(4, 4)
        self.discriminator = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any) -> None:
        g_opt, d_opt = self.optimizers()  # type: ignore[misc]
        fake = self.generator(torch.randn(8, 4))
        d_loss = self.discriminator(fake.detach()).mean()
        if self.global_step >= 2 * NAN_FROM:  # two optimizer steps per batch
            d_loss = d_loss * float("inf")
        d_opt.zero_grad()
        self.manual_backward(d_loss)
        d_opt.step()
        g_loss = -self.discriminator(fake).mean()
        g_opt.zero_grad()
        self.manual_backward(g_loss)
        g_opt.step()
        self.log_dict({"d_loss": d_loss, "g_loss": g_loss})

    def configure_optimizers(self) -> Any:
        return [
            torch.optim.Adam(self.generator.parameters(), 1e-3),
            torch.optim.SGD(self.discriminator.parameters(), 0.1),
        ]

    def train_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(torch.zeros(40, 1), batch_size=2)


def fit(model: LightningModule, guard: NonFiniteLossGuard, **kwargs: Any) -> list[str]:
    trainer = quiet_trainer(
        max_epochs=2,
        limit_train_batches=10,
        limit_val_batches=0,
        enable_checkpointing=False,
        callbacks=[guard],
        **kwargs,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model)
    return [
        str(w.message) for w in caught if "NaN" in str(w.message) or "nan" in str(w.message) or "inf" in str(w.message)
    ]


def test_stop_reports_once_with_step_and_lr_and_stops_after_that_batch() -> None:
    model = DivergesAt()
    guard = NonFiniteLossGuard(action="stop")
    messages = fit(model, guard)
    assert len(messages) == 1
    assert f"optimizer step {NAN_FROM}" in messages[0]
    assert "learning rate(s) 0.1" in messages[0]  # BoringModel's SGD(lr=0.1)
    assert "lr_find" in messages[0]
    assert "warmup" in messages[0]
    assert model.steps_run == list(range(NAN_FROM + 1)), "the run stops after the batch with the first NaN"
    assert guard.tripped_at == NAN_FROM


def test_warn_reports_once_and_goes_on() -> None:
    model = DivergesAt()
    messages = fit(model, NonFiniteLossGuard(action="warn"))
    assert len(messages) == 1, "reported once, not on each of the NaN steps"
    assert model.steps_run == list(range(20))


def test_manual_optimization_watches_the_logged_losses() -> None:
    guard = NonFiniteLossGuard()
    messages = fit(ManualGAN(), guard)
    assert len(messages) == 1
    assert guard.tripped_at == 2 * NAN_FROM
    assert "Adam[0]: 0.001; SGD[1]: 0.1" in messages[0]


def test_deferred_check_reads_the_flag_at_the_next_logging_step() -> None:
    model = DivergesAt()
    guard = NonFiniteLossGuard(defer=True)
    messages = fit(model, guard, log_every_n_steps=4)
    assert len(messages) == 1
    # logging steps are every 4 batches: the NaN of step 5 is read at the batch of step 7
    assert "between optimizer steps 4 and 7" in messages[0]
    assert model.steps_run[-1] == 7


def test_finite_run_is_untouched() -> None:
    guard = NonFiniteLossGuard()
    assert fit(BoringModel(), guard) == []
    assert guard.tripped_at is None


def test_bad_action_is_refused() -> None:
    with pytest.raises(MisconfigurationException, match=r"`action='halt'` is not allowed; use 'warn'"):
        NonFiniteLossGuard(action="halt")  # type: ignore[arg-type]
