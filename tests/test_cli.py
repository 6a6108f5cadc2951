"""The ``python -m lightning_tuning`` command line: LightningCLI behaviour plus this package's additions."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.loggers import TensorBoardLogger

import lightning_tuning
from lightning_tuning import cli as cli_module
from lightning_tuning.cli import TuningCLI, TuningTrainer, main
from tests.conftest import CONFIGS_DIR, REPO_ROOT

pytestmark = pytest.mark.usefixtures("cli_argv")

BORING_MODEL = "lightning.pytorch.demos.boring_classes.BoringModel"
QUICKSTART = str(CONFIGS_DIR / "quickstart.yaml")


def short_run(tmp_path: Path) -> list[str]:
    """Arguments that keep any run to a few batches and its logs under ``tmp_path``."""
    return [
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=2",
        "--trainer.limit_test_batches=2",
        "--trainer.limit_predict_batches=2",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]


TINY_MNIST1D = ["--data.num_samples=200", "--data.batch_size=20"]


class RecordingCallback(Callback):
    """A callback that only exists in this module: YAML must find it by class path."""

    def __init__(self, tag: str = "default") -> None:
        self.tag = tag
        self.fit_started = False

    def on_fit_start(self, trainer: Any, pl_module: LightningModule) -> None:
        self.fit_started = True


def test_boring_model_fit_without_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = main(["fit", f"--model={BORING_MODEL}", *short_run(tmp_path)])

    assert cli.datamodule is None
    assert cli.trainer.state.finished
    assert isinstance(cli.trainer, TuningTrainer)
    log_dir = Path(cli.trainer.log_dir)
    assert log_dir.parent == tmp_path / "lightning_logs"
    assert (log_dir / "config.yaml").is_file()
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {tmp_path / 'lightning_logs'}" in out


def test_tensorboard_is_the_default_logger(tmp_path: Path) -> None:
    cli = main(["fit", f"--model={BORING_MODEL}", *short_run(tmp_path)])

    assert len(cli.trainer.loggers) == 1
    assert isinstance(cli.trainer.logger, TensorBoardLogger)
    assert list(Path(cli.trainer.log_dir).glob("events.out.tfevents.*"))


def test_missing_tensorboard_fails_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "_tensorboard_available", lambda: False)
    with pytest.raises(ModuleNotFoundError, match="pip install tensorboard"):
        main(["fit", f"--model={BORING_MODEL}", *short_run(tmp_path)])
    assert not (tmp_path / "lightning_logs").exists()


def test_explicit_logger_needs_no_tensorboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "_tensorboard_available", lambda: False)
    cli = main(
        [
            "fit",
            f"--model={BORING_MODEL}",
            *short_run(tmp_path),
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.save_dir={tmp_path}",
        ]
    )
    assert type(cli.trainer.logger).__name__ == "CSVLogger"


def test_print_config_includes_callback_class_paths(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", QUICKSTART, "--print_config"])
    assert exit_info.value.code in (None, 0)

    config = yaml.safe_load(capsys.readouterr().out)
    class_paths = [callback["class_path"] for callback in config["trainer"]["callbacks"]]
    assert "lightning.pytorch.callbacks.ModelCheckpoint" in class_paths
    assert config["model"]["class_path"].endswith(".MNIST1DConvNet")
    assert config["data"]["class_path"].endswith(".MNIST1DDataModule")
    assert config["test_after_fit"] is True


def test_help_lists_the_extra_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for subcommand in ("fit", "validate", "test", "predict", "lr_find", "preview"):
        assert subcommand in out


def test_python_dash_m_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lightning_tuning", "fit", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--test_after_fit" in result.stdout


def test_layered_configs_override_earlier_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    override = tmp_path / "override.yaml"
    override.write_text("trainer:\n  max_epochs: 7\nmodel:\n  init_args:\n    channels: 8\n")
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                "--config",
                QUICKSTART,
                "--config",
                str(CONFIGS_DIR / "optimizers" / "nesterov.yaml"),
                "--config",
                str(override),
                "--print_config",
            ]
        )

    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["max_epochs"] == 7
    assert config["model"]["init_args"]["channels"] == 8
    assert config["model"]["init_args"]["kernel_size"] == 5  # untouched values of the first file survive
    assert config["optimizer"]["class_path"] == "torch.optim.SGD"
    assert config["optimizer"]["init_args"]["nesterov"] is True


def test_optimizer_config_replaces_the_models_default(tmp_path: Path) -> None:
    cli = main(
        [
            "fit",
            "--config",
            QUICKSTART,
            "--config",
            str(CONFIGS_DIR / "optimizers" / "rmsprop.yaml"),
            *short_run(tmp_path),
            *TINY_MNIST1D,
            "--test_after_fit=false",
        ]
    )
    (optimizer,) = cli.trainer.optimizers
    assert isinstance(optimizer, torch.optim.RMSprop)
    assert optimizer.param_groups[0]["lt_base_lr"] == pytest.approx(1e-3)


def test_models_default_optimizer_without_optimizer_key(tmp_path: Path) -> None:
    cli = main(["fit", "--config", QUICKSTART, *short_run(tmp_path), *TINY_MNIST1D, "--model.lr=0.0042"])
    (optimizer,) = cli.trainer.optimizers
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["lt_base_lr"] == pytest.approx(0.0042)


def test_quickstart_tests_after_fit_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = main(["fit", "--config", QUICKSTART, *short_run(tmp_path), *TINY_MNIST1D])

    assert {"test_acc", "test_loss"} <= set(cli.trainer.callback_metrics)
    out = capsys.readouterr().out
    assert "Final validation (last epoch): val_acc=" in out
    assert "Final test: test_acc=" in out
    assert "Best checkpoint (val_acc=" in out
    assert f"TensorBoard logs: {cli.trainer.log_dir}" in out


def test_saved_config_reruns_every_subcommand(tmp_path: Path) -> None:
    fit_cli = main(["fit", f"--model={BORING_MODEL}", *short_run(tmp_path)])
    saved_config = Path(fit_cli.trainer.log_dir) / "config.yaml"
    assert yaml.safe_load(saved_config.read_text())["model"]["class_path"] == BORING_MODEL

    for subcommand in ("validate", "test", "predict"):
        cli = main([subcommand, "--config", str(saved_config)])
        assert cli.trainer.state.finished, subcommand
        assert cli.trainer.state.fn == subcommand


@pytest.mark.parametrize("subcommand", ["lr_find", "preview"])
def test_extra_subcommands_dispatch(
    subcommand: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[Any, ...]] = []
    command_module = types.ModuleType(f"lightning_tuning.{subcommand}")
    setattr(command_module, f"{subcommand}_command", lambda *args: calls.append(args))
    monkeypatch.setitem(sys.modules, f"lightning_tuning.{subcommand}", command_module)

    cli = main([subcommand, "--config", QUICKSTART, *short_run(tmp_path), *TINY_MNIST1D])

    assert calls == [(cli.trainer, cli.model, cli.datamodule)]
    assert cli.datamodule is not None
    assert "tensorboard --logdir" in capsys.readouterr().out


def test_extra_subcommands_accept_a_saved_fit_config_and_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fit_cli = main(["fit", f"--model={BORING_MODEL}", *short_run(tmp_path)])
    saved_config = Path(fit_cli.trainer.log_dir) / "config.yaml"
    (checkpoint,) = (Path(fit_cli.trainer.log_dir) / "checkpoints").glob("epoch=*.ckpt")
    assert (Path(fit_cli.trainer.log_dir) / "checkpoints" / "last.ckpt").is_file(), "fit writes last.ckpt by default"
    trained = {name: tensor.clone() for name, tensor in fit_cli.model.state_dict().items()}

    seen_weights: list[dict[str, torch.Tensor]] = []
    command_module = types.ModuleType("lightning_tuning.lr_find")
    command_module.lr_find_command = lambda trainer, model, datamodule: seen_weights.append(model.state_dict())  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lightning_tuning.lr_find", command_module)

    main(["lr_find", "--config", str(saved_config), f"--ckpt_path={checkpoint}"])

    (weights,) = seen_weights
    for name, tensor in trained.items():
        torch.testing.assert_close(weights[name], tensor)


def test_callback_class_path_from_yaml(tmp_path: Path) -> None:
    config = tmp_path / "callback.yaml"
    config.write_text(
        f"trainer:\n  callbacks:\n    - class_path: {__name__}.RecordingCallback\n      init_args:\n        tag: yaml\n"
    )
    cli = main(["fit", f"--model={BORING_MODEL}", "--config", str(config), *short_run(tmp_path)])

    (recorder,) = [callback for callback in cli.trainer.callbacks if isinstance(callback, RecordingCallback)]
    assert recorder.tag == "yaml"
    assert recorder.fit_started


@pytest.fixture
def short_name_callback(monkeypatch: pytest.MonkeyPatch) -> Any:
    # registers RecordingCallback as a lazy top-level export, exactly like the package's own callbacks
    monkeypatch.setitem(lightning_tuning._EXPORTS, "RecordingCallback", __name__)
    yield
    vars(lightning_tuning).pop("RecordingCallback", None)  # the lazy loader caches resolved names


@pytest.mark.usefixtures("short_name_callback")
def test_callback_short_name_resolves_through_lazy_exports(tmp_path: Path) -> None:
    cli = main(
        [
            "fit",
            f"--model={BORING_MODEL}",
            *short_run(tmp_path),
            "--trainer.callbacks+=lightning_tuning.RecordingCallback",
            "--trainer.callbacks.tag=short",
        ]
    )
    (recorder,) = [callback for callback in cli.trainer.callbacks if isinstance(callback, RecordingCallback)]
    assert recorder.tag == "short"


@pytest.mark.parametrize("name", sorted(name for name in lightning_tuning._EXPORTS if name != "TuningCLI"))
def test_package_callbacks_resolve_by_short_name(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = lightning_tuning._EXPORTS[name]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not written yet")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", f"--model={BORING_MODEL}", "--trainer.callbacks.help", f"lightning_tuning.{name}"])
    assert exit_info.value.code == 0
    assert name in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--trainer.max_epochs=many"], "max_epochs"),
        (["--trainer.not_an_argument=1"], "not_an_argument"),
        (["--model.activation=swish"], "activation"),
        (["--model.depth=deep"], "depth"),
    ],
    ids=["wrong-type", "unknown-key", "literal-choice", "model-int"],
)
def test_bad_arguments_fail_before_training_naming_the_argument(
    args: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_args = ["--model=lightning_tuning.demos.MNIST1DMLP", "--data=lightning_tuning.demos.MNIST1DDataModule"]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *model_args, *short_run(tmp_path), *args])
    assert exit_info.value.code != 0
    assert named in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()


def test_invalid_value_in_model_init_names_the_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model=lightning_tuning.demos.MNIST1DMLP", "--model.depth=0", *short_run(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: model (lightning_tuning.demos.MNIST1DMLP): `depth` must be at least 1 hidden layer, got 0" in err
    assert "Traceback" not in err


def test_missing_model_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--trainer.max_epochs=1"])
    assert "model" in capsys.readouterr().err


def test_trainer_class_must_provide_the_extra_subcommands() -> None:
    from lightning.pytorch import Trainer

    with pytest.raises(TypeError, match="TuningTrainer"):
        TuningCLI(LightningModule, trainer_class=Trainer, args=["fit", f"--model={BORING_MODEL}"])


def test_schedule_key_adds_callbacks_without_replacing_the_tasks(tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(
        f"schedule:\n  - class_path: {__name__}.RecordingCallback\n    init_args:\n      tag: schedule\n"
    )
    config_args = ["--config", QUICKSTART, "--config", str(schedule)]
    cli = main(["fit", *config_args, *short_run(tmp_path), *TINY_MNIST1D, "--test_after_fit=false"])
    kinds = {type(callback).__name__ for callback in cli.trainer.callbacks}
    assert {"RecordingCallback", "ModelCheckpoint", "TuningDashboard"} <= kinds
    assert not {"Warmup", "CosineAnnealing"} & kinds, "a later schedule config replaces the quickstart's schedule"


def test_init_and_schedule_configs_layer_together(tmp_path: Path) -> None:
    configs = ["--config", QUICKSTART, "--config", "configs/init/he.yaml", "--config", "configs/schedules/plateau.yaml"]
    cli = main(["fit", *configs, *short_run(tmp_path), *TINY_MNIST1D, "--test_after_fit=false"])
    kinds = [type(callback).__name__ for callback in cli.trainer.callbacks]
    assert {"ModelCheckpoint", "WeightInit", "PlateauDecay", "TuningDashboard"} <= set(kinds)
    assert kinds.index("WeightInit") < kinds.index("PlateauDecay")


def test_dashboard_can_be_turned_off(tmp_path: Path) -> None:
    cli = main(
        [
            "fit",
            "--config",
            QUICKSTART,
            *short_run(tmp_path),
            *TINY_MNIST1D,
            "--test_after_fit=false",
            "--dashboard=null",
        ]
    )
    assert not any(type(callback).__name__ == "TuningDashboard" for callback in cli.trainer.callbacks)


def test_a_later_schedule_config_replaces_the_list_without_carrying_arguments(tmp_path: Path) -> None:
    # jsonargparse alone would merge item by item: MultiStepDecay would inherit CosineAnnealing's `start`
    first = tmp_path / "first.yaml"
    first.write_text(
        "schedule:\n  - {class_path: lightning_tuning.Warmup, init_args: {length: 2, kind: exponential}}\n"
        "  - {class_path: lightning_tuning.CosineAnnealing, init_args: {start: after_warmup}}\n"
    )
    second = tmp_path / "second.yaml"
    second.write_text(
        "schedule:\n  - {class_path: lightning_tuning.Warmup, init_args: {length: 1}}\n"
        "  - {class_path: lightning_tuning.MultiStepDecay, init_args: {milestones: [1], interval: step}}\n"
    )
    args = ["--config", QUICKSTART, "--config", str(first), "--config", str(second)]
    cli = main(["fit", *args, *short_run(tmp_path), *TINY_MNIST1D, "--test_after_fit=false"])
    warmup = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "Warmup")
    decay = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "MultiStepDecay")
    assert warmup.kind == "linear"
    assert decay.start == 0
