"""TuningDashboard on modules nobody here tailored to it: Lightning's BoringModel (its own StepLR), a plain autoencoder,
a GAN with two optimizers under manual optimization, a module without an optimizer. Read back with TensorBoard's own
EventAccumulator and checked against closed-form schedules and torch's own schedulers."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as cs_meta
from torch import nn
from torch.utils.data import DataLoader

from lightning_tuning import CosineAnnealing, OneCycle, TuningDashboard, Warmup
from tests.lr_helpers import quiet_trainer

BATCHES = 4  # training batches per epoch in every run here


def fit_logged(
    tmp_path: Path, model: LightningModule, callbacks: list[Any], epochs: int = 3, name: str = "run", **kwargs: Any
) -> Path:
    logger = TensorBoardLogger(tmp_path, name=name)
    kwargs = {"log_every_n_steps": 1, **kwargs}
    trainer = quiet_trainer(
        default_root_dir=tmp_path,
        logger=logger,
        max_epochs=epochs,
        limit_train_batches=BATCHES,
        limit_val_batches=1,
        enable_checkpointing=False,
        callbacks=callbacks,
        **kwargs,
    )
    trainer.fit(model)
    return Path(logger.log_dir)


def read(log_dir: Path) -> ea.EventAccumulator:
    return ea.EventAccumulator(str(log_dir), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0, ea.IMAGES: 0}).Reload()


def series(acc: ea.EventAccumulator, tag: str) -> dict[int, float]:
    events = acc.Scalars(tag)
    steps = [event.step for event in events]
    assert len(steps) == len(set(steps)), f"{tag} logged twice at one step: {steps}"
    return {event.step: event.value for event in events}


def charts(acc: ea.EventAccumulator) -> dict[str, list[str]]:
    tensors = acc.Tensors(cs_meta.CONFIG_SUMMARY_TAG)
    assert len(tensors) == 1, "the layout is written once"
    layout = layout_pb2.Layout.FromString(tensors[0].tensor_proto.string_val[0])
    return {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}


def matched(chart: list[str], tags: list[str]) -> set[str]:
    return {tag for tag in tags if any(re.search(pattern, tag) for pattern in chart)}


# ---- user-style modules


class AutoEncoder(LightningModule):
    """A plain autoencoder: one Adam, no schedule, ``training_step(self, batch)``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(32, 8), nn.ReLU())
        self.decoder = nn.Linear(8, 32)

    def training_step(self, batch: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.mse_loss(self.decoder(self.encoder(batch)), batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: torch.Tensor) -> None:
        self.log("val_loss", nn.functional.mse_loss(self.decoder(self.encoder(batch)), batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=2e-3)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 64), batch_size=4)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 8), batch_size=4)


