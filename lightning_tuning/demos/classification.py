"""Shared training logic of the demo models: cross-entropy, accuracy and the metric names configs monitor."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy


class ClassificationModule(LightningModule):
    """Base of every demo model: a network that maps inputs to class logits, trained with cross-entropy.

    Subclasses build the network in ``__init__`` and implement ``forward``. Logits may carry extra leading
    dimensions (a language model predicts one class per position); they are flattened against the targets.

    Logged metrics (stable across demos so that configs can monitor them):

    - ``train_loss`` (per step and per epoch, as ``train_loss_step``/``train_loss_epoch`` in TensorBoard),
      ``train_acc`` (per epoch);
    - ``val_loss``, ``val_acc``, ``test_loss``, ``test_acc`` (per epoch, synchronised across processes).

    Without ``--optimizer`` on the command line the model trains with AdamW at ``lr`` and ``weight_decay``.

    Args:
        num_classes: Number of classes the network predicts.
        lr: Learning rate of the default optimizer (AdamW). Stored as ``self.lr`` for LR finders.
        weight_decay: Decoupled weight decay of the default optimizer.

    Raises:
        ValueError: If ``num_classes`` < 2, ``lr`` <= 0 or ``weight_decay`` < 0.
    """

    def __init__(self, num_classes: int, lr: float, weight_decay: float) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"`num_classes` must be at least 2, got {num_classes}.")
        if lr <= 0:
            raise ValueError(f"`lr` must be a positive learning rate, got {lr}.")
        if weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0, got {weight_decay}.")
        self.num_classes = num_classes
        self.lr = lr
        self.weight_decay = weight_decay
        # one metric object per stage: torchmetrics keeps state between updates and syncs it across processes
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Returns the predicted class indices of a batch."""
        inputs, _ = batch
        return self(inputs).argmax(dim=-1)

    def configure_optimizers(self) -> Any:
        """AdamW at ``lr``/``weight_decay``; replaced by LightningCLI when ``--optimizer`` is given."""
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        inputs, targets = batch
        logits = self(inputs)
        flat_logits = logits.reshape(-1, logits.size(-1))
        flat_targets = targets.reshape(-1)
        loss = F.cross_entropy(flat_logits, flat_targets)
        self._log_metrics(stage, loss, flat_logits, flat_targets)
        return loss

    def _log_metrics(self, stage: str, loss: Tensor, logits: Tensor, targets: Tensor) -> None:
        """Logs ``{stage}_loss`` and ``{stage}_acc``; subclasses add task-specific metrics."""
        accuracy: MulticlassAccuracy = getattr(self, f"{stage}_acc")
        accuracy(logits, targets)
        if stage == "train":
            self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
            self.log("train_acc", accuracy, on_step=False, on_epoch=True)
        else:
            self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
            self.log(f"{stage}_acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
