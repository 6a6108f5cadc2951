"""Every YAML file under ``configs/`` runs through the real CLI entry point for a few batches.

Task configs (``configs/quickstart.yaml``, ``configs/tasks/``) run alone; every other config (optimizers,
schedules, init, and any folder added later) is layered on top of the quickstart, as users do.

A config that demonstrates a failure says so in a comment line ``# expect-error: <text of the message>``;
its test then passes only if the run fails with that text.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def run_fit(configs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    error = expected_error(configs[-1])
    if error is not None:
        # a configuration error: one `error:` line on stderr, exit code 2
        with pytest.raises(SystemExit) as exit_info:
            _run_fit(configs, tmp_path)
        assert exit_info.value.code == 2
        assert error in capsys.readouterr().err
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
def test_task_config_runs(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_fit([config], tmp_path, capsys)


@pytest.mark.parametrize("config", LAYERED_CONFIGS, ids=config_id)
def test_config_layers_on_the_quickstart(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_fit([QUICKSTART, config], tmp_path, capsys)


# ---- each schedule config does what its comment says, on a short (2-epoch) run ------------------------------------

SHORT_RUN = [
    "--data.num_samples=400",
    "--data.batch_size=20",
    "--trainer.max_epochs=2",
    "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--test_after_fit=false",
    "--trainer.callbacks+=tests.lr_helpers.LRRecorder",
]


def schedule_args(config: Path) -> dict[str, Any]:
    """The init_args of the config's schedule entries, by class name (read from the YAML, not from the code)."""
    entries = yaml.safe_load(config.read_text())["schedule"]
    return {entry["class_path"].rsplit(".", 1)[-1]: entry.get("init_args", {}) for entry in entries}


def percent(text: str) -> float:
    return float(text.rstrip("%")) / 100


def run_short(config: Path, tmp_path: Path) -> tuple[list[float], list[float], int, float]:
    """LRs and momenta of every optimizer step of a 2-epoch quickstart run with ``config`` layered on."""
    cli = main(
        [
            "fit",
            "--config",
            str(QUICKSTART),
            "--config",
            str(config),
            *SHORT_RUN,
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    (recorder,) = [cb for cb in cli.trainer.callbacks if type(cb).__name__ == "LRRecorder"]
    base = float(yaml.safe_load(QUICKSTART.read_text())["model"]["init_args"]["lr"])
    lrs = [row[0] for row in recorder.lrs]
    momenta = [row[0] for row in recorder.momenta]
    steps_per_epoch = len(lrs) // 2
    assert len(lrs) == cli.trainer.global_step > 8
    return lrs, momenta, steps_per_epoch, base


def change_points(lrs: list[float]) -> list[int]:
    return [step for step in range(1, len(lrs)) if lrs[step] != lrs[step - 1]]


def check_warmup(lrs: list[float], base: float, length: str) -> int:
    """A linear warmup to ``base`` over ``length`` of the run; returns the step where the LR reaches ``base``."""
    reached = next(step for step, lr in enumerate(lrs) if lr == pytest.approx(base, rel=1e-9))
    assert 1 <= reached <= math.ceil(percent(length) * len(lrs)), f"warmup lasted {reached} of {len(lrs)} steps"
    rising = lrs[: reached + 1]
    assert all(a < b for a, b in itertools.pairwise(rising)), "the warmup LR must rise at every step"
    return reached


def check_decay_points(lrs: list[float], start: float, gamma: float, fractions: list[float]) -> None:
    """The LR is ``start`` and multiplied by ``gamma`` at (within one step of) each fraction of the run."""
    points = change_points(lrs)
    assert len(points) == len(fractions), f"decays at steps {points}, expected at {fractions} of {len(lrs)}"
    for point, fraction in zip(points, fractions, strict=True):
        assert abs(point - fraction * len(lrs)) <= 1, f"decay at step {point}, expected near {fraction * len(lrs)}"
    for count, point in enumerate([0, *points]):
        assert lrs[point] == pytest.approx(start * gamma**count, rel=1e-9)


def claim_warmup(config: Path, lrs: list[float], momenta: list[float], per_epoch: int, base: float) -> None:
    reached = check_warmup(lrs, base, schedule_args(config)["Warmup"]["length"])
    assert all(lr == pytest.approx(base) for lr in lrs[reached:]), "after the warmup: the optimizer's own LR"


def claim_warmup_cosine(config: Path, lrs: list[float], momenta: list[float], per_epoch: int, base: float) -> None:
    reached = check_warmup(lrs, base, schedule_args(config)["Warmup"]["length"])
    tail = lrs[reached:]
    assert all(a >= b for a, b in itertools.pairwise(tail)), "cosine after the warmup never rises"
    assert tail[-1] < 0.05 * base, "cosine annealing ends near 0"


def claim_cosine(config: Path, lrs: list[float], momenta: list[float], per_epoch: int, base: float) -> None:
    eta_min = float(schedule_args(config)["CosineAnnealing"]["eta_min"])
    total = len(lrs)
    # torch CosineAnnealingLR with T_max = run length, stepped after every optimizer step
    expected = [eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / total)) / 2 for t in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-6)


