"""The one LR coordinator per trainer, on modules written the way users write them.

Each test is a user's own module (a GAN with a critic stepped several times per batch, a fine-tuning module whose
backbone joins mid-fit, a module that changes its own LR) and checks the LRs every step really used against an
independent reference: torch's own schedulers, or the closed-form schedule.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BackboneFinetuning, StochasticWeightAveraging
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import nn
from torch.optim import lr_scheduler as torch_sched
from torch.utils.data import DataLoader, TensorDataset

from lightning_tuning import CosineAnnealing, CyclicLR, OneCycle, PlateauDecay, StepDecay, Warmup
from lightning_tuning.callbacks._coordinator import BASE_LR_KEY, coordinator_for
from lightning_tuning.callbacks._schedule import LRScheduleCallback
from tests.lr_helpers import LRRecorder, TwoGroupModel, fit, quiet_trainer


def loader(batches: int, batch_size: int = 4, features: int = 8) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(batches * batch_size, features, generator=generator)
    return DataLoader(TensorDataset(data), batch_size=batch_size)


class CriticGAN(LightningModule):
    """A WGAN-style module: manual optimization, `training_step(self, batch)`, the critic stepped `k` times a batch."""

    def __init__(self, critic_steps: int = 3, batches: int = 8) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.critic_steps = critic_steps
        self.batches = batches
        self.generator = nn.Linear(4, 8)
        self.critic = nn.Linear(8, 1)

    def training_step(self, batch: Any) -> None:
        (real,) = batch
        generator_opt, critic_opt = self.optimizers()  # type: ignore[misc]
        for _ in range(self.critic_steps):
            fake = self.generator(torch.randn(real.shape[0], 4)).detach()
            critic_loss = self.critic(fake).mean() - self.critic(real).mean()
            critic_opt.zero_grad()
            self.manual_backward(critic_loss)
            critic_opt.step()
        generator_loss = -self.critic(self.generator(torch.randn(real.shape[0], 4))).mean()
        generator_opt.zero_grad()
        self.manual_backward(generator_loss)
        generator_opt.step()

    def configure_optimizers(self) -> Any:
        return [
            torch.optim.SGD(self.generator.parameters(), lr=0.1),
            torch.optim.SGD(self.critic.parameters(), lr=0.2, momentum=0.9),
        ]

    def train_dataloader(self) -> DataLoader:
        return loader(self.batches)


def test_every_critic_step_uses_its_own_lr() -> None:
    # optimizer 1 (the critic) is not the one the first schedule targets: it still gets a write before each step
    recorder = LRRecorder()
    model = CriticGAN(critic_steps=3, batches=8)
    callbacks = [Warmup(4, optimizers=[0]), CosineAnnealing(T_max=24, eta_min=0.0, optimizers=[1]), recorder]
    with pytest.warns(UserWarning, match="fine if this optimizer steps more than once per batch"):
        quiet_trainer(max_epochs=1, callbacks=callbacks).fit(model)
    generator_lrs, critic_lrs = recorder.per_optimizer()
    reference = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2, momentum=0.9)
    scheduler = torch_sched.CosineAnnealingLR(reference, T_max=24, eta_min=0.0)
    expected = []
    for _ in range(24):
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        scheduler.step()
    assert critic_lrs == pytest.approx(expected, rel=1e-12)
    assert generator_lrs == pytest.approx([0.1 * min(1.0, (t + 1) / 4) for t in range(8)], rel=1e-12)


def test_whole_run_schedule_spans_each_optimizers_own_steps_under_max_steps() -> None:
    # Lightning's max_steps counts both optimizers' steps: 16 global steps are 8 batches, 8 steps of each optimizer
    recorder = LRRecorder()
    model = CriticGAN(critic_steps=1, batches=100)
    quiet_trainer(max_steps=16, callbacks=[CosineAnnealing(), recorder]).fit(model)
    generator_lrs, critic_lrs = recorder.per_optimizer()
    assert len(critic_lrs) == 8
    assert critic_lrs == pytest.approx([0.2 * (1 + math.cos(math.pi * t / 8)) / 2 for t in range(8)], rel=1e-12)
    assert generator_lrs == pytest.approx([0.1 * (1 + math.cos(math.pi * t / 8)) / 2 for t in range(8)], rel=1e-12)


def test_a_critic_stepping_more_than_once_with_a_run_relative_length_is_warned() -> None:
    with pytest.warns(UserWarning, match=r"took 6 steps in 2 batches.*CosineAnnealing"):
        quiet_trainer(max_epochs=1, callbacks=[CosineAnnealing()]).fit(CriticGAN(critic_steps=3, batches=2))


@pytest.mark.parametrize(
    "order",
    [(0, 1, 2), (0, 2, 1), (1, 0, 2), (2, 1, 0)],
)
def test_two_momentum_owners_are_refused_in_any_order(order: tuple[int, int, int]) -> None:
    callbacks = [Warmup(2), CyclicLR(0.01, 0.1, step_size_up=2), OneCycle(0.1)]
    trainer = quiet_trainer(max_steps=10, callbacks=[callbacks[i] for i in order])
    with pytest.raises(MisconfigurationException, match=r"all cycle its momentum; only one callback may"):
        trainer.fit(TwoGroupModel())


class TensorLRModel(TwoGroupModel):
    """The compiled-optimizer recipe: LRs and betas held as tensors."""

    def configure_optimizers(self) -> Any:
        weight, bias = self.layer.weight, self.layer.bias
        return torch.optim.Adam(
            [{"params": [weight], "lr": torch.tensor(0.1)}, {"params": [bias], "lr": torch.tensor(0.03)}],
            betas=(torch.tensor(0.9), torch.tensor(0.999)),
        )


def test_tensor_lrs_are_written_in_place_and_the_base_never_decays(tmp_path: Any) -> None:
    recorder = LRRecorder()
    model = TensorLRModel()
    trainer = fit(model, [Warmup(4), OneCycle(max_lr=[0.1, 0.03], total_steps=12), recorder], tmp_path, max_steps=12)
    reference = torch.optim.Adam(
        [{"params": [torch.zeros(1, requires_grad=True)], "lr": 0.1}, {"params": [torch.zeros(1)], "lr": 0.03}]
    )
    scheduler = torch_sched.OneCycleLR(reference, max_lr=[0.1, 0.03], total_steps=12)
    expected, expected_betas = [], []
    for t in range(12):
        warm = min(1.0, (t + 1) / 4)
        expected.append([warm * group["lr"] for group in reference.param_groups])
        expected_betas.append(reference.param_groups[0]["betas"][0])
        reference.step()
        scheduler.step()
    assert [[float(lr) for lr in lrs] for lrs in recorder.lrs] == [pytest.approx(e, rel=1e-6) for e in expected]
    assert [m[0] for m in recorder.momenta] == pytest.approx(expected_betas, rel=1e-6)
    groups = trainer.optimizers[0].param_groups
    # base LRs are float snapshots in the pack's own key; torch's `initial_lr` is left to torch
    assert [group[BASE_LR_KEY] for group in groups] == [pytest.approx(0.1), pytest.approx(0.03)]
    assert all(isinstance(group[BASE_LR_KEY], float) for group in groups)
    assert "initial_lr" not in groups[0]
    assert isinstance(groups[0]["lr"], torch.Tensor)
    assert isinstance(groups[0]["betas"][0], torch.Tensor)


class Finetune(LightningModule):
    """A fine-tuning module: a backbone that BackboneFinetuning unfreezes (adding its param group) at epoch 1."""

    def __init__(self, val_losses: list[float] | None = None) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        self.head = nn.Linear(8, 1)
        self.val_losses = val_losses or [1.0] * 10
        self.validations = 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        (x,) = batch
        return self.head(self.backbone(x)).pow(2).mean()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        return None

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.log("val_loss", self.val_losses[self.validations])
            self.validations += 1

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(filter(lambda p: p.requires_grad, self.parameters()), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return loader(4)

    def val_dataloader(self) -> DataLoader:
        return loader(1)


def test_a_param_group_added_mid_fit_joins_with_its_own_lr_and_keeps_earlier_reductions() -> None:
    recorder = LRRecorder()
    finetuning = BackboneFinetuning(unfreeze_backbone_at_epoch=1, backbone_initial_lr=0.05)
    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=0, callbacks=[finetuning, CosineAnnealing(), recorder])
    trainer.fit(Finetune())
    cosine = [(1 + math.cos(math.pi * t / 8)) / 2 for t in range(8)]
    assert [lrs[0] for lrs in recorder.lrs] == pytest.approx([0.1 * c for c in cosine], rel=1e-12)
    # the backbone joined at epoch 1 with BackboneFinetuning's LR (backbone_initial_lr) as its base, cosine applied
    backbone = [lrs[1] for lrs in recorder.lrs if len(lrs) == 2]
    assert backbone == pytest.approx([0.05 * c for c in cosine[4:]], rel=1e-12)


def test_plateau_reductions_survive_a_group_added_mid_fit() -> None:
    recorder = LRRecorder()
    finetuning = BackboneFinetuning(unfreeze_backbone_at_epoch=2, backbone_initial_lr=0.05)
    model = Finetune(val_losses=[1.0, 2.0, 3.0, 4.0])
    trainer = quiet_trainer(
        max_epochs=3,
        num_sanity_val_steps=0,
        callbacks=[finetuning, PlateauDecay(factor=0.5, patience=0), recorder],
    )
    trainer.fit(model)
    head = [lrs[0] for lrs in recorder.lrs]
    # validations after epochs 0 and 1: 1.0 (best), 2.0 (worse: halve); epoch 2 trains the head at 0.05
    assert head == pytest.approx([0.1] * 4 + [0.1] * 4 + [0.05] * 4)
    backbone = [lrs[1] for lrs in recorder.lrs if len(lrs) == 2]
    assert backbone == pytest.approx([0.05] * 4), "the new group joins at scale 1, not at the head's reduction"
    # the validation after epoch 2 (3.0) reduces again: the head's earlier reduction is kept, the backbone's first
    plateau = next(cb for cb in trainer.callbacks if isinstance(cb, PlateauDecay))
    assert plateau._trackers[0].scales == [0.25, 0.5]


def test_a_param_group_removed_mid_fit_is_an_error() -> None:
    class DropGroup(Callback):
        def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
            if trainer.current_epoch == 1:
                trainer.optimizers[0].param_groups.pop()

    trainer = quiet_trainer(max_epochs=2, limit_train_batches=2, callbacks=[Warmup(2), DropGroup()])
    with pytest.raises(MisconfigurationException, match=r"had 2 param groups and now has 1"):
        trainer.fit(TwoGroupModel())


def test_stochastic_weight_averaging_is_refused_with_what_to_do() -> None:
    trainer = quiet_trainer(max_epochs=2, callbacks=[Warmup(2), StochasticWeightAveraging(swa_lrs=0.01)])
    with pytest.raises(MisconfigurationException, match=r"StochasticWeightAveraging .* would both own"):
        trainer.fit(TwoGroupModel())


def test_a_torch_scheduler_added_mid_fit_is_caught_at_the_next_epoch() -> None:
    class AddScheduler(Callback):
        def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
            if trainer.current_epoch == 0:
                from lightning.pytorch.utilities.types import LRSchedulerConfig

                scheduler = torch_sched.StepLR(trainer.optimizers[0], step_size=1)
                trainer.strategy.lr_scheduler_configs.append(LRSchedulerConfig(scheduler))

    trainer = quiet_trainer(max_epochs=3, limit_train_batches=2, callbacks=[AddScheduler(), Warmup(2)])
    with pytest.raises(MisconfigurationException, match=r"StepLR\) that was added during fit"):
        trainer.fit(TwoGroupModel())


class HalvesItsOwnLR(TwoGroupModel):
    """A module that multiplies its LR by 0.5 after every batch, the way a scheduler stepped by hand would."""

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for group in self.trainer.optimizers[0].param_groups:
            group["lr"] *= 0.5


def test_an_lr_changed_by_another_owner_is_composed_and_reported(tmp_path: Any) -> None:
    recorder = LRRecorder()
    with pytest.warns(UserWarning, match=r"changed outside the schedule callbacks"):
        fit(HalvesItsOwnLR(), [Warmup(4), recorder], tmp_path, max_steps=6)
    # torch's chainable semantics: both multiply, lr_t = base * warmup(t) * 0.5 ** t
    expected = [0.1 * min(1.0, (t + 1) / 4) * 0.5**t for t in range(6)]
    assert [lrs[0] for lrs in recorder.lrs] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("callback", "first_lrs"),
    [
        (lambda: CosineAnnealing(T_0="2epochs"), lambda t: 0.1 * (1 + math.cos(math.pi * (t % 20) / 20)) / 2),
        (lambda: Warmup("1epochs"), lambda t: 0.1 * min(1.0, (t + 1) / 10)),
        (lambda: StepDecay(step_size="50%", interval="epoch"), lambda t: 0.1 * (0.1 if t >= 20 else 1.0)),
    ],
)
def test_epoch_durations_resolve_when_only_max_steps_bounds_the_run(callback: Any, first_lrs: Any) -> None:
    recorder = LRRecorder()
    quiet_trainer(max_steps=40, limit_train_batches=10, callbacks=[callback(), recorder]).fit(TwoGroupModel())
    assert [lrs[0] for lrs in recorder.lrs] == pytest.approx([first_lrs(t) for t in range(40)], rel=1e-12)


def test_one_cycle_with_an_empty_rising_phase_is_refused_before_training() -> None:
    trainer = quiet_trainer(max_steps=10, callbacks=[OneCycle(0.1, total_steps=10, pct_start=0.1)])
    with pytest.raises(MisconfigurationException, match=r"leaves a phase with no steps"):
        trainer.fit(TwoGroupModel())


def test_state_key_is_built_once_per_callback(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    calls = []
    original = LRScheduleCallback._generate_state_key

    def counting(self: Any, **kwargs: Any) -> str:
        calls.append(type(self).__name__)
        return original(self, **kwargs)

    monkeypatch.setattr(LRScheduleCallback, "_generate_state_key", counting)
    fit(TwoGroupModel(), [Warmup(2), CosineAnnealing(start="after_warmup")], tmp_path, max_steps=20)
    assert sorted(calls) == ["CosineAnnealing", "Warmup"]


def test_the_coordinator_leaves_the_trainer_after_fit(tmp_path: Any) -> None:
    trainer = fit(TwoGroupModel(), [Warmup(2), CosineAnnealing()], tmp_path, max_steps=4)
    assert coordinator_for(trainer) is None
    assert not trainer.optimizers[0]._optimizer_step_post_hooks


def test_a_lightning_optimizer_wrapper_is_unwrapped(tmp_path: Any) -> None:
    # manual optimization hands out LightningOptimizer wrappers; names and hooks go to the torch optimizer inside
    from lightning_tuning.callbacks._names import lr_names, unwrap_optimizer

    inner = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    wrapped = LightningOptimizer(inner)
    assert unwrap_optimizer(wrapped) is inner
    assert lr_names([wrapped, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)]) == [
        ["lr-SGD"],
        ["lr-SGD-1"],
    ]
