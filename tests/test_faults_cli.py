"""What a CLI user hits when something is wrong: one ``error:`` line with exit code 2, files named, NaN runs stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lightning_tuning.cli import main
from tests.conftest import CONFIGS_DIR, REPO_ROOT

pytestmark = pytest.mark.usefixtures("cli_argv")

QUICKSTART = str(CONFIGS_DIR / "quickstart.yaml")
BORING = "lightning.pytorch.demos.boring_classes.BoringModel"


def run_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config",
        QUICKSTART,
        "--data.num_samples=200",
        "--data.batch_size=20",
        f"--data.cache_dir={tmp_path / 'cache'}",
        "--trainer.max_epochs=1",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--test_after_fit=false",
        f"--trainer.default_root_dir={tmp_path}",
        *extra,
    ]


def fails_with(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Runs the CLI, expects exit code 2 and one ``error:`` line; returns that line."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-2000:]
    return errors[0]


def yaml_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---- configuration errors: the config key, the value, what to do ----------------------------------------------------

BAD_CONFIGS: list[tuple[str, str, list[str]]] = [
    (
        "schedule-init-error",
        "schedule: [{class_path: lightning_tuning.StepDecay, init_args: {step_size: 0}}]",
        ["error: schedule[0] (lightning_tuning.StepDecay): `StepDecay.step_size=0` must be at least 1."],
    ),
    (
        "init-args-typo",
        "schedule: [{class_path: lightning_tuning.Warmup, init_arg: {length: 3}}]",
        ["schedule[0] (lightning_tuning.Warmup)", "unknown key `init_arg`; did you mean `init_args`?"],
    ),
    (
        "argument-typo",
        "schedule: [{class_path: lightning_tuning.StepDecay, init_args: {step_siz: 2}}]",
        ["`init_args.step_siz` is not an argument of StepDecay. Did you mean `step_size`?"],
    ),
    (
        "class-typo",
        "schedule: [{class_path: lightning_tuning.Warmpu}]",
        ["'lightning_tuning.Warmpu' cannot be imported. Did you mean lightning_tuning.Warmup?"],
    ),
    (
        "literal-value",
        "schedule: [{class_path: lightning_tuning.Warmup, init_args: {length: 3, kind: cosine}}]",
        ["schedule[0] (lightning_tuning.Warmup): init_args.kind:", "cosine"],
    ),
    (
        "not-a-callback",
        "schedule: [{class_path: torch.optim.SGD}]",
        ["schedule[0] (torch.optim.SGD): it is not a lightning.pytorch.Callback subclass."],
    ),
    (
        "monitor-never-logged",
        "schedule: [{class_path: lightning_tuning.PlateauDecay, init_args: {monitor: val_f1}}]",
        ["schedule[0] (lightning_tuning.PlateauDecay):", "`monitor='val_f1'` was not logged"],
    ),
    (
        "init-rule-matches-nothing",
        "init: [{class_path: lightning_tuning.WeightInit, init_args: {rules: "
        "[{modules: [LSTM], weight: orthogonal}]}}]",
        ["init[0] (lightning_tuning.WeightInit):", "selects no parameter of MNIST1DConvNet"],
    ),
    (
        "trainer-callback-init-error",
        "trainer: {callbacks: [{class_path: lightning_tuning.StepDecay, init_args: {step_size: 0}}]}",
        ["error: trainer.callbacks[0] (lightning_tuning.StepDecay): `StepDecay.step_size=0` must be at least 1."],
    ),
    (
        "guard-action",
        "non_finite_guard: {class_path: lightning_tuning.NonFiniteLossGuard, init_args: {action: halt}}",
        ['error: Parser key "non_finite_guard"'],  # jsonargparse's own error, with the value on the next lines
    ),
    (
        "lr-scheduler-without-optimizer",
        "lr_scheduler: {class_path: torch.optim.lr_scheduler.StepLR, init_args: {step_size: 2}}",
        ["error: lr_scheduler: `--lr_scheduler torch.optim.lr_scheduler.StepLR` is given without `--optimizer`"],
    ),
    (
        "lr-scheduler-on-a-scheduled-optimizer",
        "optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.1}}\n"
        "lr_scheduler: {class_path: torch.optim.lr_scheduler.StepLR, init_args: {step_size: 2}}",
        ["`schedule[0]` (lightning_tuning.Warmup) would both set the learning rate"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_one_error_line_with_exit_2(
    text: str, expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = fails_with(run_args(tmp_path, "--config", yaml_file(tmp_path, "bad.yaml", text)), capsys)
    for part in expected:
        assert part in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", "is empty"), ("- a\n- b\n", "holds a list, not a mapping"), ("just text\n", "holds a str ('just text')")],
    ids=["empty", "list", "scalar"],
)
def test_a_config_file_that_is_not_a_mapping_is_named(
    text: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = yaml_file(tmp_path, "odd.yaml", text)
    line = fails_with(run_args(tmp_path, "--config", path), capsys)
    assert f"config file {path!r} {expected}" in line


def test_pytorch_lightning_module_gets_told_what_to_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pytorch_lightning")
    with pytest.raises(SystemExit):
        main(["fit", "--model", "tests.test_faults_cli.LegacyModule", f"--trainer.default_root_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert "tests.test_faults_cli.LegacyModule subclasses `pytorch_lightning.LightningModule`" in err
    assert "import lightning.pytorch as pl" in err


try:
    import pytorch_lightning

    class LegacyModule(pytorch_lightning.LightningModule):
        """A module written against the old package name, as in many tutorials."""

except ImportError:  # pragma: no cover
    pass


# ---- checkpoints --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    cli = main(run_args(root))
    path = Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt"
    assert path.is_file(), "fit writes last.ckpt by default"
    return path


def bad_checkpoints(source: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    data = source.read_bytes()
    truncated, empty, text = tmp_path / "truncated.ckpt", tmp_path / "empty.ckpt", tmp_path / "notes.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    empty.write_bytes(b"")
    text.write_text("epoch 3: val_acc 0.91\n")
    state = torch.load(source, weights_only=True)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": state["state_dict"]}, foreign)
    return {
        "truncated": (truncated, "is truncated or corrupt"),
        "empty": (empty, "is empty (0 bytes)"),
        "text": (text, "is not a PyTorch checkpoint: it starts with 'epoch 3: val_acc 0.91' (a text file?)"),
        "missing": (tmp_path / "nowhere.ckpt", "does not exist"),
        "not-lightning": (foreign, "is a PyTorch file but not a Lightning checkpoint: it has no 'state_dict'"),
    }


@pytest.mark.parametrize("kind", ["truncated", "empty", "text", "missing", "not-lightning"])
@pytest.mark.parametrize("subcommand", ["fit", "lr_find", "preview"])
def test_bad_checkpoint_names_the_file_and_the_problem(
    kind: str, subcommand: str, trained_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, problem = bad_checkpoints(trained_checkpoint, tmp_path)[kind]
    args = run_args(tmp_path, f"--ckpt_path={path}")
    line = fails_with([subcommand, *args[1:]], capsys)
    assert line.startswith("error: ckpt_path: ")
    assert repr(str(path)) in line
    assert problem in line
    assert "weights_only=False" not in line


def test_checkpoint_of_another_model_is_refused_with_both_class_names(
    trained_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["fit", "--config", str(CONFIGS_DIR / "tasks" / "digits.yaml"), f"--ckpt_path={trained_checkpoint}"]
    line = fails_with([*args, f"--trainer.default_root_dir={tmp_path}"], capsys)
    assert "written by a lightning_tuning.demos.mnist1d_models.MNIST1DConvNet model" in line
    assert "the configured model is lightning_tuning.demos.digits.DigitsConvNet" in line


def test_guarded_loader_refuses_a_pickle_weights_only_rejects(tmp_path: Path) -> None:
    from lightning_tuning.checkpoints import CheckpointError, load_checkpoint

    path = tmp_path / "objects.ckpt"
    torch.save({"state_dict": {}, "extra": Path("x")}, path)
    with pytest.raises(CheckpointError, match=r"holds Python objects that a weights-only load refuses"):
        load_checkpoint(path)
    assert load_checkpoint(path, weights_only=False)["extra"] == Path("x")


# ---- the command-line forms of `schedule` ----------------------------------------------------------------------------


def test_one_schedule_argument_changes_from_the_command_line(tmp_path: Path) -> None:
    plateau = str(CONFIGS_DIR / "schedules" / "warmup_plateau.yaml")
    cli = main(
        run_args(tmp_path, "--config", plateau, "--schedule.1.init_args.monitor", "val_acc", "--schedule.1.mode=max")
    )
    (decay,) = [cb for cb in cli.trainer.callbacks if type(cb).__name__ == "PlateauDecay"]
    assert (decay.monitor, decay.mode) == ("val_acc", "max")
    saved = yaml.safe_load((Path(cli.trainer.log_dir) / "config.yaml").read_text())
    assert saved["schedule"][1]["init_args"]["monitor"] == "val_acc"
    assert saved["schedule"][1]["init_args"]["patience"] == 2, "the entry's other arguments are kept"
    assert saved["schedule"][0]["class_path"] == "lightning_tuning.Warmup"


def test_schedule_entry_out_of_range_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = fails_with(run_args(tmp_path, "--schedule.4.init_args.length", "3"), capsys)
    assert "`schedule` has 2 entries (0 to 1); there is no entry 4." in line


def test_schedule_help_lists_a_schedules_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--schedule.help", "lightning_tuning.Warmup"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("--length", "--kind", "--start_factor", "--schedule.N.init_args"):
        assert name in out


# ---- a run that diverges, and other checkpoint callbacks ------------------------------------------------------------


def test_nan_at_step_k_stops_the_run_once_and_names_no_best_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    nan = ["--trainer.callbacks+=tests.system_probes.NaNAtStep", "--trainer.callbacks.step=0"]
    cli = main(run_args(tmp_path, "--trainer.max_epochs=3", "--schedule=null", *nan))
    assert cli.trainer.global_step == 1, "stopped after the first NaN step"
    messages = [str(w.message) for w in recwarn if "optimizer step 0" in str(w.message)]
    assert len(messages) == 1
    out = capsys.readouterr().out
    assert "Non-finite training loss at optimizer step 0: training stopped" in out
    assert "Best checkpoint" not in out
    assert "No checkpoint is named best: the one with the best val_acc" in out
    assert "holds non-finite weights" in out


def test_summary_does_not_crash_with_another_checkpoint_callback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = yaml_file(
        tmp_path,
        "on_exception.yaml",
        "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.OnExceptionCheckpoint\n"
        f"      init_args: {{dirpath: {tmp_path / 'crash'}}}\n",
    )
    cli = main(run_args(tmp_path, "--config", extra))
    assert cli.trainer.state.finished
    assert "TensorBoard logs:" in capsys.readouterr().out


@pytest.mark.slow
def test_exit_code_and_single_line_through_python_dash_m(tmp_path: Path) -> None:
    bad = yaml_file(
        tmp_path, "bad.yaml", "schedule: [{class_path: lightning_tuning.StepDecay, init_args: {step_size: 0}}]"
    )
    result = subprocess.run(
        [sys.executable, "-m", "lightning_tuning", *run_args(tmp_path, "--config", bad)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=300,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: schedule[0] (lightning_tuning.StepDecay): `StepDecay.step_size=0` must be at least 1."
    )
    assert "Traceback" not in result.stderr
