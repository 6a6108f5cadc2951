"""Bad input fails before the first optimizer step, with a message that names the argument and what is allowed.

Table-driven: each case builds callbacks (construction errors) or runs ``Trainer.fit`` (errors that need the
trainer), and gives a pattern the message must match.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback

from lightning_tuning import (
    CosineAnnealing,
    CyclicLR,
    ExponentialDecay,
    MultiStepDecay,
    OneCycle,
    PlateauDecay,
    PolynomialDecay,
    StepDecay,
    Warmup,
)
from tests.lr_helpers import TwoGroupModel, quiet_trainer

CONSTRUCTION: list[tuple[str, Callable[[], Any], str]] = [
    ("warmup-kind", lambda: Warmup(10, kind="cosine"), r"`kind='cosine'` is not allowed; use one of"),
    ("warmup-start-factor", lambda: Warmup(10, start_factor=1.5), r"`start_factor=1.5` must lie in \[0, 1\)"),
    ("warmup-negative", lambda: Warmup(-5), r"`Warmup.length=-5` must not be negative"),
    ("warmup-bad-string", lambda: Warmup("ten steps"), r"`Warmup.length='ten steps'` is not a duration"),
    ("warmup-fraction>1", lambda: Warmup(1.5), r"fraction of the run and must lie in \(0, 1\]"),
    ("warmup-constant-zero", lambda: Warmup(10, kind="constant", start_factor=0.0), r"train the first steps at LR 0"),
    ("warmup-untuned-constant", lambda: Warmup("untuned", kind="constant"), r"'untuned'` is defined for"),
    ("interval", lambda: Warmup(10, interval="batch"), r"`interval='batch'` is not allowed; use 'step'"),
    ("optimizers", lambda: Warmup(10, optimizers=[-1]), r"`optimizers=\[-1\]` must be a list of optimizer indices"),
    ("step-gamma", lambda: StepDecay(step_size=5, gamma=0), r"StepDecay: `gamma=0` must be a number > 0"),
    ("step-size-zero", lambda: StepDecay(step_size=0), r"`StepDecay.step_size=0` must be at least 1"),
    ("step-size-percent", lambda: StepDecay(step_size="150%"), r"a percentage must lie in \(0, 100\]"),
    ("multistep-empty", lambda: MultiStepDecay(milestones=[]), r"`milestones=\[\]` must be a non-empty list"),
    ("exp-gamma>1", lambda: ExponentialDecay(gamma=1.5), r"`gamma=1.5` must lie in \(0, 1\]"),
    ("cosine-both", lambda: CosineAnnealing(T_max=10, T_0=5), r"either `T_max` .* or `T_0`"),
    ("cosine-tmult", lambda: CosineAnnealing(T_0=5, T_mult=0), r"`T_mult=0` must be a number >= 1"),
    ("cosine-eta", lambda: CosineAnnealing(eta_min=-0.1), r"`eta_min=-0.1` must be a number >= 0"),
    ("poly-power", lambda: PolynomialDecay(power=0), r"`power=0` must be a number > 0"),
    ("cyclic-mode", lambda: CyclicLR(0.01, 0.1, mode="sine"), r"`mode='sine'` is not allowed; use one of"),
    ("cyclic-max<base", lambda: CyclicLR(0.1, 0.01), r"`max_lr=0.01` is below `base_lr=0.1`"),
    ("cyclic-negative-lr", lambda: CyclicLR(-0.1, 0.01), r"`base_lr=-0.1` must be a number > 0"),
    ("cyclic-gamma", lambda: CyclicLR(0.01, 0.1, gamma=2.0), r"`gamma=2.0` must lie in \(0, 1\]"),
    ("onecycle-pct", lambda: OneCycle(0.1, pct_start=1.2), r"`pct_start=1.2` must lie in \(0, 1\)"),
    ("onecycle-anneal", lambda: OneCycle(0.1, anneal_strategy="exp"), r"`anneal_strategy='exp'` is not allowed"),
    ("onecycle-epochs-alone", lambda: OneCycle(0.1, epochs=3), r"`epochs` and `steps_per_epoch` go together"),
    ("onecycle-div", lambda: OneCycle(0.1, div_factor=0), r"`div_factor=0` must be a number > 0"),
    (
        "onecycle-momentum-above-one",
        lambda: OneCycle(0.1, max_momentum=1.5),
        r"`max_momentum=1.5` must lie in \[0, 1\)",
    ),
    (
        "cyclic-momentum-one",
        lambda: CyclicLR(0.01, 0.1, base_momentum=1.0),
        r"`base_momentum=1.0` must lie in \[0, 1\)",
    ),
    ("onecycle-inf-lr", lambda: OneCycle(float("inf")), r"`max_lr=inf` must be a number > 0"),
    ("plateau-factor", lambda: PlateauDecay(factor=1.0), r"`factor=1.0` must lie in \(0, 1\)"),
    ("plateau-mode", lambda: PlateauDecay(mode="lowest"), r"`mode='lowest'` is not allowed; use 'min' or 'max'"),
    ("plateau-threshold-mode", lambda: PlateauDecay(threshold_mode="pct"), r"`threshold_mode='pct'` is not allowed"),
    ("plateau-patience", lambda: PlateauDecay(patience=-1), r"`patience=-1` must be an integer >= 0"),
    ("plateau-min-lr", lambda: PlateauDecay(min_lr=-1.0), r"`min_lr=-1.0` must be a number >= 0"),
]


@pytest.mark.parametrize(("make", "message"), [case[1:] for case in CONSTRUCTION], ids=[c[0] for c in CONSTRUCTION])
def test_construction_errors(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(MisconfigurationException, match=message):
        make()


class NoStepAllowed(Callback):
    def on_before_optimizer_step(self, *args: Any) -> None:
        raise AssertionError("an optimizer step ran before the configuration error was raised")


FIT: list[tuple[str, Callable[[], list[Callback]], dict[str, Any], str]] = [
    ("warmup-as-long-as-run", lambda: [Warmup(20)], {"max_steps": 20, "max_epochs": -1}, r"whole run is 20 steps"),
    ("warmup-fraction-no-end", lambda: [Warmup(0.1)], {"max_steps": -1, "max_epochs": -1}, r"run has no end"),
    ("warmup-untuned-sgd", lambda: [Warmup("untuned")], {}, r"optimizer 0 is SGD, which has no `betas`"),
    ("cosine-no-end", lambda: [CosineAnnealing()], {"max_steps": -1, "max_epochs": -1}, r"T_max is left out"),
    (
        "milestone-beyond-run",
        lambda: [MultiStepDecay([2, 50])],
        {"max_epochs": 3},
        r"milestones\[1\] is at epoch 50.*3 epochs",
    ),
    ("milestones-not-increasing", lambda: [MultiStepDecay([3, 2], interval="step")], {}, r"not strictly increasing"),
    ("onecycle-longer-than-run", lambda: [OneCycle(0.1, total_steps=100)], {"max_steps": 20}, r"cut off"),
    ("onecycle-auto-without-test", lambda: [OneCycle("auto")], {}, r"no lightning_tuning.LRRangeTest"),
    ("optimizer-index", lambda: [Warmup(2, optimizers=[3])], {}, r"names optimizer index 3, but .* returned 1"),
    ("after-warmup-without-warmup", lambda: [CosineAnnealing(start="after_warmup")], {}, r"no Warmup callback"),
    ("steps-in-epoch-schedule", lambda: [StepDecay("10steps")], {}, r"counts optimizer steps, but .*interval='epoch'"),
    ("eta-min-above-lr", lambda: [CosineAnnealing(eta_min=0.05)], {}, r"eta_min=0.05 is above the learning rate"),
    (
        "cyclic-per-group-count",
        lambda: [CyclicLR([0.01, 0.01, 0.01], 0.1, step_size_up=2)],
        {},
        r"3 values but .* 2 param groups",
    ),
    (
        "momentum-twice",
        lambda: [CyclicLR(0.01, 0.1, step_size_up=2), OneCycle(0.1)],
        {},
        r"all cycle its momentum; only one",
    ),
    ("cyclic-longer-than-run", lambda: [CyclicLR(0.01, 0.1)], {}, r"step_size_up is at step 2000.*only ever rise"),
    ("step-decay-past-run", lambda: [StepDecay(5)], {"max_epochs": 3}, r"step_size is at epoch 5.*after the run ends"),
    ("cosine-longer-than-run", lambda: [CosineAnnealing(T_max=50)], {}, r"T_max is at step 49.*cut off"),
    ("two-warmups", lambda: [Warmup(2), Warmup(3, kind="exponential")], {}, r"\['Warmup', 'Warmup'\] all warm it up"),
    ("plateau-without-validation", lambda: [PlateauDecay()], {"limit_val_batches": 0}, r"this fit has none"),
    (
        "plateau-monitor-missing",
        lambda: [PlateauDecay(monitor="val_f1")],
        {"limit_val_batches": 1},
        r"`monitor='val_f1'` was not logged.*Logged metrics: \['val_loss'\]",
    ),
]


@pytest.mark.parametrize(("make", "trainer_kwargs", "message"), [c[1:] for c in FIT], ids=[c[0] for c in FIT])
def test_fit_errors_before_the_first_step(
    make: Callable[[], list[Callback]], trainer_kwargs: dict[str, Any], message: str, tmp_path: Any
) -> None:
    settings = {
        "max_epochs": 2,
        "limit_train_batches": 5,
        "limit_val_batches": 0,
        "enable_checkpointing": False,
        **trainer_kwargs,
    }
    trainer = quiet_trainer(default_root_dir=tmp_path, callbacks=[*make(), NoStepAllowed()], **settings)
    with pytest.raises(MisconfigurationException, match=message):
        trainer.fit(TwoGroupModel())


# ---- through the CLI, as YAML ------------------------------------------------------------------------------------

CLI_CASES: list[tuple[str, str, str]] = [
    ("unknown-callback", "schedule: [{class_path: lightning_tuning.Warmpu}]", r"lightning_tuning.Warmpu"),
    (
        "wrong-type",
        "schedule: [{class_path: lightning_tuning.StepDecay, init_args: {step_size: 2, gamma: fast}}]",
        r"gamma",
    ),
    (
        "unknown-kind",
        "schedule: [{class_path: lightning_tuning.Warmup, init_args: {length: 3, kind: cosine}}]",
        r"kind",
    ),
    (
        "unknown-mode",
        "schedule: [{class_path: lightning_tuning.CyclicLR, init_args: {base_lr: 0.001, max_lr: 0.01, mode: sine}}]",
        r"mode",
    ),
    (
        "warmup-as-long-as-run",
        "schedule: [{class_path: lightning_tuning.Warmup, init_args: {length: 100000}}]",
        r"the warmup would never finish",
    ),
    (
        "plateau-metric-never-logged",
        "schedule: [{class_path: lightning_tuning.PlateauDecay, init_args: {monitor: val_f1}}]",
        r"`monitor='val_f1'` was not logged",
    ),
    (
        "init-unknown-scheme",
        "init: [{class_path: lightning_tuning.WeightInit, init_args: {rules: "
        "[{modules: [Linear], weight: he_normal}]}}]",
        r"he_normal",
    ),
    (
        "init-rule-matches-nothing",
        "init: [{class_path: lightning_tuning.WeightInit, init_args: {rules: "
        "[{modules: [LSTM], weight: orthogonal}]}}]",
        r"selects no parameter of MNIST1DConvNet. Modules with",
    ),
    ("unknown-trainer-arg", "trainer: {max_epoch: 3}", r"max_epoch"),
]


@pytest.mark.parametrize(("yaml_text", "message"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_yaml_errors(yaml_text: str, message: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    from lightning_tuning.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    args = [
        "fit",
        "--config",
        "configs/quickstart.yaml",
        "--config",
        str(bad),
        "--trainer.max_epochs",
        "1",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--data.init_args.num_samples",
        "600",
        "--data.init_args.cache_dir",
        str(tmp_path / "cache"),
        "--trainer.enable_progress_bar",
        "false",
        "--test_after_fit",
        "false",
        "--trainer.callbacks+=tests.test_invalid_configs.NoStepAllowed",
    ]
    with pytest.raises((SystemExit, MisconfigurationException, ValueError)) as raised:
        main(args)
    # a parse error exits with the message on stderr; a config error raises it before the first step
    text = capsys.readouterr().err if raised.type is SystemExit else str(raised.value)
    assert re.search(message, text), f"the error does not name the argument: {text[-500:]}"
