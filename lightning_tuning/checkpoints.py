"""Checkpoint files checked before use: a missing, empty, truncated, foreign or wrong-model file is named and explained.

Every ``torch.load`` of a checkpoint in this package goes through :func:`load_checkpoint`; the command line checks a
``--ckpt_path`` with it before Lightning reads the file, so a bad file is an ``error:`` line naming the file and what is
wrong with it instead of a traceback from deep inside ``torch.load``.
"""

from __future__ import annotations

import importlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL = b"\x80"


class CheckpointError(MisconfigurationException):
    """A checkpoint file that cannot be used, with the file's name and what is wrong with it."""


def load_checkpoint(path: str | os.PathLike[str], weights_only: bool | None = None) -> dict[str, Any]:
    """Load a Lightning checkpoint onto the CPU, or say plainly why the file is not one.

    Args:
        path: The checkpoint file.
        weights_only: ``torch.load(weights_only=...)``; ``None`` means ``True`` (tensors and plain values only).

    Returns:
        The checkpoint's dictionary; it has a ``"state_dict"``.

    Raises:
        CheckpointError: If the file is missing, empty, not a PyTorch file (e.g. text), truncated or corrupt, holds
            objects ``weights_only=True`` refuses, or is not a Lightning checkpoint.

    Example::

        checkpoint = load_checkpoint("lightning_logs/version_0/checkpoints/last.ckpt")
        model.load_state_dict(checkpoint["state_dict"])
    """
    name = os.fspath(path)
    check_checkpoint_file(name)
    try:
        checkpoint = torch.load(name, map_location="cpu", weights_only=True if weights_only is None else weights_only)
    except pickle.UnpicklingError as error:
        if weights_only is False:
            raise CheckpointError(f"Checkpoint {name!r} cannot be read: {_first_line(error)}") from None
        raise CheckpointError(
            f"Checkpoint {name!r} holds Python objects that a weights-only load refuses ({_first_line(error)}). "
            "If you trust where the file comes from, load it with `weights_only=False` (`--weights_only false`)."
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise CheckpointError(
            f"Checkpoint {name!r} is truncated or corrupt ({_first_line(error)}); it was probably still being written "
            "when the run stopped. Use an earlier checkpoint of the run."
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{name!r} is a PyTorch file but not a Lightning checkpoint: it has no 'state_dict' (found {found}). "
            "Pass a file written by `Trainer.save_checkpoint` or `ModelCheckpoint`."
        )
    return checkpoint


def check_checkpoint_file(path: str) -> None:
    """Cheap checks of a checkpoint path without loading it: exists, is a file, not empty, a PyTorch file, complete.

    Raises:
        CheckpointError: Naming the file and what is wrong with it.
    """
    file = Path(path)
    if not file.exists():
        raise CheckpointError(f"Checkpoint {path!r} does not exist (looked in {str(file.resolve().parent)!r}).")
    if not file.is_file():
        raise CheckpointError(f"Checkpoint {path!r} is a directory, not a checkpoint file.")
    size = file.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"Checkpoint {path!r} is empty (0 bytes): the run was probably killed while writing it. "
            "Use an earlier checkpoint of the run."
        )
    with file.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(file):
            raise CheckpointError(
                f"Checkpoint {path!r} is truncated or corrupt ({size} bytes, its end is missing): it was probably "
                "still being written when the run stopped. Use an earlier checkpoint of the run."
            )
        return
    if head.startswith(_PICKLE_PROTOCOL):
        return  # the legacy (non-zip) torch format
    lines = head[:40].decode("utf-8", errors="replace").splitlines()
    preview = lines[0] if lines else ""
    raise CheckpointError(
        f"{path!r} is not a PyTorch checkpoint: it starts with {preview!r}"
        f"{' (a text file?)' if _is_text(head) else ''}. Pass a .ckpt file written by Lightning."
    )


def checkpoint_model_class(checkpoint: dict[str, Any]) -> str | None:
    """The class path of the model that wrote the checkpoint, when the checkpoint says (LightningCLI runs do)."""
    hparams = checkpoint.get("hyper_parameters")
    if isinstance(hparams, dict) and isinstance(hparams.get("_class_path"), str):
        return str(hparams["_class_path"])
    return None


def check_model_class(path: str, checkpoint: dict[str, Any], model_class: type | str | None) -> None:
    """Refuse a checkpoint written by another model class than the one configured, naming both.

    Raises:
        CheckpointError: If the checkpoint names its model class and that class is not ``model_class`` (or a
            subclass of it).
    """
    saved = checkpoint_model_class(checkpoint)
    if saved is None or model_class is None:
        return
    configured = _resolve(model_class)
    saved_class = _resolve(saved)
    if isinstance(configured, type) and isinstance(saved_class, type):
        if issubclass(saved_class, configured):
            return
        configured_name, saved_name = _qualname(configured), _qualname(saved_class)
    else:
        configured_name = model_class if isinstance(model_class, str) else _qualname(model_class)
        if saved == configured_name:
            return
        saved_name = saved
    raise CheckpointError(
        f"Checkpoint {path!r} was written by a {saved_name} model, but the configured model is {configured_name}. "
        f"Pass a checkpoint of {configured_name}, or run with `--model {saved_name}` (and its data)."
    )


def _resolve(class_path: type | str) -> Any:
    if isinstance(class_path, type):
        return class_path
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return class_path


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
