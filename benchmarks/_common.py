"""Helpers shared by the benchmark scripts: machine/version header, markdown tables, quiet Lightning, timers."""

from __future__ import annotations

import logging
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (or ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nproc() -> int:
    """CPUs this process may run on (what ``nproc`` prints)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def machine_header() -> str:
    """One markdown paragraph naming the machine and the versions the numbers were measured with."""
    import lightning
    import torch

    return (
        f"Machine: `nproc` = {nproc()}, CPU: {cpu_model()}, no GPU used; "
        f"Python {platform.python_version()}, torch {torch.__version__} "
        f"(intra-op threads {torch.get_num_threads()}), lightning {lightning.__version__}."
    )


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(values: Sequence[float], fmt: str = ".3f") -> str:
    """``mean ± std`` (sample std; 0 for a single value)."""
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{fmt}} ± {std:{fmt}}"


def write_results(name: str, text: str) -> Path:
    """Print ``text`` and write it to ``benchmarks/results/<name>``."""
    print(text)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    path.write_text(text)
    print(f"[written to {path}]", file=sys.stderr)
    return path


def quiet_trainer(**settings: Any) -> Any:
    """A CPU ``Trainer`` without progress bar, model summary, checkpoints or sanity check; ``settings`` override."""
    from lightning.pytorch import Trainer

    defaults = {"enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False,
                "num_sanity_val_steps": 0, "accelerator": "cpu", "devices": 1}  # fmt: skip
    return Trainer(**{**defaults, **settings})


def quiet() -> None:
    """Silence Lightning's info banners and the warnings every short benchmark run triggers."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_tuning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")


def make_step_timer(skip: int = 10) -> Any:
    """A callback that records ``perf_counter`` at every ``on_train_batch_start``.

    Put it FIRST in ``callbacks``: the time between two consecutive batch starts is one whole iteration of the
    training loop (data fetch, forward/backward, optimizer step with its hooks, every callback's batch hooks,
    logging, and validation/epoch ends where they fall). The first ``skip`` batches are dropped (first-call costs).
    """
    from lightning.pytorch import Callback

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.starts: list[float] = []
            self.epochs: list[int] = []
            self.fit_start = 0.0
            self.fit_end = 0.0

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            self.fit_start = time.perf_counter()

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self.starts.append(time.perf_counter())
            self.epochs.append(trainer.current_epoch)

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            self.fit_end = time.perf_counter()

        def per_step(self) -> float:
            """Seconds per training-loop iteration, all included, after the first ``skip`` batches."""
            starts = self.starts[skip:]
            return (starts[-1] - starts[0]) / (len(starts) - 1)

        def intra_epoch_median(self) -> float:
            """Median seconds between two batch starts of the same epoch (no validation/epoch-end in it)."""
            gaps = [
                b - a
                for (a, b, ea, eb) in zip(self.starts, self.starts[1:], self.epochs, self.epochs[1:], strict=False)
                if ea == eb
            ][skip:]
            return statistics.median(gaps)

    return StepTimer()