class TinyGAN(LightningModule):
    """A GAN on Gaussian noise with manual optimization: generator Adam, discriminator Adam with two named groups."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8))
        self.body = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2))
        self.head = nn.Linear(16, 1)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def training_step(self, batch: torch.Tensor) -> None:
        g_opt, d_opt = self.optimizers()  # type: ignore[misc]
        real = batch
        fake = self.generator(torch.randn(real.shape[0], 4))
        bce = nn.functional.binary_cross_entropy_with_logits
        ones, zeros = torch.ones(real.shape[0], 1), torch.zeros(real.shape[0], 1)
        d_loss = bce(self.discriminate(real), ones) + bce(self.discriminate(fake.detach()), zeros)
        d_opt.zero_grad()
        self.manual_backward(d_loss)
        d_opt.step()
        g_loss = bce(self.discriminate(fake), ones)
        g_opt.zero_grad()
        self.manual_backward(g_loss)
        g_opt.step()
        self.log_dict({"d_loss": d_loss, "g_loss": g_loss})

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        g_opt = torch.optim.Adam(self.generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
        d_opt = torch.optim.Adam(
            [
                {"params": self.body.parameters(), "name": "body"},
                {"params": self.head.parameters(), "lr": 1e-3, "name": "head"},
            ],
            lr=4e-3,
            betas=(0.5, 0.999),
        )
        return [g_opt, d_opt]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.randn(64, 8) * 0.5 + 2.0, batch_size=4)


class NoOptimizer(BoringModel):
    """``configure_optimizers`` returns ``None``: Lightning trains nothing and uses its mock optimizer."""

    def configure_optimizers(self) -> None:  # type: ignore[override]
        return None


class SplitNames(BoringModel):
    """Logs ``train/loss`` and ``valid/loss`` (another naming style) and a perplexity."""

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        out = super().training_step(batch, batch_idx)
        self.log("train/loss", out["loss"], on_step=True, on_epoch=True)
        return out

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        out = super().validation_step(batch, batch_idx)
        self.log("valid/loss", out["x"])
        self.log("val_ppl", torch.exp(out["x"]))
        return out


# ---- tests


def test_boring_model_with_its_own_steplr(tmp_path: Path) -> None:
    """BoringModel: SGD(lr=0.1) with StepLR(step_size=1) (gamma 0.1, per epoch), no pack schedule."""
    acc = read(fit_logged(tmp_path, BoringModel(), [TuningDashboard()]))
    tags = acc.Tags()["scalars"]
    assert "lr-SGD" in tags
    assert not any(tag.startswith(("lr/", "lr-SGD-momentum")) for tag in tags), tags
    expected = {step: 0.1 * 0.1 ** (step // BATCHES) for step in range(3 * BATCHES)}
    assert series(acc, "lr-SGD") == pytest.approx(expected, rel=1e-6)
    planned = series(acc, "lr_planned/lr-SGD")
    assert planned == pytest.approx(expected, rel=1e-6), "planned by running torch's StepLR ahead"
    assert "lr-SGD: actual and planned" in charts(acc)


def test_autoencoder_constant_adam(tmp_path: Path) -> None:
    acc = read(fit_logged(tmp_path, AutoEncoder(), [TuningDashboard()], epochs=2))
    tags = acc.Tags()["scalars"]
    assert series(acc, "lr-Adam") == pytest.approx(dict.fromkeys(range(2 * BATCHES), 0.002))
    assert series(acc, "lr_planned/lr-Adam") == pytest.approx(dict.fromkeys(range(2 * BATCHES), 0.002))
    assert "lr-Adam-momentum" not in tags, "beta1 never moves: no momentum tag"
    layout = charts(acc)
    assert matched(layout["loss: train / val / test"], tags) == {"train_loss", "val_loss"}
    assert matched(layout["lr-Adam: actual and planned"], tags) == {"lr-Adam", "lr_planned/lr-Adam"}


def test_gan_two_optimizers_named_groups_one_scheduled(tmp_path: Path) -> None:
    epochs = 2
    total = epochs * BATCHES
    acc = read(fit_logged(tmp_path, TinyGAN(), [CosineAnnealing(optimizers=[1]), TuningDashboard()], epochs=epochs))
    tags = acc.Tags()["scalars"]
    assert {"lr-Adam", "lr-Adam-1/body", "lr-Adam-1/head", "d_loss", "g_loss"} <= set(tags)
    assert series(acc, "lr-Adam") == pytest.approx(dict.fromkeys(range(total), 0.001))
    for name, base in (("body", 4e-3), ("head", 1e-3)):
        cosine = {step: base * (1 + math.cos(math.pi * step / total)) / 2 for step in range(total)}
        assert series(acc, f"lr-Adam-1/{name}") == pytest.approx(cosine, rel=1e-6, abs=1e-12)
        assert series(acc, f"lr_planned/lr-Adam-1/{name}") == pytest.approx(cosine, rel=1e-6, abs=1e-12)
    layout = charts(acc)
    assert matched(layout["d_loss"], tags) == {"d_loss"}, "an unpaired metric gets a chart of its own"
    assert matched(layout["g_loss"], tags) == {"g_loss"}
    assert "smoothed loss vs sweep step" not in layout, "no range-test chart without an LRRangeTest"
    assert "activation std per layer" not in layout, "no init charts without an init callback"
    assert matched(layout["lr-Adam-1: actual and planned"], tags) == {
        "lr-Adam-1/body",
        "lr-Adam-1/head",
        "lr_planned/lr-Adam-1/body",
        "lr_planned/lr-Adam-1/head",
    }


def test_warmup_planned_at_every_step_beside_sampled_actual(tmp_path: Path) -> None:
    """Actual LR logged every 5 steps, the planned curve at every step: the 6-step warmup ramp is visible."""
    from tests.lr_helpers import TwoGroupModel

    epochs = 3
    total = epochs * BATCHES
    log_dir = fit_logged(tmp_path, TwoGroupModel("sgd"), [Warmup(6), TuningDashboard()], log_every_n_steps=5)
    acc = read(log_dir)
    for name, base in (("lr-SGD/pg1", 0.1), ("lr-SGD/pg2", 0.03)):
        planned = series(acc, f"lr_planned/{name}")
        assert planned == pytest.approx({step: base * min(1.0, (step + 1) / 6) for step in range(total)}, rel=1e-6)
        actual = series(acc, name)
        assert sorted(actual) == [k for k in range(total) if (k + 1) % 5 == 0], "Lightning's logging steps"
        assert actual == pytest.approx({step: planned[step] for step in actual}, rel=1e-6)


def test_one_cycle_momentum_logged_and_planned(tmp_path: Path) -> None:
    """OneCycle cycles SGD's momentum: logged under LearningRateMonitor's momentum name, equal to torch's OneCycleLR."""
    from tests.lr_helpers import torch_reference

    epochs = 2
    total = epochs * BATCHES

    class OneGroup(BoringModel):
        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    acc = read(fit_logged(tmp_path, OneGroup(), [OneCycle(max_lr=0.1), TuningDashboard()], epochs=epochs))
    _, momenta = torch_reference(
        "sgd", lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[0.1, 0.1], total_steps=total), total
    )
    expected = {step: momenta[step][0] for step in range(total)}
    assert series(acc, "lr-SGD-momentum") == pytest.approx(expected, rel=1e-6)
    assert series(acc, "lr_planned/lr-SGD-momentum") == pytest.approx(expected, rel=1e-6)
    assert "lr-SGD-momentum: actual and planned" in charts(acc)


