"""ScaleLR and LayerwiseLR in real fits, against LRs worked out by hand from the model's structure and the batch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_tuning import CosineAnnealing, LayerwiseLR, ScaleLR

BASE_LR = 1e-3


def batches(n: int = 16, batch_size: int = 4, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    y = torch.randint(0, 2, (n,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


class FineTuner(LightningModule):
    """A backbone (embedding, three blocks, a norm) and a head, fine-tuned with AdamW in two weight-decay groups."""

    def __init__(self, optimizer: str = "adamw", batch_size: int = 4, split_groups: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(8, 16)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(16, 16), nn.ReLU()) for _ in range(3)])
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 2)
        self.optimizer_name = optimizer
        self.batch_size = batch_size
        self.split_groups = split_groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(self.norm(x))

    def training_step(self, batch: Any) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def train_dataloader(self) -> DataLoader:
        return batches(batch_size=self.batch_size)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = list(self.named_parameters())
        if self.split_groups:
            groups: list[dict[str, Any]] = [
                {"params": [p for _, p in params if p.ndim >= 2], "weight_decay": 0.05, "name": "decay"},
                {"params": [p for _, p in params if p.ndim < 2], "weight_decay": 0.0, "name": "no_decay"},
            ]
        else:
            groups = [{"params": [p for _, p in params]}]
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(groups, lr=BASE_LR, momentum=0.9)
        return torch.optim.AdamW(groups, lr=BASE_LR, betas=(0.9, 0.95))


class StepLRs(Callback):
    """The LR of every param group at every optimizer step, read in a step post-hook, keyed by parameter name."""

    def __init__(self) -> None:
        self.per_step: list[dict[str, float]] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        names = {id(p): n for n, p in pl_module.named_parameters()}

        def record(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self.per_step.append(
                {names[id(p)]: float(group["lr"]) for group in optimizer.param_groups for p in group["params"]}
            )

        self.handle = trainer.optimizers[0].register_step_post_hook(record)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.handle.remove()


class MemoryLogger(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))


def trainer_for(tmp_path: Path, callbacks: list[Callback], **kwargs: Any) -> Trainer:
    settings: dict[str, Any] = {
        "default_root_dir": tmp_path,
        "max_epochs": 1,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "accelerator": "cpu",
        "devices": 1,
        **kwargs,
    }
    return Trainer(callbacks=callbacks, **settings)


# LLRD by hand for blocks=["embed", "blocks.*"]: K = 4 blocks, block k gets decay ** (4 - k); norm and head 1.
def llrd_scale(name: str, decay: float) -> float:
    if name.startswith("embed."):
        return decay**4
    if name.startswith("blocks."):
        return decay ** (3 - int(name.split(".")[1]))
    return 1.0


# ---- LayerwiseLR --------------------------------------------------------------------------------------------------


def test_layer_decay_splits_groups_keeping_options(tmp_path: Path) -> None:
    model, recorder = FineTuner(), StepLRs()
    trainer = trainer_for(tmp_path, [LayerwiseLR(blocks=["embed", "blocks.*"], layer_decay=0.5), recorder])
    trainer.fit(model)
    optimizer = trainer.optimizers[0]
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            name = names[id(parameter)]
            assert group["lr"] == pytest.approx(BASE_LR * llrd_scale(name, 0.5), rel=1e-15), name
            assert group["weight_decay"] == (0.05 if parameter.ndim >= 2 else 0.0), name
            assert group["betas"] == (0.9, 0.95)
    # one group per (weight decay, scale): 5 scales x 2 weight decays, never one per tensor
    assert len(optimizer.param_groups) == 10
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(list(model.parameters()))
    # the LRs the optimizer really stepped with
    assert recorder.per_step
    for name, lr in recorder.per_step[0].items():
        assert lr == pytest.approx(BASE_LR * llrd_scale(name, 0.5), rel=1e-15), name
    assert sorted(group["name"] for group in optimizer.param_groups) == sorted(
        f"{prefix}/{label}"
        for prefix in ("decay", "no_decay")
        for label in ("embed", "blocks.0", "blocks.1", "blocks.2", "rest")
    )


def test_merges_groups_that_end_with_the_same_options(tmp_path: Path) -> None:
    """Two original groups with identical options: the pieces of equal scale merge into one group each."""

    class SameOptions(FineTuner):
        def configure_optimizers(self) -> torch.optim.Optimizer:
            backbone = [p for n, p in self.named_parameters() if not n.startswith("head.")]
            return torch.optim.AdamW([{"params": backbone}, {"params": list(self.head.parameters())}], lr=BASE_LR)

    model = SameOptions()
    trainer = trainer_for(tmp_path, [LayerwiseLR(lr_scales={"embed": 0.1, "blocks": 0.1}, merge=True)])
    trainer.fit(model)
    groups = trainer.optimizers[0].param_groups
    assert [round(group["lr"] / BASE_LR, 12) for group in groups] == [0.1, 1.0]
    assert groups[1]["name"] == "pg1/rest+pg2/rest"
    assert {id(p) for p in groups[1]["params"]} == {
        id(p) for n, p in model.named_parameters() if n.startswith(("norm.", "head."))
    }

    model = SameOptions()
    trainer = trainer_for(tmp_path, [LayerwiseLR(lr_scales={"embed": 0.1, "blocks": 0.1}, merge=False)])
    trainer.fit(model)
    assert [group["name"] for group in trainer.optimizers[0].param_groups] == [
        "pg1/embed+pg1/blocks",
        "pg1/rest",
        "pg2/rest",
    ]


def test_discriminative_rules_first_match_wins_and_multiply_layer_decay(tmp_path: Path) -> None:
    model, recorder = FineTuner(split_groups=False), StepLRs()
    callback = LayerwiseLR(
        lr_scales={"*.bias": 2.0, "blocks.2": 0.5, "head": 10.0}, blocks=["embed", "blocks.*"], layer_decay=0.8
    )
    trainer_for(tmp_path, [callback, recorder]).fit(model)
    for name, lr in recorder.per_step[0].items():
        rule = 2.0 if name.endswith(".bias") else 0.5 if name.startswith("blocks.2.") else 10.0 if "head" in name else 1
        assert lr == pytest.approx(BASE_LR * llrd_scale(name, 0.8) * rule, rel=1e-15), name


def test_one_lr_line_per_group_name(tmp_path: Path) -> None:
    logger = MemoryLogger()
    trainer = trainer_for(
        tmp_path,
        [LayerwiseLR(lr_scales={"embed": 0.1}), LearningRateMonitor(logging_interval="step")],
        logger=logger,
        log_every_n_steps=1,
    )
    trainer.fit(FineTuner())
    keys = {key for _, metrics in logger.metrics for key in metrics if key.startswith("lr-")}
    assert keys == {"lr-AdamW/decay/embed", "lr-AdamW/decay/rest", "lr-AdamW/no_decay/embed", "lr-AdamW/no_decay/rest"}
    last = {key: value for _, metrics in logger.metrics for key, value in metrics.items()}
    assert last["lr-AdamW/decay/embed"] == pytest.approx(BASE_LR * 0.1, rel=1e-15)
    assert last["lr-AdamW/no_decay/rest"] == pytest.approx(BASE_LR, rel=1e-15)


def test_resume_rebuilds_the_same_groups_and_continues_exactly(tmp_path: Path) -> None:
    def run(max_epochs: int, ckpt_path: str | None = None, checkpoint: bool = False) -> FineTuner:
        model = FineTuner()
        callbacks: list[Callback] = [LayerwiseLR(blocks=["embed", "blocks.*"], layer_decay=0.7)]
        if checkpoint:
            callbacks.append(ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last", save_top_k=-1))
        trainer = trainer_for(tmp_path, callbacks, max_epochs=max_epochs, enable_checkpointing=checkpoint)
        trainer.fit(model, ckpt_path=ckpt_path)
        return model

    uninterrupted = run(2)
    run(1, checkpoint=True)
    resumed = run(2, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    for (name, a), b in zip(uninterrupted.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_resume_with_another_split_is_refused(tmp_path: Path) -> None:
    trainer = trainer_for(
        tmp_path,
        [LayerwiseLR(lr_scales={"embed": 0.1}), ModelCheckpoint(dirpath=tmp_path, filename="a")],
        enable_checkpointing=True,
    )
    trainer.fit(FineTuner())
    trainer = trainer_for(tmp_path, [LayerwiseLR(lr_scales={"embed": 0.1, "head": 3.0})], max_epochs=2)
    with pytest.raises(MisconfigurationException, match="split differently"):
        trainer.fit(FineTuner(), ckpt_path=str(tmp_path / "a.ckpt"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr_scales": {"backbone": 0.1}}, r"rule 'backbone' matches no parameter"),
        ({"blocks": ["embed", "layers.*"], "layer_decay": 0.5}, r"entry 'layers\.\*' matches no module"),
        ({"blocks": ["embed", "embed.weight"], "layer_decay": 0.5}, r"'embed.weight' is in two blocks"),
    ],
    ids=["rule", "block-glob", "overlap"],
)
def test_bad_rules_fail_before_the_first_step(kwargs: dict[str, Any], message: str, tmp_path: Path) -> None:
    model = FineTuner()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with pytest.raises(MisconfigurationException, match=message):
        trainer_for(tmp_path, [LayerwiseLR(**kwargs)]).fit(model)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, r"give `lr_scales`"),
        ({"lr_scales": {"head": 0}}, r"`lr_scales\['head'\]=0` must be a number > 0"),
        ({"blocks": ["a"]}, r"without `layer_decay`"),
        ({"layer_decay": 0.5}, r"`layer_decay=0.5` needs `blocks`"),
        ({"blocks": ["a"], "layer_decay": 1.5}, r"`layer_decay=1.5` must lie in \(0, 1\]"),
    ],
)
def test_layerwise_init_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(MisconfigurationException, match=message):
        LayerwiseLR(**kwargs)


def test_layerwise_refuses_an_optimizer_with_a_torch_scheduler(tmp_path: Path) -> None:
    class WithScheduler(FineTuner):
        def configure_optimizers(self) -> Any:
            optimizer = super().configure_optimizers()
            return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 1)]

    with pytest.raises(MisconfigurationException, match=r"LayerwiseLR: .* torch scheduler .*\(StepLR\)"):
        trainer_for(tmp_path, [LayerwiseLR(lr_scales={"head": 2.0})]).fit(WithScheduler())


# ---- ScaleLR ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "rule", "batch_size", "accumulate", "reference", "factor"),
    [
        ("sgd", "auto", 4, 2, 2, 4.0),  # linear for SGD: 4 * 2 / 2
        ("adamw", "auto", 4, 2, 2, 2.0),  # sqrt for AdamW: sqrt(8 / 2)
        ("adamw", "linear", 4, 1, 16, 0.25),
        ("sgd", "sqrt", 2, 3, 4, math.sqrt(1.5)),
    ],
)
def test_scale_lr_from_the_global_batch(
    optimizer: str, rule: Any, batch_size: int, accumulate: int, reference: int, factor: float, tmp_path: Path
) -> None:
    recorder = StepLRs()
    trainer = trainer_for(
        tmp_path, [ScaleLR(reference, rule=rule), recorder], accumulate_grad_batches=accumulate, max_steps=2
    )
    trainer.fit(FineTuner(optimizer, batch_size=batch_size))
    assert len(recorder.per_step) == 2
    for lrs in recorder.per_step:
        assert list(lrs.values()) == pytest.approx([BASE_LR * factor] * len(lrs), rel=1e-15)


def test_scale_lr_composes_with_a_schedule(tmp_path: Path) -> None:
    """ScaleLR first or last in the list: the cosine starts from the scaled base LR (torch's cosine as reference)."""
    for order in ("scale_first", "scale_last"):
        recorder = StepLRs()
        scale, cosine = ScaleLR(2, rule="linear"), CosineAnnealing(T_max=4)
        callbacks: list[Callback] = [scale, cosine] if order == "scale_first" else [cosine, scale]
        trainer_for(tmp_path, [*callbacks, recorder], max_steps=4).fit(FineTuner("sgd", batch_size=4))
        reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR * 2)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(reference, T_max=4)
        expected = []
        for _ in range(4):
            expected.append(reference.param_groups[0]["lr"])
            reference.step()
            scheduler.step()
        got = [recorder.per_step[step]["head.weight"] for step in range(4)]
        assert got == pytest.approx(expected, rel=1e-12), order