def claim_polynomial(config: Path, lrs: list[float], momenta: list[float], per_epoch: int, base: float) -> None:
    power = float(schedule_args(config)["PolynomialDecay"]["power"])
    total = len(lrs)
    expected = [base * (1 - t / total) ** power for t in range(total)]  # torch PolynomialLR, total_iters = run
    assert lrs == pytest.approx(expected, rel=1e-6)


def claim_multi_step(config: Path, lrs: list[float], momenta: list[float], per_epoch: int, base: float) -> None:
    args = schedule_args(config)["MultiStepDecay"]
    fractions = [percent(m) for m in args["milestones"]]
    start = 0
    if "Warmup" in schedule_args(config):
        start = check_warmup(lrs, base, schedule_args(config)["Warmup"]["length"])
    check_decay_points(lrs[start:], base, float(args["gamma"]), [f - start / len(lrs) for f in fractions])


def claim_step_decay(config: Path, lrs: list[float], momenta: list[float], per_epoch: int, base: float) -> None:
    args = schedule_args(config)["StepDecay"]
    every = percent(args["step_size"])
    fractions = [every * k for k in range(1, int(1 / every) + 1) if every * k < 1]
    check_decay_points(lrs, base, float(args["gamma"]), fractions)


def claim_exponential(config: Path, lrs: list[float], momenta: list[float], per_epoch: int, base: float) -> None:
    gamma = float(schedule_args(config)["ExponentialDecay"]["gamma"])
    expected = [base * gamma ** (step // per_epoch) for step in range(len(lrs))]  # times gamma after every epoch
    assert lrs == pytest.approx(expected, rel=1e-9)


def claim_one_cycle(config: Path, lrs: list[float], momenta: list[float], per_epoch: int, base: float) -> None:
    args = schedule_args(config)["OneCycle"]
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[peak] == pytest.approx(float(args["max_lr"]), rel=0.05)
    assert abs(peak - float(args["pct_start"]) * len(lrs)) <= 1
    # "momentum (or Adam beta1) cycling 0.95 -> 0.85 -> 0.95"
    assert momenta[0] == pytest.approx(0.95)
    assert momenta[peak] == pytest.approx(0.85, abs=0.005)
    assert momenta[-1] == pytest.approx(0.95, abs=0.005)


def claim_cyclic(config: Path, lrs: list[float], momenta: list[float], per_epoch: int, base: float) -> None:
    args = schedule_args(config)["CyclicLR"]
    low, high = float(args["base_lr"]), float(args["max_lr"])
    assert lrs[0] == pytest.approx(low)
    assert all(low * (1 - 1e-9) <= lr <= high * (1 + 1e-9) for lr in lrs)
    # step_size_up: 1epochs -> the peak is one epoch in, and the LR is back at base_lr after two
    assert max(range(len(lrs)), key=lrs.__getitem__) == per_epoch
    assert lrs[per_epoch] == pytest.approx(high)


CLAIMS: dict[str, Callable[..., None]] = {
    "warmup.yaml": claim_warmup,
    "warmup_cosine.yaml": claim_warmup_cosine,
    "cosine.yaml": claim_cosine,
    "polynomial.yaml": claim_polynomial,
    "multi_step_decay.yaml": claim_multi_step,
    "warmup_step.yaml": claim_multi_step,
    "step_decay.yaml": claim_step_decay,
    "exponential_decay.yaml": claim_exponential,
    "one_cycle.yaml": claim_one_cycle,
    "cyclic.yaml": claim_cyclic,
    "triangular2.yaml": claim_cyclic,
}


def test_every_schedule_config_with_a_checkable_claim_has_a_check() -> None:
    fits_any = {p.name for p in (CONFIGS_DIR / "schedules").glob("*.yaml") if "any run length" in p.read_text()}
    assert fits_any <= set(CLAIMS), (
        f"configs that claim to fit any run length without a check: {fits_any - set(CLAIMS)}"
    )
    assert {"multi_step_decay.yaml", "warmup_step.yaml", "step_decay.yaml"} <= fits_any


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_schedule_config_does_what_its_comment_says_on_a_2_epoch_run(name: str, tmp_path: Path) -> None:
    config = CONFIGS_DIR / "schedules" / name
    lrs, momenta, per_epoch, base = run_short(config, tmp_path)
    CLAIMS[name](config, lrs, momenta, per_epoch, base)
