"""Shared pieces for the learning-rate tests: a two-group model, an LR recorder and torch reference runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.demos.boring_classes import BoringModel
from torch.optim import Optimizer

BASE_LRS = (0.1, 0.03)


def make_optimizer(name: str, params: list[dict[str, Any]]) -> Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=BASE_LRS[0], momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=BASE_LRS[0])
    raise ValueError(name)


def param_groups(module: torch.nn.Module) -> list[dict[str, Any]]:
    weight, bias = module.weight, module.bias
    return [{"params": [weight], "lr": BASE_LRS[0]}, {"params": [bias], "lr": BASE_LRS[1]}]


class TwoGroupModel(BoringModel):
    """BoringModel with two param groups of different LRs and no scheduler of its own."""

    def __init__(self, optimizer: str = "sgd") -> None:
        super().__init__()
        self.optimizer_name = optimizer

    def configure_optimizers(self) -> Optimizer:
        return make_optimizer(self.optimizer_name, param_groups(self.layer))

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        output = super().validation_step(batch, batch_idx)
        self.log("val_loss", output["x"])
        return output


class LRRecorder(Callback):
    """Records the LR (and momentum) every optimizer step really used, from a step post-hook."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []
        self.momenta: list[list[float]] = []
        self.by_optimizer: dict[int, list[float]] = {}
        self._handles: list[Any] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for index, optimizer in enumerate(trainer.optimizers):
            self.by_optimizer[index] = []
            self._handles.append(optimizer.register_step_post_hook(self._recorder(index)))

    def _recorder(self, index: int) -> Callable[[Optimizer, Any, Any], None]:
        def record(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
            # float(): a tensor LR is written in place, the recorder keeps the value this step used
            self.lrs.append([float(group["lr"]) for group in optimizer.param_groups])
            self.momenta.append([momentum_of(group) for group in optimizer.param_groups])
            self.by_optimizer[index].append(float(optimizer.param_groups[0]["lr"]))

        return record

    def per_optimizer(self) -> list[list[float]]:
        """The first param group's LR at every step, one list per optimizer."""
        return [self.by_optimizer[index] for index in sorted(self.by_optimizer)]

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for handle in self._handles:
            handle.remove()


def momentum_of(group: dict[str, Any]) -> float:
    return float(group["betas"][0]) if "betas" in group else float(group.get("momentum", 0.0))


def torch_reference(
    optimizer_name: str,
    make_scheduler: Callable[[Optimizer], Any],
    steps: int,
    steps_per_epoch: int | None = None,
) -> tuple[list[list[float]], list[list[float]]]:
    """LR and momentum that each of ``steps`` optimizer steps uses under a torch scheduler.

    The scheduler is stepped after every optimizer step, or after every ``steps_per_epoch`` steps (per epoch).
    """
    layer = torch.nn.Linear(32, 2)
    optimizer = make_optimizer(optimizer_name, param_groups(layer))
    scheduler = make_scheduler(optimizer)
    lrs, momenta = [], []
    for step in range(steps):
        lrs.append([group["lr"] for group in optimizer.param_groups])
        momenta.append([momentum_of(group) for group in optimizer.param_groups])
        optimizer.step()
        if steps_per_epoch is None or (step + 1) % steps_per_epoch == 0:
            scheduler.step()
    return lrs, momenta


def quiet_trainer(**kwargs: Any) -> Trainer:
    """A Trainer without logger, progress bar or model summary; ``kwargs`` add to or override that."""
    return Trainer(**{"logger": False, "enable_progress_bar": False, "enable_model_summary": False, **kwargs})


def fit(model: LightningModule, callbacks: list[Callback], tmp_path: Any, **trainer_kwargs: Any) -> Trainer:
    trainer_kwargs = {
        "default_root_dir": tmp_path,
        "max_epochs": 1,
        "limit_val_batches": 0,
        "enable_checkpointing": False,
        **trainer_kwargs,
    }
    trainer = quiet_trainer(callbacks=callbacks, **trainer_kwargs)
    trainer.fit(model)
    return trainer


def assert_close(actual: list[list[float]], expected: list[list[float]], rel: float = 1e-10) -> None:
    assert len(actual) == len(expected), f"{len(actual)} steps recorded, {len(expected)} expected"
    for step, (got, want) in enumerate(zip(actual, expected, strict=True)):
        for group, (g, w) in enumerate(zip(got, want, strict=True)):
            assert abs(g - w) <= rel * max(abs(w), 1e-300) + 1e-300, f"step {step} group {group}: {g} != {w}"
