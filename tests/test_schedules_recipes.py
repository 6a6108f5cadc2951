"""The ported recipes (``configs/recipes/``) preview exactly the peer's curve, at the recipe's own length.

Each recipe is layered on the quickstart and set up through the real CLI; the preview (the curve a fit then follows,
see ``test_preview.py``) is compared step by step with the peer's formula: Hugging Face's linear schedule with
warmup and timm's cosine with a prefixed warmup, as their docs and sources state them, and torch's own
``SequentialLR`` stepped once per epoch.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule
from torch.optim import lr_scheduler as torch_sched

from lightning_tuning.cli import TuningCLI
from lightning_tuning.preview import SchedulePreview, preview_schedule
from tests.conftest import CONFIGS_DIR

pytestmark = pytest.mark.usefixtures("cli_argv")


def preview_recipe(name: str, tmp_path: Path) -> SchedulePreview:
    cli = TuningCLI(
        LightningModule,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=[
            "--config",
            str(CONFIGS_DIR / "quickstart.yaml"),
            "--config",
            str(CONFIGS_DIR / "recipes" / f"{name}.yaml"),
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
        ],
        run=False,
    )
    return preview_schedule(cli.trainer, cli.model, cli.datamodule)


def test_hugging_face_linear_warmup_fine_tuning(tmp_path: Path) -> None:
    preview = preview_recipe("hf_linear_warmup_finetune", tmp_path)
    steps_per_epoch = preview.run.steps_per_epoch
    assert steps_per_epoch == 36  # 3600 training samples of the quickstart, batch 100
    total = 3 * steps_per_epoch
    warmup = math.ceil(0.1 * total)  # Hugging Face: num_warmup_steps = ceil(warmup_ratio * num_training_steps)

    def hf(t: int) -> float:  # get_linear_schedule_with_warmup's lambda
        if t < warmup:
            return t / max(1, warmup)
        return max(0.0, (total - t) / max(1, total - warmup))

    got = preview.columns["lr-AdamW"]
    assert len(got) == total
    assert got == pytest.approx([2e-5 * hf(t) for t in range(total)], rel=1e-12, abs=1e-20)
    assert got[0] == 0.0


def test_timm_cosine_with_warmup_at_its_epoch_counts(tmp_path: Path) -> None:
    preview = preview_recipe("timm_cosine_warmup", tmp_path)
    steps_per_epoch = preview.run.steps_per_epoch
    assert steps_per_epoch is not None
    base = 0.1 * (100 * 1 * 1) / 256  # lr_base * global batch / lr_base_size, linear for SGD
    warmup_t, t_initial, warmup_lr_init, lr_min = 5, 300, 1e-5, 0.0

    def timm(epoch: int) -> float:  # CosineLRScheduler._get_lr with warmup_prefix=True, cycle_limit=1
        if epoch < warmup_t:
            return warmup_lr_init + epoch * (base - warmup_lr_init) / warmup_t
        t = epoch - warmup_t
        if t >= t_initial:
            return lr_min
        return lr_min + 0.5 * (base - lr_min) * (1 + math.cos(math.pi * t / t_initial))

    got = preview.columns["lr-SGD"]
    assert len(got) == 305 * steps_per_epoch
    expected = [timm(step // steps_per_epoch) for step in range(len(got))]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-18)


def test_torch_sequential_lr(tmp_path: Path) -> None:
    preview = preview_recipe("torch_sequential_lr", tmp_path)
    steps_per_epoch = preview.run.steps_per_epoch
    assert steps_per_epoch is not None
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9, weight_decay=5e-4)
    warmup = torch_sched.LinearLR(optimizer, start_factor=0.1, total_iters=5)
    cosine = torch_sched.CosineAnnealingLR(optimizer, T_max=25)
    scheduler = torch_sched.SequentialLR(optimizer, [warmup, cosine], milestones=[5])
    per_epoch = []
    for _ in range(30):
        per_epoch.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    got = preview.columns["lr-SGD"]
    assert len(got) == 30 * steps_per_epoch
    assert got == pytest.approx([per_epoch[step // steps_per_epoch] for step in range(len(got))], rel=1e-12)
