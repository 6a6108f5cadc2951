"""Notice a NaN or infinite training loss without making an accelerator wait for the loss on every step."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


class NonFiniteLossWatch:
    """Tracks whether the training loss stayed finite, and says when it did not.

    On the CPU the loss is checked on the step it is produced. On an accelerator, reading a value back makes the host
    wait for the device, so the check is folded into a flag that stays on the device and is read only at ``flush``
    (the caller flushes on the steps Lightning logs, which wait for the device anyway, and at the end of each epoch).

    Args:
        defer: read the flag only on ``flush``; ``None`` decides from the device of each loss (deferred unless CPU).
    """

    def __init__(self, defer: bool | None = None) -> None:
        self.defer = defer
        self._finite: torch.Tensor | None = None
        self._since: int = 0

    def update(self, loss: torch.Tensor | Sequence[torch.Tensor], step: int) -> str | None:
        """Take the loss(es) of optimizer step ``step``; returns the problem when it is known now, else ``None``."""
        losses = [loss] if isinstance(loss, torch.Tensor) else list(loss)
        if not losses:
            return None
        defer = self.defer if self.defer is not None else losses[0].device.type != "cpu"
        if not defer:
            for value_tensor in losses:
                # one .item() costs ~2 us right after a backward pass, isfinite().all() and bool() ~40 us
                single = value_tensor.numel() == 1
                value = value_tensor.item() if single else float(value_tensor.detach().float().sum())
                if not math.isfinite(value):
                    return f"The training loss is {value} at optimizer step {step}"
            return None
        finite = torch.stack([torch.isfinite(value.detach()).all() for value in losses]).all()
        if self._finite is None:
            self._finite, self._since = finite, step
        else:
            self._finite = self._finite & finite
        return None

    @property
    def pending(self) -> bool:
        """Whether a deferred flag is waiting to be read."""
        return self._finite is not None

    def flush(self, step: int) -> str | None:
        """Read the deferred flag (a device sync); returns the problem seen since the last flush, if any."""
        if self._finite is None:
            return None
        finite, since = bool(self._finite), self._since
        self._finite = None
        if finite:
            return None
        if since == step:
            return f"The training loss became NaN or infinite at optimizer step {step}"
        return f"The training loss became NaN or infinite between optimizer steps {since} and {step}"