def test_beside_learning_rate_monitor_nothing_twice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With a LearningRateMonitor the dashboard leaves the LRs to it: exactly the events the monitor writes alone."""

    class OneGroup(BoringModel):
        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    alone = read(fit_logged(tmp_path, OneGroup(), [Warmup(4), LearningRateMonitor()], name="alone"))
    with caplog.at_level("INFO"):
        both = read(fit_logged(tmp_path, OneGroup(), [Warmup(4), LearningRateMonitor(), TuningDashboard()]))
    events = [(event.step, event.value) for event in both.Scalars("lr-SGD")]
    assert events == [(event.step, event.value) for event in alone.Scalars("lr-SGD")]
    warmup = {step: 0.1 * min(1.0, (step + 1) / 4) for step in range(3 * BATCHES)}
    assert dict(events) == pytest.approx(warmup, rel=1e-6)
    assert series(both, "lr_planned/lr-SGD") == pytest.approx(warmup, rel=1e-6), "the plan is still the dashboard's"
    assert sum("LearningRateMonitor is in the callbacks" in record.message for record in caplog.records) == 1


def test_module_without_optimizer(tmp_path: Path) -> None:
    """Issue 13: `trainer.optimizers[0]` crashed on Lightning's mock optimizer."""
    with pytest.warns(UserWarning, match="optimizer"):
        acc = read(fit_logged(tmp_path, NoOptimizer(), [TuningDashboard()], epochs=1))
    tags = acc.Tags()["scalars"]
    assert not any(tag.startswith(("lr-", "lr_planned/")) for tag in tags), tags
    assert "learning rate" not in {title.split(":")[0] for title in charts(acc)}


def test_other_naming_style_and_hparams_metrics_that_exist(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea
    from tensorboard.plugins.hparams import metadata as hp_meta

    log_dir = fit_logged(tmp_path, SplitNames(), [TuningDashboard()], epochs=2)
    acc = read(log_dir)
    tags = acc.Tags()["scalars"]
    layout = charts(acc)
    assert matched(layout["loss: train / val / test"], tags) == {"train/loss_step", "train/loss_epoch", "valid/loss"}
    assert matched(layout["ppl: train / val / test"], tags) >= {"val_ppl"}
    assert {"hp/val_ppl", "hp/valid/loss"} <= set(tags)
    content = pea.EventAccumulator(str(log_dir)).Reload().PluginTagToContent(hp_meta.PLUGIN_NAME)
    experiment = hp_meta.parse_experiment_plugin_data(content["_hparams_/experiment"])
    declared = {info.name.tag for info in experiment.metric_infos}
    assert {"hp/val_ppl", "hp/valid/loss", "hp/test_ppl", "hp/test/loss"} <= declared


def test_lr_goes_to_every_logger(tmp_path: Path) -> None:
    """Without a TensorBoardLogger the LRs still reach the configured logger (here CSV), under the same names."""
    import csv

    logger = CSVLogger(tmp_path, name="csv")
    trainer = quiet_trainer(
        default_root_dir=tmp_path,
        logger=logger,
        max_epochs=1,
        limit_train_batches=BATCHES,
        limit_val_batches=0,
        log_every_n_steps=1,
        enable_checkpointing=False,
        callbacks=[TuningDashboard(planned=False)],
    )
    with pytest.warns(UserWarning, match="no TensorBoardLogger"):
        trainer.fit(AutoEncoder())
    rows = list(csv.DictReader((Path(logger.log_dir) / "metrics.csv").open()))
    values = [float(row["lr-Adam"]) for row in rows if row.get("lr-Adam")]
    assert values == pytest.approx([2e-3] * BATCHES)


def test_bad_arguments_fail_at_construction() -> None:
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    with pytest.raises(MisconfigurationException, match=r"`metrics='val_acc'` must be a list"):
        TuningDashboard(metrics="val_acc")  # type: ignore[arg-type]
    with pytest.raises(MisconfigurationException, match=r"`preview='yes'`"):
        TuningDashboard(preview="yes")  # type: ignore[arg-type]
