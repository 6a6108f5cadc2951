"""Both entry points, ``python -m lightning_tuning`` and the ``lightning-tuning`` console script, run as a user runs
them: exit 0 on success, non-zero on failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

ROOT = Path(__file__).resolve().parent.parent
BORING = "lightning.pytorch.demos.boring_classes.BoringModel"
QUIET = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=0",
         "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
         "--trainer.enable_model_summary=false", "--dashboard=null"]  # fmt: skip


class BrokenModel(BoringModel):
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        raise RuntimeError("broken on purpose")


class Regression(BoringModel):
    """A loss the range test can see fall: a linear fit to a planted linear target."""

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        target = batch @ torch.linspace(-1, 1, 32).unsqueeze(1).expand(32, 2)
        return torch.nn.functional.mse_loss(self(batch), target)


def entry_points() -> list[list[str]]:
    commands = [[sys.executable, "-m", "lightning_tuning"]]
    script = shutil.which("lightning-tuning", path=os.path.dirname(sys.executable))
    if script is not None:
        commands.append([script])
    return commands


def run(command: list[str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [*command, *args, f"--trainer.default_root_dir={tmp_path}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_console_script_is_installed() -> None:
    assert len(entry_points()) == 2, "`lightning-tuning` is not next to the interpreter: reinstall the package"


@pytest.mark.slow
@pytest.mark.parametrize("command", entry_points(), ids=lambda c: Path(c[-1]).name)
def test_success_exits_0_and_failure_does_not(command: list[str], tmp_path: Path) -> None:
    done = run(command, tmp_path, "fit", f"--model={BORING}", *QUIET)
    assert done.returncode == 0, done.stderr[-2000:]
    broken = run(command, tmp_path, "fit", "--model=tests.test_entry_points.BrokenModel", *QUIET)
    assert broken.returncode != 0
    assert "broken on purpose" in broken.stderr
    bad_argument = run(command, tmp_path, "fit", f"--model={BORING}", "--trainer.max_epochs=many")
    assert bad_argument.returncode != 0


@pytest.mark.slow
@pytest.mark.parametrize("command", entry_points(), ids=lambda c: Path(c[-1]).name)
def test_lr_find_exits_0_and_prints_the_snippet(command: list[str], tmp_path: Path) -> None:
    done = run(command, tmp_path, "lr_find", "--model=tests.test_entry_points.Regression", *QUIET, "--num_steps=40",
               "--min_lr=1e-4")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("class_path: lightning_tuning.BaseLR") == 1, done.stdout + done.stderr[-2000:]


@pytest.mark.slow
def test_lr_find_under_ddp_prints_once(tmp_path: Path) -> None:
    ddp = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    done = run(entry_points()[0], tmp_path, "lr_find", "--model=tests.test_entry_points.Regression", *QUIET, *ddp,
               "--num_steps=40", "--min_lr=1e-4")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # rank 0 prints the snippet, or the line saying there is none (two ranks' batches of 2 are noisy)
    assert done.stdout.count("# LR range test") == 1, done.stdout
