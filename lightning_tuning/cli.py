"""The ``python -m lightning_tuning`` command line: LightningCLI with TensorBoard, ``lr_find`` and ``preview``.

Example::

    python -m lightning_tuning fit --config configs/quickstart.yaml
    python -m lightning_tuning fit --config configs/quickstart.yaml --config configs/optimizers/nesterov.yaml
    python -m lightning_tuning fit --model lightning.pytorch.demos.boring_classes.BoringModel --trainer.max_epochs 1
    python -m lightning_tuning lr_find --config configs/quickstart.yaml
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NoReturn

import torch
import yaml
from jsonargparse import ArgumentError, ArgumentParser, Namespace, lazy_instance
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.fabric.utilities.imports import RequirementCache
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_only, rank_zero_warn
from typing_extensions import override

from lightning_tuning.callbacks.dashboard import TuningDashboard
from lightning_tuning.callbacks.exact_resume import ExactResume
from lightning_tuning.callbacks.non_finite_guard import NonFiniteLossGuard
from lightning_tuning.checkpoints import CheckpointError, check_model_class, load_checkpoint


def _tensorboard_available() -> bool:
    # the two packages Lightning's TensorBoardLogger can write with
    return bool(RequirementCache("tensorboard")) or bool(RequirementCache("tensorboardX"))


class TuningTrainer(Trainer):
    """A :class:`~lightning.pytorch.Trainer` with the two extra entry points behind the CLI's subcommands.

    LightningCLI builds one subcommand per Trainer method (its arguments come from the method's signature)
    and calls that method to run it. ``lr_find`` and ``preview`` take the same arguments as ``fit``
    (``ckpt_path``, ``weights_only``), so the same config files work for all three.
    """

    def lr_find(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
        weights_only: bool | None = None,
        min_lr: float | None = None,
        max_lr: float | None = None,
        num_steps: int | None = None,
        mode: Literal["exponential", "linear"] | None = None,
        smoothing: float | None = None,
        divergence_threshold: float | None = None,
        suggestion: Literal["valley", "steepest", "min_div_10"] | None = None,
        skip_start: int | None = None,
        skip_end: int | None = None,
    ) -> Any:
        """Runs a learning-rate range test and prints the suggested LR as a config snippet; trains nothing else.

        The range test (``lightning_tuning.LRRangeTest``) is the one configured in the callbacks or the schedule, else
        a default one; the options below override its settings (unset: the configured or default value). Pass the
        printed snippet after your config (``fit --config CONFIG --config SNIPPET``) to train at the suggested LR.

        Args:
            model: The model to test.
            datamodule: Its data; ``None`` when the model has its own dataloaders.
            ckpt_path: Start from the weights in this checkpoint instead of the model's initial weights.
            weights_only: Load the checkpoint with ``torch.load(weights_only=...)``; ``None`` means ``True``.
            min_lr: First LR of the sweep, > 0 (default 1e-7).
            max_lr: Last LR of the sweep, > min_lr (default 10).
            num_steps: Optimizer steps of the sweep, >= 10 (default 100).
            mode: LR spacing of the sweep (default exponential).
            smoothing: EMA factor of the loss in [0, 1) (default 0.98).
            divergence_threshold: Stop when the smoothed loss exceeds this multiple of the best, > 1 (default 4).
            suggestion: Which suggestion the snippet uses (default min_div_10).
            skip_start: Points left out at the start for steepest (default 10).
            skip_end: Points left out at the end for steepest (default 5).

        Returns:
            What :func:`lightning_tuning.lr_find.lr_find_command` returns.
        """
        from lightning_tuning.lr_find import lr_find_command

        options = {
            "min_lr": min_lr,
            "max_lr": max_lr,
            "num_steps": num_steps,
            "mode": mode,
            "smoothing": smoothing,
            "divergence_threshold": divergence_threshold,
            "suggestion": suggestion,
            "skip_start": skip_start,
            "skip_end": skip_end,
        }
        _load_weights(model, ckpt_path, weights_only)
        return lr_find_command(self, model, datamodule, **{k: v for k, v in options.items() if v is not None})

    def preview(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
        weights_only: bool | None = None,
    ) -> Any:
        """Previews the configured run (schedules, initialisation) without training.

        Args:
            model: The model to preview.
            datamodule: Its data; ``None`` when the model has its own dataloaders.
            ckpt_path: Preview the weights in this checkpoint instead of the model's initial weights.
            weights_only: Load the checkpoint with ``torch.load(weights_only=...)``; ``None`` means ``True``.

        Returns:
            What :func:`lightning_tuning.preview.preview_command` returns.
        """
        from lightning_tuning.preview import preview_command

        _load_weights(model, ckpt_path, weights_only)
        return preview_command(self, model, datamodule)


def _load_weights(model: LightningModule, ckpt_path: str | None, weights_only: bool | None) -> None:
    if ckpt_path is None:
        return
    checkpoint = load_checkpoint(ckpt_path, weights_only)
    check_model_class(ckpt_path, checkpoint, type(model))
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(
            f"The weights in checkpoint {ckpt_path!r} do not fit {type(model).__name__}: {str(error).splitlines()[0]}"
        ) from None


class ConfigError(MisconfigurationException):
    """A configuration problem found before or at the start of a run; the CLI prints it as one ``error:`` line.

    Args:
        key: The config key it is about (``schedule[1]``, ``trainer.callbacks[0]``, ``model``, ``ckpt_path``), or
            ``None`` when no single key is to blame.
        message: What is wrong and what to do.
    """

    def __init__(self, key: str | None, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class TuningArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose errors add a hint for classes written against ``pytorch_lightning``."""

    @override
    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        hint = _pytorch_lightning_hint(message)
        super().error(f"{message}\n{hint}" if hint else message, ex)


class TuningCLI(LightningCLI):
    """LightningCLI for this package: TensorBoard logging, ``--test_after_fit``, ``lr_find`` and ``preview``.

    Differences from :class:`~lightning.pytorch.cli.LightningCLI`:

    - the default logger must be TensorBoard: if neither ``tensorboard`` nor ``tensorboardX`` is installed, it
      fails before training instead of silently logging to CSV;
    - two more subcommands, ``lr_find`` and ``preview``, parse exactly like ``fit`` and run
      ``lightning_tuning.lr_find.lr_find_command`` / ``lightning_tuning.preview.preview_command``
      (see :class:`TuningTrainer`);
    - ``schedule:`` and ``init:`` take lists of callbacks (the LR schedules, the weight initialisation) that are
      added to ``trainer.callbacks``, so a schedule config and an init config layer on a task config without
      replacing each other's or the task's callbacks; ``--schedule.N.init_args.NAME VALUE`` (or
      ``--schedule.N.NAME VALUE``) changes one argument of entry ``N``, ``--schedule.help CLASS`` lists a class's
      arguments (the same for ``init``);
    - ``dashboard:`` a :class:`~lightning_tuning.TuningDashboard`, on by default (``--dashboard null`` turns it off);
    - ``non_finite_guard:`` a :class:`~lightning_tuning.NonFiniteLossGuard`, on by default with ``action: stop``
      (``--non_finite_guard.action warn`` reports and goes on, ``--non_finite_guard null`` turns it off);
    - every ``fit`` writes ``last.ckpt`` (a ``ModelCheckpoint(save_last=True)`` is added when no configured one has
      ``save_last``) and resumes exactly (:class:`~lightning_tuning.callbacks.exact_resume.ExactResume`: random
      states, and a validation that was due when the checkpoint was written);
    - ``fit --ckpt_path last`` (or a checkpoint path inside a TensorBoard run) resumes in that run's version
      directory, so checkpoints are found and the TensorBoard curves continue instead of starting a new run;
      with no ``last.ckpt`` to resume it is an error, not a silent fresh start;
    - a ``--ckpt_path`` file is checked before use: a missing, empty, truncated or non-checkpoint file, or a
      checkpoint of another model class, is an error that names the file;
    - ``--lr_scheduler`` is refused where it would be ignored (no ``--optimizer``) or where a schedule callback
      drives the same optimizer;
    - a configuration error of a callback or model (raised while it is built, or when the run starts) is printed
      as one ``error:`` line naming the config key, with exit code 2, as jsonargparse prints its own errors (set
      ``JSONARGPARSE_DEBUG=1`` for the traceback);
    - ``--test_after_fit true`` runs ``trainer.test`` after ``fit`` with the best checkpoint (the last weights
      when no checkpoint was saved); it is accepted by every subcommand so that one config serves them all;
    - after each run it prints the final metrics, where the TensorBoard logs are and the ``tensorboard`` command;
      a checkpoint with a non-finite score is never named "best".

    Use :func:`main` to get the package's defaults (subclass mode for model and data, optional data, config
    overwrite).

    Args:
        *args: Positional arguments of :class:`~lightning.pytorch.cli.LightningCLI`.
        trainer_class: A :class:`TuningTrainer` subclass (it provides the extra subcommands).
        **kwargs: Keyword arguments of :class:`~lightning.pytorch.cli.LightningCLI`.

    Raises:
        TypeError: If ``trainer_class`` is not a :class:`TuningTrainer` subclass.
        ModuleNotFoundError: If the default (TensorBoard) logger is used and TensorBoard is not installed.
        SystemExit: With code 2 after printing ``error: ...`` for a configuration error.
    """

    def __init__(self, *args: Any, trainer_class: type[TuningTrainer] = TuningTrainer, **kwargs: Any) -> None:
        if not (isinstance(trainer_class, type) and issubclass(trainer_class, TuningTrainer)):
            raise TypeError(
                f"`trainer_class` must be `TuningTrainer` or a subclass of it, got {trainer_class!r}:"
                " the `lr_find` and `preview` subcommands are its methods."
            )
        self._callback_keys: dict[int, str] = {}
        self._instantiating = False
        try:
            super().__init__(*args, trainer_class=trainer_class, **kwargs)
        except (MisconfigurationException, ValueError, TypeError) as error:
            config_error = self._as_config_error(error)
            if config_error is None or os.environ.get("JSONARGPARSE_DEBUG"):
                raise
            _exit_with_error(config_error)

    @override
    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        kwargs.setdefault("dump_header", [f"lightning.pytorch=={_lightning_version()}"])
        parser = TuningArgumentParser(**kwargs)
        parser.add_argument(
            "-c", "--config", action=_config_file_action(), help="Path to a configuration file in json or yaml format."
        )
        return parser

    @staticmethod
    @override
    def subcommands() -> dict[str, set[str]]:
        subcommands = LightningCLI.subcommands()
        fit_skips = {"model", "train_dataloaders", "val_dataloaders", "datamodule"}
        return {**subcommands, "lr_find": fit_skips, "preview": fit_skips}

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After `fit`, run `test` with the best checkpoint (or the last weights if none was saved).",
        )
        # `schedule` and `init` are lists of {class_path, init_args} kept as plain data: jsonargparse would merge a
        # later config's list item-by-item into an earlier one (carrying init_args over to another class); here a
        # later config replaces the whole list, as a user expects. They are built and checked in
        # `instantiate_trainer`, before training, with errors that name the entry.
        parser.add_argument(
            "--init",
            type=list[dict[str, Any]] | None,
            default=None,
            help=(
                "Weight-init callbacks as a list of {class_path, init_args} (e.g. lightning_tuning.WeightInit),"
                " added to `trainer.callbacks` before the schedules; a later config replaces the whole list."
                " `--init.N.init_args.NAME VALUE` changes one argument; `--init.help CLASS` lists them."
            ),
        )
        parser.add_argument(
            "--dashboard",
            type=TuningDashboard | None,
            default=lazy_instance(TuningDashboard),
            help="The TensorBoard dashboard of the tuning callbacks; `null` turns it off.",
        )
        parser.add_argument(
            "--non_finite_guard",
            type=NonFiniteLossGuard | None,
            default=lazy_instance(NonFiniteLossGuard, action="stop"),
            help="Stops (or warns) at the first NaN/inf training loss; `null` turns it off.",
        )
        parser.add_argument(
            "--schedule",
            type=list[dict[str, Any]] | None,
            default=None,
            help=(
                "Learning-rate schedule callbacks as a list of {class_path, init_args} (e.g. lightning_tuning.Warmup),"
                " added to `trainer.callbacks`; a later config replaces the whole list."
                " `--schedule.N.init_args.NAME VALUE` changes one argument; `--schedule.help CLASS` lists them."
            ),
        )

    @override
    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        if isinstance(args, (dict, Namespace)):
            super().parse_arguments(parser, args)
        else:
            argv = list(sys.argv[1:] if args is None else args)
            if args is not None and len(sys.argv) > 1:
                super().parse_arguments(parser, argv)  # Lightning's warning about both
            argv = _expand_list_help(argv)
            _check_config_files(argv)
            argv = _apply_list_overrides(parser, argv)
            self.config = parser.parse_args(argv)
        self._check_ckpt_path()

    @override
    def before_instantiate_classes(self) -> None:
        logger = self._get(self.config, "trainer", default={}).get("logger")
        if logger in (None, True) and not _tensorboard_available():
            raise ModuleNotFoundError(
                "lightning_tuning logs to TensorBoard by default (`trainer.logger: true`), but neither `tensorboard`"
                " nor `tensorboardX` is installed. Install it with `pip install tensorboard`, or configure another"
                " logger explicitly with `--trainer.logger`."
            )
        self._check_lr_scheduler()

    @override
    def instantiate_classes(self) -> None:
        self._instantiating = True
        super().instantiate_classes()
        self._instantiating = False

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        init = _build_callbacks("init", self._get(self.config_init, "init"))
        schedule = _build_callbacks("schedule", self._get(self.config_init, "schedule"))
        trainer_config = self._get(self.config_init, "trainer", default={})
        callbacks = trainer_config.get("callbacks") or []
        callbacks = list(callbacks if isinstance(callbacks, list) else [callbacks])
        keys = {id(cb): f"trainer.callbacks[{i}] ({_class_path(cb)})" for i, cb in enumerate(callbacks)}
        keys.update({id(cb): f"init[{i}] ({_class_path(cb)})" for i, cb in enumerate(init)})
        keys.update({id(cb): f"schedule[{i}] ({_class_path(cb)})" for i, cb in enumerate(schedule)})
        callbacks = [*callbacks, *init, *schedule]
        for key in ("dashboard", "non_finite_guard"):
            extra = self._get(self.config_init, key)
            if extra is not None and not any(isinstance(cb, type(extra)) for cb in callbacks):
                callbacks.append(extra)
                keys[id(extra)] = f"{key} ({_class_path(extra)})"
        if self.subcommand == "fit":
            callbacks.extend(_resume_callbacks(callbacks, trainer_config.get("enable_checkpointing")))
        self._callback_keys = keys
        trainer_config["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        """Resume inside the checkpoint's TensorBoard run (see :func:`_resume_in_checkpoint_run`)."""
        _resume_in_checkpoint_run(self.trainer, self._get(self.config, "ckpt_path"))

    def after_fit(self) -> None:
        """Prints the validation metrics, optionally tests, and tells where the logs are."""
        validation = _metrics_with_prefix(self.trainer, "val_")
        if self._get(self.config, "test_after_fit"):
            self._test_after_fit()
        test = _metrics_with_prefix(self.trainer, "test_")
        _report(self.trainer, {"validation (last epoch)": validation, "test": test})

    def after_validate(self) -> None:
        """Tells where the logs are."""
        _report(self.trainer, {})

    def after_test(self) -> None:
        """Tells where the logs are."""
        _report(self.trainer, {})

    def after_lr_find(self) -> None:
        """Tells where the logs are."""
        _report(self.trainer, {})

    def after_preview(self) -> None:
        """Tells where the logs are."""
        _report(self.trainer, {})

    def _test_after_fit(self) -> None:
        if not is_overridden("test_step", self.model):
            rank_zero_warn(
                f"`--test_after_fit` is set but `{type(self.model).__name__}` defines no `test_step`; skipping test."
            )
            return
        guard = _guard(self.trainer)
        if guard is not None and guard.tripped_at is not None:
            rank_zero_warn("`--test_after_fit` is set but the training loss became non-finite; skipping test.")
            return
        best_path = _best_checkpoint(self.trainer)
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best_path or None)

    # ---- configuration checks --------------------------------------------------------------------------------

    def _check_ckpt_path(self) -> None:
        """Check a ``--ckpt_path`` file before Lightning (and LightningCLI's hyperparameter parsing) reads it."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path or ckpt_path in ("last", "best", "hpc") or str(ckpt_path).startswith("registry"):
            return
        try:
            checkpoint = load_checkpoint(ckpt_path, config.get("weights_only"))
        except CheckpointError as error:
            raise ConfigError("ckpt_path", str(error)) from None
        model = config.get("model")
        class_path = model.get("class_path") if isinstance(model, Namespace | dict) else None
        if class_path:
            try:
                check_model_class(ckpt_path, checkpoint, class_path)
            except CheckpointError as error:
                raise ConfigError("ckpt_path", str(error)) from None

    def _check_lr_scheduler(self) -> None:
        scheduler = self._get(self.config, "lr_scheduler")
        if scheduler is None:
            return
        name = scheduler.get("class_path", scheduler) if isinstance(scheduler, Namespace | dict) else scheduler
        if self._get(self.config, "optimizer") is None:
            raise ConfigError(
                "lr_scheduler",
                f"`--lr_scheduler {name}` is given without `--optimizer`, so it would be ignored: LightningCLI only "
                "attaches a scheduler to an optimizer it builds itself (the model's `configure_optimizers` is used "
                "otherwise). Add `--optimizer` (e.g. a file from configs/optimizers/), or use a schedule callback "
                "(`--schedule`, e.g. configs/schedules/).",
            )
        for key in ("schedule", "trainer.callbacks"):
            specs = self._get(self.config, "schedule") if key == "schedule" else self._trainer_callback_specs()
            for index, spec in enumerate(specs or []):
                if _is_schedule_on_first_optimizer(spec):
                    raise ConfigError(
                        "lr_scheduler",
                        f"`--lr_scheduler {name}` and `{key}[{index}]` ({_spec_class_path(spec)}) would both set the "
                        "learning rate of the optimizer. Use one: remove `--lr_scheduler`, or the schedule callbacks "
                        "(`--schedule null`).",
                    )

    def _trainer_callback_specs(self) -> list[Any]:
        callbacks = self._get(self.config, "trainer", default={}).get("callbacks") or []
        return list(callbacks) if isinstance(callbacks, list) else [callbacks]

    def _as_config_error(self, error: BaseException) -> ConfigError | None:
        """The configuration error behind ``error``, with its config key; ``None`` for anything else (a bug)."""
        if isinstance(error, ConfigError):
            return error
        root = error
        for cause in _exception_chain(error):
            if isinstance(cause, (MisconfigurationException, ValueError)) and not isinstance(cause, ArgumentError):
                root = cause
        key, owner = self._blame(root)
        from_package = owner is not None and type(owner).__module__.startswith("lightning_tuning")
        if isinstance(root, MisconfigurationException):
            pass
        elif isinstance(root, (ValueError, TypeError)):
            if not (from_package or (self._instantiating and owner is not None)):
                return None
        else:
            return None
        message = " ".join(line.strip() for line in str(root).strip().splitlines() if line.strip())
        return ConfigError(key, message)

    def _blame(self, error: BaseException) -> tuple[str | None, object | None]:
        """The config key and the object whose method raised ``error`` (the innermost configured object)."""
        key, owner = None, None
        for frame_self in _frame_selves(error):
            if id(frame_self) in self._callback_keys:
                key, owner = self._callback_keys[id(frame_self)], frame_self
            elif self._instantiating:
                found = self._key_of_class(type(frame_self))
                if found is not None:
                    key, owner = found, frame_self
        return key, owner

    def _key_of_class(self, cls: type) -> str | None:
        """The config key whose ``class_path`` is ``cls`` (while the classes are being instantiated)."""
        candidates: list[tuple[str, Any]] = [
            ("model", self._get(self.config, "model")),
            ("data", self._get(self.config, "data")),
        ]
        candidates += [(f"trainer.callbacks[{i}]", spec) for i, spec in enumerate(self._trainer_callback_specs())]
        candidates += [
            ("optimizer", self._get(self.config, "optimizer")),
            ("lr_scheduler", self._get(self.config, "lr_scheduler")),
        ]
        for key, spec in candidates:
            path = _spec_class_path(spec)
            if path and _import_class(path) is cls:
                return f"{key} ({path})"
        return None


# ---- building the callbacks ----------------------------------------------------------------------------------

_SPEC_KEYS = ("class_path", "init_args", "dict_kwargs")


def _build_callbacks(key: str, specs: list[dict[str, Any]] | None) -> list[Callback]:
    """Instantiate the ``{class_path, init_args}`` entries of ``key``; an error names the entry and the problem."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--callback", type=Callback)
    callbacks = []
    for index, spec in enumerate(specs or []):
        name = spec.get("class_path", "?") if isinstance(spec, dict) else repr(spec)
        entry = f"{key}[{index}] ({name})"
        layout = (
            f"Each entry of `{key}` is "
            "{class_path: <Callback class, e.g. lightning_tuning.Warmup>, init_args: {<its arguments>}}."
        )
        if not isinstance(spec, dict) or "class_path" not in spec:
            raise ConfigError(f"{key}[{index}]", f"{spec!r} is not a callback entry. {layout}")
        unknown = [field for field in spec if field not in _SPEC_KEYS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], _SPEC_KEYS, n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            raise ConfigError(entry, f"unknown key `{unknown[0]}`{hint} {layout}")
        cls = _import_class(name)
        if cls is None:
            raise ConfigError(entry, _unknown_class_message(name))
        if not (isinstance(cls, type) and issubclass(cls, Callback)):
            hint = _pytorch_lightning_hint(name) or "it is not a lightning.pytorch.Callback subclass."
            raise ConfigError(entry, hint)
        try:
            config = parser.parse_object({"callback": spec})
            callbacks.append(parser.instantiate_classes(config).callback)
        except (ArgumentError, MisconfigurationException, TypeError, ValueError) as error:
            detail = _argument_error_detail(error)
            unknown_arg = re.search(r"Option '(?:init_args\.)?([^']+)' is not accepted", detail)
            if unknown_arg is not None:
                detail = _unknown_argument_message(cls, unknown_arg.group(1))
            raise ConfigError(entry, detail) from None
    return callbacks