def test_scale_lr_is_logged_and_saved(tmp_path: Path) -> None:
    logger = MemoryLogger()
    callback = ScaleLR(8, rule="linear")
    trainer_for(tmp_path, [callback], logger=logger, max_steps=1).fit(FineTuner("sgd", batch_size=4))
    logged = {key: value for _, metrics in logger.metrics for key, value in metrics.items()}
    assert logged["lr_scale/global_batch_size"] == 4.0
    assert logged["lr_scale/optimizer0"] == 0.5
    assert callback.state_dict() == {
        "reference_batch_size": 8,
        "rule": "linear",
        "global_batch_size": 4,
        "factors": {"0": 0.5},
    }


def all_lrs(recorder: StepLRs) -> list[float]:
    return [lr for lrs in recorder.per_step for lr in lrs.values()]


def test_scale_lr_does_not_scale_twice_on_resume(tmp_path: Path) -> None:
    def run(max_epochs: int, accumulate: int = 1, ckpt_path: str | None = None) -> tuple[StepLRs, Trainer]:
        recorder = StepLRs()
        callbacks: list[Callback] = [ScaleLR(2, rule="linear"), recorder]
        callbacks.append(ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last", save_top_k=-1))
        trainer = trainer_for(
            tmp_path, callbacks, max_epochs=max_epochs, enable_checkpointing=True, accumulate_grad_batches=accumulate
        )
        trainer.fit(FineTuner("sgd", batch_size=4), ckpt_path=ckpt_path)
        return recorder, trainer

    run(1)
    recorder, _ = run(2, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert recorder.per_step
    assert all_lrs(recorder) == pytest.approx([BASE_LR * 2] * len(all_lrs(recorder)), rel=1e-15)
    # a different global batch on resume: the checkpoint's LRs are kept, with a warning that says so
    with pytest.warns(UserWarning, match=r"global batch size of 4 .* this run has 8"):
        recorder, _ = run(3, accumulate=2, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert all_lrs(recorder) == pytest.approx([BASE_LR * 2] * len(all_lrs(recorder)), rel=1e-15)


def test_scale_lr_validation(tmp_path: Path) -> None:
    with pytest.raises(MisconfigurationException, match=r"`reference_batch_size=0` must be a positive int"):
        ScaleLR(0)
    with pytest.raises(MisconfigurationException, match=r"`rule='cubic'` is not allowed"):
        ScaleLR(8, rule="cubic")  # type: ignore[arg-type]
    with pytest.raises(MisconfigurationException, match=r"`batch_size=-1` must be a positive int"):
        ScaleLR(8, batch_size=-1)

    class NoBatchSize(FineTuner):
        def train_dataloader(self) -> DataLoader:
            return DataLoader(batches().dataset, batch_size=None)

    with pytest.raises(MisconfigurationException, match=r"give it as `batch_size=...`"):
        trainer_for(tmp_path, [ScaleLR(8)]).fit(NoBatchSize())
    recorder = StepLRs()
    trainer_for(tmp_path, [ScaleLR(8, batch_size=2, rule="linear"), recorder], max_steps=1).fit(NoBatchSize())
    assert all_lrs(recorder) == pytest.approx([BASE_LR * 0.25] * len(all_lrs(recorder)), rel=1e-15)


class LoggedLR(FineTuner):
    def training_step(self, batch: Any) -> torch.Tensor:
        self.log("lr_used", self.trainer.optimizers[0].param_groups[0]["lr"], reduce_fx="max")
        return super().training_step(batch)


@pytest.mark.slow
def test_scale_lr_uses_the_global_batch_under_ddp(tmp_path: Path) -> None:
    """2 processes x 4 samples x accumulation 2 = 16 samples per step; reference 4, SGD, linear: x4 on every rank."""
    trainer = trainer_for(
        tmp_path,
        [ScaleLR(4)],
        strategy="ddp_spawn",
        devices=2,
        accumulate_grad_batches=2,
        max_steps=2,
    )
    trainer.fit(LoggedLR("sgd", batch_size=4))
    assert float(trainer.callback_metrics["lr_used"]) == pytest.approx(BASE_LR * 4, rel=1e-6)


def test_range_test_keeps_the_layerwise_ratios(tmp_path: Path) -> None:
    from lightning_tuning import LRRangeTest

    class TwoArgs(FineTuner):  # the range test calls training_step(batch, batch_idx)
        def training_step(self, batch: Any, batch_idx: int = 0) -> torch.Tensor:
            return super().training_step(batch)

    recorder = StepLRs()
    range_test = LRRangeTest(min_lr=1e-5, max_lr=1.0, num_steps=20, skip_start=2, skip_end=2)
    callbacks = [LayerwiseLR(blocks=["embed", "blocks.*"], layer_decay=0.5), range_test, recorder]
    trainer_for(tmp_path, callbacks, max_steps=2).fit(TwoArgs())
    assert recorder.per_step
    lrs = recorder.per_step[0]
    head = lrs["head.weight"]
    assert head != pytest.approx(BASE_LR)  # the range test's suggestion replaced the base LR
    for name, lr in lrs.items():
        assert lr / head == pytest.approx(llrd_scale(name, 0.5), rel=1e-12), name


class FrozenBackbone(LightningModule):
    """Fine-tuning as Lightning's docs show it: `backbone` frozen by BackboneFinetuning, the optimizer built from the
    parameters that train (the head alone at first)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def train_dataloader(self) -> DataLoader:
        return batches()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=BASE_LR)


def test_one_group_of_one_scale_is_scaled_and_a_backbone_joins_later(tmp_path: Path) -> None:
    """The optimizer holds only the head (one group, every parameter at scale 2): the group is scaled, not left
    alone. BackboneFinetuning then adds the backbone at epoch 1 at the head's LR / 10 (its `initial_denom_lr`)."""
    from lightning.pytorch.callbacks import BackboneFinetuning

    model, recorder = FrozenBackbone(), StepLRs()
    callbacks = [BackboneFinetuning(unfreeze_backbone_at_epoch=1), LayerwiseLR(lr_scales={"head": 2.0}), recorder]
    trainer_for(tmp_path, callbacks, max_epochs=2).fit(model)
    first, later = recorder.per_step[0], recorder.per_step[-1]
    assert first == {"head.weight": 2 * BASE_LR, "head.bias": 2 * BASE_LR}
    assert later["backbone.0.weight"] == pytest.approx(2 * BASE_LR / 10, rel=1e-12)
    assert later["head.weight"] == 2 * BASE_LR
