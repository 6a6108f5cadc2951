"""Every YAML file under ``configs/`` runs through the real CLI entry point for a few batches.

Task configs (``configs/quickstart.yaml``, ``configs/tasks/``) run alone; every other config (optimizers,
schedules, init, and any folder added later) is layered on top of the quickstart, as users do.

A config that demonstrates a failure says so in a comment line ``# expect-error: <text of the message>``;
its test then passes only if the run fails with that text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lightning_tuning.cli import main
from tests.conftest import CONFIGS_DIR

pytestmark = pytest.mark.usefixtures("cli_argv")

QUICKSTART = CONFIGS_DIR / "quickstart.yaml"
TASK_CONFIGS = sorted([QUICKSTART, *(CONFIGS_DIR / "tasks").glob("**/*.yaml")])
LAYERED_CONFIGS = sorted(path for path in CONFIGS_DIR.glob("**/*.yaml") if path not in TASK_CONFIGS)

# shrink each demo data set so that a run takes seconds; configs for other data run as written
TINY_DATA = {
    "MNIST1DDataModule": ["--data.num_samples=200", "--data.batch_size=20"],
    "CharLMDataModule": ["--data.max_chars=6000", "--data.batch_size=8"],
    "DigitsDataModule": ["--data.batch_size=32"],
}


def config_id(path: Path) -> str:
    return str(path.relative_to(CONFIGS_DIR))


def data_class_name(configs: list[Path]) -> str | None:
    name = None
    for path in configs:
        data = (yaml.safe_load(path.read_text()) or {}).get("data")
        if isinstance(data, dict) and "class_path" in data:
            name = data["class_path"].rsplit(".", 1)[-1]
    return name


def expected_error(config: Path) -> str | None:
    match = re.search(r"^#\s*expect-error:\s*(.+?)\s*$", config.read_text(), flags=re.MULTILINE)
    return match.group(1) if match else None


def run_fit(configs: list[Path], tmp_path: Path) -> None:
    error = expected_error(configs[-1])
    if error is not None:
        with pytest.raises(Exception, match=re.escape(error)):
            _run_fit(configs, tmp_path)
        return
    _run_fit(configs, tmp_path)


def _run_fit(configs: list[Path], tmp_path: Path) -> None:
    config_args = [arg for path in configs for arg in ("--config", str(path))]
    cli = main(
        [
            "fit",
            *config_args,
            *TINY_DATA.get(data_class_name(configs) or "", []),
            "--trainer.max_epochs=4",
            "--trainer.limit_train_batches=5",
            "--trainer.limit_val_batches=1",
            "--trainer.limit_test_batches=2",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    assert cli.trainer.state.finished
    assert cli.trainer.global_step > 0
    assert (Path(cli.trainer.log_dir) / "config.yaml").is_file()


def test_configs_are_found() -> None:
    assert QUICKSTART in TASK_CONFIGS
    assert {path.stem for path in (CONFIGS_DIR / "optimizers").glob("*.yaml")} >= {
        "sgd",
        "momentum",
        "nesterov",
        "adagrad",
        "rmsprop",
        "adam",
        "adamw",
    }


@pytest.mark.parametrize("config", TASK_CONFIGS, ids=config_id)
def test_task_config_runs(config: Path, tmp_path: Path) -> None:
    run_fit([config], tmp_path)


@pytest.mark.parametrize("config", LAYERED_CONFIGS, ids=config_id)
def test_config_layers_on_the_quickstart(config: Path, tmp_path: Path) -> None:
    run_fit([QUICKSTART, config], tmp_path)
