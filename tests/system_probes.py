"""Callbacks the system tests add to CLI runs through YAML, to see inside each process (rank) of a run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch import Callback


def _momentum(group: dict[str, Any]) -> float:
    return float(group["betas"][0]) if "betas" in group else float(group.get("momentum", 0.0))


class StepTrace(Callback):
    """Appends one JSON line per optimizer step (step index, LRs and momenta it used) to ``<path>.rank<R>.jsonl``.

    Written from a step post-hook and flushed at once, so a SIGKILL loses nothing already trained.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._handles: list[Any] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = Path(f"{self.path}.rank{trainer.global_rank}.jsonl")
        checksum = hashlib.sha256(
            b"".join(p.detach().cpu().numpy().tobytes() for p in pl_module.parameters())
        ).hexdigest()
        with out.open("a") as handle:
            handle.write(json.dumps({"event": "train_start", "params_sha256": checksum}) + "\n")

        def record(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            line = {
                "event": "step",
                "step": trainer.global_step,
                "lrs": [group["lr"] for group in optimizer.param_groups],
                "momenta": [_momentum(group) for group in optimizer.param_groups],
            }
            with out.open("a") as handle:
                handle.write(json.dumps(line) + "\n")

        self._handles = [optimizer.register_step_post_hook(record) for optimizer in trainer.optimizers]

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        reductions = sum(getattr(cb, "num_reductions", 0) for cb in trainer.callbacks)  # type: ignore[attr-defined]
        with Path(f"{self.path}.rank{trainer.global_rank}.jsonl").open("a") as handle:
            handle.write(json.dumps({"event": "validation", "reductions": reductions}) + "\n")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for handle in self._handles:
            handle.remove()
        if trainer.is_global_zero:
            torch.save({k: v.detach().cpu() for k, v in pl_module.state_dict().items()}, f"{self.path}.final.pt")


class KillAt(Callback):
    """SIGKILLs its own process when the given optimizer step is about to start: a crash with no clean-up."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
