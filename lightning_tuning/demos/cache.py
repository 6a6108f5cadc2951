"""Where the demos keep generated data sets between runs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

CACHE_DIR_ENV_VAR = "LIGHTNING_TUNING_CACHE"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Returns the demo data cache directory.

    Args:
        cache_dir: An explicit directory; wins over everything else.

    Returns:
        ``cache_dir`` if given, else ``$LIGHTNING_TUNING_CACHE`` if set, else ``$XDG_CACHE_HOME/lightning_tuning``
        (``~/.cache/lightning_tuning`` when ``XDG_CACHE_HOME`` is unset).
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from_env = os.environ.get(CACHE_DIR_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "lightning_tuning"


def cache_key(params: dict[str, Any]) -> str:
    """A short, stable digest of the parameters a cached file was generated from."""
    encoded = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def save_arrays_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes ``arrays`` to ``path`` (``.npz``) so that readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # several processes (DDP ranks on several nodes, parallel test runs) may generate the same file at once
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
    # numpy's stubs match a ``**dict`` against savez's keyword-only ``allow_pickle: bool`` too
    np.savez(partial, **arrays)  # type: ignore[arg-type]
    os.replace(partial, path)