def _argument_error_detail(error: BaseException) -> str:
    """The innermost message of a jsonargparse error chain, prefixed with the innermost ``init_args`` key."""
    key = None
    message = str(error)
    for cause in _exception_chain(error):
        found = re.match(r'\s*Parser key "([^"]+)"', str(cause))
        if found and found.group(1) != "callback":
            key = found.group(1)
        message = str(cause)
    text = " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    return f"init_args.{key}: {text}" if key and not text.startswith("`") else text


def _unknown_argument_message(cls: type, name: str) -> str:
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    close = difflib.get_close_matches(name, accepted, n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    return f"`init_args.{name}` is not an argument of {cls.__name__}.{hint} Its arguments: {', '.join(accepted)}."


def _unknown_class_message(name: str) -> str:
    import lightning_tuning

    exported = [f"lightning_tuning.{export}" for export in lightning_tuning._EXPORTS]
    close = difflib.get_close_matches(name, exported, n=1)
    hint = f" Did you mean {close[0]}?" if close else " Give the full import path of a Callback class."
    return f"class_path {name!r} cannot be imported.{hint}"


def _resume_callbacks(callbacks: list[Callback], enable_checkpointing: bool | None) -> list[Callback]:
    """``ExactResume``, and a ``ModelCheckpoint(save_last=True)`` when no configured one writes ``last.ckpt``."""
    added: list[Callback] = []
    if not any(isinstance(cb, ExactResume) for cb in callbacks):
        added.append(ExactResume())
    checkpoints = [cb for cb in callbacks if isinstance(cb, ModelCheckpoint)]
    if enable_checkpointing is not False and not any(cb.save_last for cb in checkpoints):
        # with none configured: Lightning's default checkpoint plus last.ckpt; else one that only writes last.ckpt
        added.append(
            ModelCheckpoint(save_last=True) if not checkpoints else ModelCheckpoint(save_last=True, save_top_k=0)
        )
    return added


# ---- command-line forms for the `schedule` and `init` lists ---------------------------------------------------

_LIST_KEYS = ("schedule", "init")
_OVERRIDE = re.compile(r"^--(schedule|init)\.(\d+)\.(?:init_args\.)?([A-Za-z_][\w.]*)(?:=(.*))?$", re.DOTALL)


def _expand_list_help(argv: list[str]) -> list[str]:
    """``--schedule.help CLASS`` (or ``--init.help CLASS``): print the class's arguments and exit."""
    for position, arg in enumerate(argv):
        head, _, inline = arg.partition("=")
        if head not in ("--schedule.help", "--init.help"):
            continue
        value = inline or (argv[position + 1] if position + 1 < len(argv) else "")
        list_key = head[2:].split(".")[0]
        if not value:
            _exit_with_error(ConfigError(head[2:], f"give a class, e.g. `{head} lightning_tuning.Warmup`."))
        cls = _import_class(value if "." in value else f"lightning_tuning.{value}")
        if not (isinstance(cls, type) and issubclass(cls, Callback)):
            hint = _pytorch_lightning_hint(value)
            _exit_with_error(ConfigError(head[2:], hint or f"{value!r} is not an importable Callback class."))
        parser = ArgumentParser(prog=f"--{list_key}.N.init_args", description=None)
        parser.add_class_arguments(cls, fail_untyped=False)
        print(
            f"Arguments of {value} for an entry of `{list_key}:` "
            f"({{class_path: {value}, init_args: {{NAME: VALUE}}}}), or on the command line "
            f"`--{list_key}.N.init_args.NAME VALUE` for entry N of the configured list:"
        )
        parser.print_help()
        raise SystemExit(0)
    return argv


def _apply_list_overrides(parser: LightningArgumentParser, argv: list[str]) -> list[str]:
    """Turn ``--schedule.N.init_args.NAME VALUE`` into a whole ``--schedule=[...]`` with that one value changed.

    The list is read from everything else on the command line (configs, ``--schedule``), so the change layers on top
    of it and ends up in the saved ``config.yaml`` like any other argument.
    """
    overrides: list[tuple[str, int, str, Any]] = []
    rest: list[str] = []
    position = 0
    while position < len(argv):
        arg = argv[position]
        match = _OVERRIDE.match(arg)
        if match is None:
            rest.append(arg)
            position += 1
            continue
        list_key, index, name, inline = match.group(1), int(match.group(2)), match.group(3), match.group(4)
        if inline is None:
            if position + 1 >= len(argv):
                _exit_with_error(ConfigError(arg[2:], "expects a value."))
            inline = argv[position + 1]
            position += 1
        position += 1
        overrides.append((list_key, index, name, yaml.safe_load(inline) if inline != "" else ""))
    if not overrides:
        return argv
    base = _parse_quietly(parser, rest)
    subcommand = base.get("subcommand") if base is not None else None
    if base is None or not subcommand:
        return rest
    lists: dict[str, list[dict[str, Any]]] = {}
    for list_key, index, name, value in overrides:
        entries = lists.setdefault(list_key, _plain(base[subcommand].get(list_key)) or [])
        option = f"--{list_key}.{index}.init_args.{name}"
        if index >= len(entries):
            _exit_with_error(
                ConfigError(
                    option,
                    f"`{list_key}` has {len(entries)} entries (0 to {len(entries) - 1}); there is no entry {index}.",
                )
            )
        entry = entries[index]
        if name == "class_path":
            entry["class_path"] = value
            continue
        target = entry.setdefault("init_args", {}) or {}
        entry["init_args"] = target
        *parents, leaf = name.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return [
        *rest,
        *(
            f"--{list_key}={yaml.safe_dump(entries, default_flow_style=True, width=10**9).strip()}"
            for list_key, entries in lists.items()
        ),
    ]


def _parse_quietly(parser: LightningArgumentParser, argv: list[str]) -> Namespace | None:
    """Parse without ``--print_config`` or help (which print and exit); parse errors exit as usual."""
    skip = {"--print_config", "-h", "--help"}
    kept = [arg for arg in argv if arg.split("=")[0] not in skip]
    return parser.parse_args(kept)


def _plain(value: Any) -> Any:
    if isinstance(value, Namespace):
        return _plain(value.as_dict())
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _check_config_files(argv: list[str]) -> None:
    """An empty, unreadable or non-mapping ``--config`` file is an error that names the file."""
    for position, arg in enumerate(argv):
        head, sep, inline = arg.partition("=")
        if head not in ("--config", "-c"):
            continue
        path = inline if sep else (argv[position + 1] if position + 1 < len(argv) else None)
        if path is None or "\n" in path or path.lstrip().startswith(("{", "[")):
            continue  # a config given inline as text; jsonargparse reports its problems
        file = Path(path)
        if not file.is_file():
            _exit_with_error(ConfigError(None, f"config file {path!r} does not exist."))
        try:
            content = yaml.safe_load(file.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            detail = " ".join(str(error).split())
            _exit_with_error(ConfigError(None, f"config file {path!r} is not valid YAML: {detail}"))
        if content is None:
            _exit_with_error(
                ConfigError(
                    None,
                    f"config file {path!r} is empty; a config file is a YAML mapping"
                    " such as `trainer: {max_epochs: 3}`.",
                )
            )
        if not isinstance(content, dict):
            kind = "a list" if isinstance(content, list) else f"a {type(content).__name__} ({str(content)[:40]!r})"
            _exit_with_error(
                ConfigError(
                    None,
                    f"config file {path!r} holds {kind}, not a mapping of keys"
                    " (`trainer:`, `model:`, `schedule:` ...).",
                )
            )


# ---- resuming ------------------------------------------------------------------------------------------------


def _resume_in_checkpoint_run(trainer: Trainer, ckpt_path: str | None) -> None:
    """Point an unversioned TensorBoardLogger at the run directory of the checkpoint being resumed.

    A new run directory (``version_N+1``) would hide ``last.ckpt`` from ``--ckpt_path last`` and start the
    TensorBoard curves over; resuming in the checkpoint's own directory continues them. ``--ckpt_path last`` with
    no ``last.ckpt`` to resume is an error (Lightning would warn and start from scratch).
    """
    loggers = _tensorboard_loggers(trainer)
    if ckpt_path == "last":
        _check_last_exists(trainer, loggers)
    if not ckpt_path or not loggers or loggers[0]._version is not None:
        return
    logger = loggers[0]
    run_root = Path(logger.root_dir)
    if ckpt_path == "last":
        runs = sorted(_last_checkpoint_runs(run_root), key=lambda run: run.stat().st_mtime)
        if not runs:
            return
        logger._version = runs[-1].name
    else:
        path = Path(ckpt_path).resolve()
        if path.parent.name == "checkpoints" and path.parent.parent.parent == run_root.resolve():
            logger._version = path.parent.parent.name
    rank_zero_info(f"Resuming in {_display_path(logger.log_dir)}: checkpoints and TensorBoard curves continue there.")


def _last_checkpoint_runs(run_root: Path) -> list[Path]:
    return [path.parent.parent for path in run_root.glob("*/checkpoints/last*.ckpt")]


def _check_last_exists(trainer: Trainer, loggers: list[TensorBoardLogger]) -> None:
    places: list[Path] = [Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]
    if loggers and loggers[0]._version is None:
        if _last_checkpoint_runs(Path(loggers[0].root_dir)):
            return
        places.append(Path(loggers[0].root_dir) / "*" / "checkpoints")
    elif trainer.loggers:
        places.append(Path(trainer.loggers[0].log_dir or trainer.default_root_dir) / "checkpoints")
    else:
        places.append(Path(trainer.default_root_dir) / "checkpoints")
    if any(place.is_dir() and any(place.glob("last*.ckpt")) for place in places if "*" not in str(place)):
        return
    looked = ", ".join(repr(_display_path(str(place))) for place in places)
    raise ConfigError(
        "ckpt_path",
        f"`--ckpt_path last` found no last.ckpt to resume (looked in {looked}). Run `fit` without `--ckpt_path` to "
        "start a new run, or pass the path of a checkpoint file; check that `--trainer.default_root_dir` is the one "
        "of the run to resume.",
    )


# ---- errors ---------------------------------------------------------------------------------------------------


def _exit_with_error(error: ConfigError) -> NoReturn:
    """Print ``error: <key>: <message>`` on stderr and exit with code 2, as jsonargparse does for its errors."""
    text = " ".join(str(error).split("\n"))
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()
    raise SystemExit(2)


def _exception_chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _frame_selves(error: BaseException) -> Iterator[object]:
    """The ``self`` of each frame of the traceback, outermost first."""
    traceback = error.__traceback__
    while traceback is not None:
        frame_self = traceback.tb_frame.f_locals.get("self")
        if frame_self is not None and not isinstance(frame_self, (LightningCLI, Trainer, types.ModuleType)):
            yield frame_self
        traceback = traceback.tb_next


def _import_class(path: str) -> Any:
    module_name, _, name = path.rpartition(".")
    if not module_name:
        return None
    try:
        return getattr(importlib.import_module(module_name), name)
    except Exception:  # an unimportable path is reported by jsonargparse
        return None


def _spec_class_path(spec: Any) -> str | None:
    if isinstance(spec, Namespace | dict):
        path = spec.get("class_path")
        return path if isinstance(path, str) else None
    if isinstance(spec, str):
        return spec
    return None


def _class_path(obj: object) -> str:
    cls = type(obj)
    if cls.__module__.startswith("lightning_tuning.callbacks.") and hasattr(
        importlib.import_module("lightning_tuning"), cls.__name__
    ):
        return f"lightning_tuning.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_schedule_on_first_optimizer(spec: Any) -> bool:
    path = _spec_class_path(spec)
    if not path:
        return False
    from lightning_tuning.callbacks._schedule import LRScheduleCallback

    cls = _import_class(path if "." in path else f"lightning_tuning.{path}")
    if not (isinstance(cls, type) and issubclass(cls, LRScheduleCallback)):
        return False
    init_args = spec.get("init_args") if isinstance(spec, Namespace | dict) else None
    optimizers = init_args.get("optimizers") if isinstance(init_args, Namespace | dict) else None
    return optimizers is None or 0 in list(optimizers)


def _pytorch_lightning_hint(text: str) -> str | None:
    """A hint for class paths in ``text`` whose class is written against ``pytorch_lightning``."""
    for path in re.findall(r"[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)+", text):
        cls = _import_class(path)
        if not isinstance(cls, type):
            continue
        legacy = [base for base in cls.__mro__ if base.__module__.split(".")[0] == "pytorch_lightning"]
        if legacy:
            base = legacy[-1] if len(legacy) > 1 else legacy[0]
            public = next(
                (b for b in legacy if b.__name__ in ("LightningModule", "LightningDataModule", "Callback")), base
            )
            return (
                f"{path} subclasses `pytorch_lightning.{public.__name__}` (the old package name); this command line "
                f"runs on `lightning.pytorch`. In its module write `import lightning.pytorch as pl` (or "
                f"`from lightning.pytorch import {public.__name__}`) instead of `pytorch_lightning`."
            )
    return None


def _config_file_action() -> Any:
    from jsonargparse import ActionConfigFile

    return ActionConfigFile


def _lightning_version() -> str:
    import lightning.pytorch as pl

    return pl.__version__


# ---- the end-of-run summary ------------------------------------------------------------------------------------


def _metrics_with_prefix(trainer: Trainer, prefix: str) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in sorted(trainer.callback_metrics.items())
        if name.startswith(prefix) and value.numel() == 1
    }


def _tensorboard_loggers(trainer: Trainer) -> list[TensorBoardLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def _display_path(path: str) -> str:
    # relative paths are shorter to read and to paste, but only when they stay below the working directory
    if "://" in path:
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _guard(trainer: Trainer) -> NonFiniteLossGuard | None:
    return next((cb for cb in trainer.callbacks if isinstance(cb, NonFiniteLossGuard)), None)  # type: ignore[attr-defined]


def _best_checkpoint(trainer: Trainer) -> str:
    """The best checkpoint of the first ``ModelCheckpoint`` that has one with a finite score ("" if none)."""
    for checkpoint in trainer.checkpoint_callbacks:
        path = getattr(checkpoint, "best_model_path", "")
        score = getattr(checkpoint, "best_model_score", None)
        if path and (score is None or bool(torch.isfinite(torch.as_tensor(score)))):
            return str(path)
    return ""


@rank_zero_only
def _report(trainer: Trainer, sections: dict[str, dict[str, float]]) -> None:
    lines = []
    for title, metrics in sections.items():
        if metrics:
            lines.append(f"Final {title}: " + ", ".join(f"{name}={value:.4f}" for name, value in metrics.items()))
    guard = _guard(trainer)
    if guard is not None and guard.tripped_at is not None:
        stopped = "training stopped" if guard.action == "stop" else "training went on"
        lines.append(
            f"Non-finite training loss at optimizer step {guard.tripped_at}: {stopped} (see the warning above)."
        )
    for checkpoint in trainer.checkpoint_callbacks:
        path = getattr(checkpoint, "best_model_path", "")
        if not path or getattr(checkpoint, "monitor", None) is None:
            continue
        best = getattr(checkpoint, "best_model_score", None)
        if best is not None and not bool(torch.isfinite(torch.as_tensor(best))):
            lines.append(
                f"No checkpoint with a finite {checkpoint.monitor} was saved ({checkpoint.monitor}={float(best)})."
            )
        else:
            score = "" if best is None else f" ({checkpoint.monitor}={float(best):.4f})"
            lines.append(f"Best checkpoint{score}: {_display_path(path)}")
        break
    for logger in _tensorboard_loggers(trainer):
        lines.append(f"TensorBoard logs: {_display_path(logger.log_dir)}")
        lines.append(f"View them with:   tensorboard --logdir {_display_path(logger.root_dir)}")
    if lines:
        print("\n".join(lines))


def main(args: ArgsType = None) -> TuningCLI | None:
    """Runs the ``lightning_tuning`` command line (``python -m lightning_tuning`` or ``lightning-tuning``).

    Model and data are given by class path (subclass mode); data is optional because a LightningModule may
    bring its own dataloaders. A rerun overwrites ``config.yaml`` in an existing log directory.

    Args:
        args: Arguments as on the command line (list, dict or Namespace); ``None`` reads ``sys.argv``.

    Returns:
        With ``args``, the CLI after running the subcommand, with ``trainer``, ``model`` and ``datamodule``
        attributes. Without (the console script's ``sys.exit(main())``), ``None``, so a successful run exits 0;
        a failure raises, so the process exits non-zero.

    Raises:
        SystemExit: With code 2 after an ``error:`` line for a configuration error.

    Example::

        main(["fit", "--config", "configs/quickstart.yaml", "--trainer.max_epochs", "1"])
    """
    cli = TuningCLI(
        LightningModule,
        # `None` (instead of LightningDataModule) is how LightningCLI makes `--data` optional in subclass mode
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )
    return None if args is None else cli
