"""The whole pack through ``python -m lightning_tuning fit``, as a user runs it: kill-and-resume, DDP, precision.

Each test starts real CLI processes on the MNIST-1D quickstart with a schedule and an init layered on top, and
looks inside them through the probe callbacks of ``tests/system_probes.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).parents[1]
STACK = ["configs/quickstart.yaml", "configs/schedules/warmup_plateau.yaml", "configs/init/he.yaml"]


def cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lightning_tuning", *args], cwd=cwd, env=environment, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def layer(
    tmp_path: Path, name: str, callbacks: list[dict[str, Any]], top: dict[str, Any] | None = None, **trainer: Any
) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({"trainer": {"callbacks": callbacks, **trainer}, **(top or {})}))
    return str(path)


# a schedule whose LR moves at every step, with a plateau decay that acts at most validations
SCHEDULE = {
    "schedule": [
        {"class_path": "lightning_tuning.Warmup", "init_args": {"length": 6}},
        {"class_path": "lightning_tuning.CosineAnnealing", "init_args": {"start": "after_warmup"}},
        {"class_path": "lightning_tuning.PlateauDecay", "init_args": {"patience": 0, "factor": 0.5, "threshold": 0.2}},
    ]
}


def fit_args(root: Path, extra_configs: list[str]) -> list[str]:
    configs = [arg for config in [*(str(REPO / c) for c in STACK), *extra_configs] for arg in ("--config", config)]
    return [
        "fit", *configs,
        "--data.init_args.num_samples", "1000",
        "--data.init_args.cache_dir", str(root.parent / "cache"),
        "--trainer.max_epochs", "3",
        "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false",
        "--test_after_fit", "false",
    ]  # fmt: skip


def read_trace(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def steps(trace: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {event["step"]: event for event in trace if event["event"] == "step"}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    checkpointing = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"every_n_train_steps": 5, "save_last": True, "save_top_k": -1},
    }

    def probes(name: str, kill: int | None = None) -> list[dict[str, Any]]:
        trace = {"class_path": "tests.system_probes.StepTrace", "init_args": {"path": str(tmp_path / name)}}
        kill_probe = [] if kill is None else [{"class_path": "tests.system_probes.KillAt", "init_args": {"step": kill}}]
        return [checkpointing, trace, *kill_probe]

    straight = cli(fit_args(tmp_path / "straight", [layer(tmp_path, "a", probes("straight"), SCHEDULE)]), tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]

    # 8 optimizer steps per epoch; the kill comes at step 13, in the middle of the second epoch, after the
    # checkpoint of step 10
    crashed = cli(fit_args(tmp_path / "crash", [layer(tmp_path, "b", probes("first", kill=13), SCHEDULE)]), tmp_path)
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    resumed = cli(
        [*fit_args(tmp_path / "crash", [layer(tmp_path, "c", probes("resumed"), SCHEDULE)]), "--ckpt_path", "last"],
        tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    reference = steps(read_trace(tmp_path / "straight.rank0.jsonl"))
    after = steps(read_trace(tmp_path / "resumed.rank0.jsonl"))
    assert sorted(after) == list(range(10, 24))
    for step, event in after.items():
        assert event["lrs"] == reference[step]["lrs"], f"LR differs at step {step}"
        assert event["momenta"] == reference[step]["momenta"], f"momentum differs at step {step}"

    run = tmp_path / "crash" / "lightning_logs"
    assert [p.name for p in run.iterdir()] == ["version_0"], "the resumed run continues the same TensorBoard run"
    assert (run / "version_0" / "config.yaml").is_file()
    assert len({tuple(e["lrs"]) for e in reference.values()}) > 10, "the schedule should move the LR"
    final = torch.load(tmp_path / "resumed.final.pt", weights_only=True)
    expected = torch.load(tmp_path / "straight.final.pt", weights_only=True)
    for name, tensor in expected.items():
        assert torch.equal(final[name], tensor), f"{name} differs from the uninterrupted run"
    for checkpoint in (run / "version_0" / "checkpoints").glob("*.ckpt"):
        state = torch.load(checkpoint, weights_only=True)
        assert any(key.startswith("Warmup") for key in state["callbacks"])


# where the kill comes (8 optimizer steps per epoch; validation every 4 steps where val_check_interval is 0.5):
# (probe, step, every_n_train_steps of the checkpoint, val_check_interval)
KILL_POINTS = {
    # the last checkpoint (step 8) is the epoch end, written before the validation due there: Lightning 2.6 skips it
    "epoch-end": ("tests.system_probes.KillAt", 9, 4, 1.0),
    # the last checkpoint (step 12) is a val_check_interval point, written before that validation
    "val-check-interval": ("tests.system_probes.KillAt", 14, 4, 0.5),
    # killed inside the validation of step 12 (the checkpoint of step 12 came just before it)
    "during-validation": ("tests.system_probes.KillInValidationAt", 12, 4, 0.5),
    # mid-epoch, after the checkpoint of step 10
    "mid-epoch": ("tests.system_probes.KillAt", 13, 5, 0.5),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_sigkill_then_resume_matches_an_uninterrupted_run_with_dropout(point: str, tmp_path: Path) -> None:
    probe, kill_step, every, val_check_interval = KILL_POINTS[point]
    checkpointing = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"every_n_train_steps": every, "save_last": True, "save_top_k": -1},
    }
    schedule = {
        **SCHEDULE,
        "model": {"class_path": "tests.system_probes.DropoutConvNet"},
    }

    def config(name: str, kill: bool) -> str:
        trace = {"class_path": "tests.system_probes.StepTrace", "init_args": {"path": str(tmp_path / name)}}
        kill_probe = [{"class_path": probe, "init_args": {"step": kill_step}}] if kill else []
        callbacks = [checkpointing, trace, *kill_probe]
        return layer(tmp_path, name, callbacks, schedule, val_check_interval=val_check_interval)

    straight = cli(fit_args(tmp_path / "straight", [config("straight", kill=False)]), tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    crashed = cli(fit_args(tmp_path / "crash", [config("first", kill=True)]), tmp_path)
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    resumed = cli([*fit_args(tmp_path / "crash", [config("resumed", kill=False)]), "--ckpt_path", "last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    reference = read_trace(tmp_path / "straight.rank0.jsonl")
    after = read_trace(tmp_path / "resumed.rank0.jsonl")
    resumed_steps = steps(after)
    for step, event in resumed_steps.items():
        assert event["lrs"] == steps(reference)[step]["lrs"], f"LR differs at step {step}"
    # plateau decisions: the validations from the checkpointed step on are those of the uninterrupted run (a
    # validation due at the checkpointed batch included), with the same val_loss and reductions
    validations = [e for e in reference if e["event"] == "validation"]
    expected = [e for e in validations if e["step"] >= min(resumed_steps)]
    assert [e for e in after if e["event"] == "validation"] == expected, "a validation differs or was skipped"
    if point != "mid-epoch":
        assert expected[0]["step"] == min(resumed_steps), "the checkpoint was written where a validation was due"
    assert expected[-1]["reductions"] > 0, "the plateau decay acted in this run"
    final = torch.load(tmp_path / "resumed.final.pt", weights_only=True)
    uninterrupted = torch.load(tmp_path / "straight.final.pt", weights_only=True)
    for name, tensor in uninterrupted.items():
        assert torch.equal(final[name], tensor), f"{name} differs from the uninterrupted run"


def test_ckpt_path_last_without_a_checkpoint_is_an_error(tmp_path: Path) -> None:
    result = cli(
        ["fit", "--model", "lightning.pytorch.demos.boring_classes.BoringModel", "--trainer.default_root_dir",
         str(tmp_path / "fresh"), "--ckpt_path", "last"],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert "error: ckpt_path: `--ckpt_path last` found no last.ckpt" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "fresh" / "lightning_logs").exists(), "no new run is started"


@pytest.mark.slow
def test_ddp_two_processes_agree_on_init_lr_and_plateau(tmp_path: Path) -> None:
    trace = {"class_path": "tests.system_probes.StepTrace", "init_args": {"path": str(tmp_path / "ddp")}}
    checkpointing = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True}}
    extra = layer(tmp_path, "ddp", [checkpointing, trace], SCHEDULE, strategy="ddp", devices=2, accelerator="cpu")
    result = cli(fit_args(tmp_path / "run", [extra]), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = read_trace(tmp_path / "ddp.rank0.jsonl")
    rank1 = read_trace(tmp_path / "ddp.rank1.jsonl")
    assert rank0[0]["params_sha256"] == rank1[0]["params_sha256"], "parameters differ across ranks after init"
    assert [e for e in rank0 if e["event"] != "train_start"] == [e for e in rank1 if e["event"] != "train_start"]
    assert len(steps(rank0)) == 12  # 1000 samples -> 720 train / 2 ranks / batch 100 = 4 steps x 3 epochs
    versions = list((tmp_path / "run" / "lightning_logs").iterdir())
    assert [v.name for v in versions] == ["version_0"], "logs and checkpoints are written once, by rank 0"
    events = list(versions[0].glob("events.out.tfevents.*"))
    assert len(events) == 1
    assert [p.name for p in (versions[0] / "checkpoints").iterdir()] == ["last.ckpt"] or len(
        list((versions[0] / "checkpoints").iterdir())
    ) == 2


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed-gradscaler"])
def test_mixed_precision_end_to_end(precision: str, tmp_path: Path) -> None:
    if precision == "bf16-mixed":
        extra = layer(tmp_path, "p", [], SCHEDULE, precision="bf16-mixed")
    else:
        plugin = {
            "class_path": "lightning.pytorch.plugins.MixedPrecision",
            "init_args": {"precision": "16-mixed", "device": "cpu"},
        }
        extra = layer(tmp_path, "p", [], SCHEDULE, plugins=[plugin])
    trace = layer(
        tmp_path, "t", [{"class_path": "tests.system_probes.StepTrace", "init_args": {"path": str(tmp_path / "amp")}}]
    )
    result = cli(fit_args(tmp_path / "run", [extra, trace]), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val_acc" in result.stdout
    trace_steps = steps(read_trace(tmp_path / "amp.rank0.jsonl"))
    assert trace_steps, "no optimizer step ran"
    lrs = [event["lrs"][0] for _, event in sorted(trace_steps.items())]
    assert max(lrs) > lrs[0], "the warmup did not raise the LR"
    assert lrs[-1] < max(lrs), "the cosine did not lower the LR"
