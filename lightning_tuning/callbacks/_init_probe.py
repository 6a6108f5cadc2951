"""The side-effect-free probe the init callbacks look at the model with: one traced ``forward`` on a batch.

The probe calls the module's ``forward`` (``pl_module(...)``), not ``training_step``: ``training_step`` may take
``(batch)`` or ``(batch, batch_idx)``, may run ``manual_backward`` and ``opt.step()`` under manual optimization, and
logs. What ``forward`` is given is found by trying, in order, the obvious ways a batch feeds it (see
:func:`forward_candidates`), then the module's ``example_input_array``; the first call that runs wins. Only when
``forward`` leaves layers out (an autoencoder whose ``forward`` is the encoder, a loss head) *and* the module uses
automatic optimization is ``training_step`` traced as well, for those layers only, with ``self.log`` muted and
``manual_backward`` refused; it never steps an optimizer (Lightning does that outside ``training_step``).

Hygiene: the global RNG states (torch, numpy, random), the train/eval flag of every submodule and every buffer
(BatchNorm running statistics) are put back afterwards; the model is traced in train mode (so fused inference kernels
such as ``nn.TransformerEncoderLayer``'s fast path are not taken) and no ``.grad`` is ever written.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.trainer.connectors.data_connector import _request_dataloader
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.seed import isolate_rng
from torch import nn

from lightning_tuning._compat import train_data_source
from lightning_tuning.init.gain import Activation
from lightning_tuning.init.rules import initialisable_modules
from lightning_tuning.init.tracing import TraceResult, trace_activations

#: Keys of a dict batch that commonly hold the model input, tried in this order.
INPUT_KEYS = ("x", "input", "inputs", "input_ids", "image", "images", "img", "data", "features", "src", "tokens")


def first_train_batch(
    trainer: pl.Trainer, pl_module: pl.LightningModule, device: torch.device | None = None
) -> Any | None:
    """The first batch of a fresh copy of the training dataloader, on the module's device; ``None`` if there is none.

    A new loader is requested from the same source Lightning uses (``fit(train_dataloaders=...)``, the DataModule or the
    LightningModule), so the loop's own iterator and sampler state are untouched. RNG draws are isolated.

    Args:
        device: Where to put the batch; ``None``: the strategy's root device (as in training).
    """
    source = train_data_source(trainer)
    if source.instance is None or not source.is_defined():
        return None
    with isolate_rng():
        loaders = _request_dataloader(source)
        if isinstance(loaders, (Mapping, Sequence)) and not isinstance(loaders, torch.utils.data.Dataset):
            iterator = iter(CombinedLoader(loaders, "max_size_cycle"))
            try:
                batch = next(iterator)[0]
            except StopIteration:
                return None
        else:
            try:
                batch = next(iter(loaders))
            except StopIteration:
                return None
    if device is not None:
        return move_data_to_device(batch, device)
    return trainer.strategy.batch_to_device(batch)


def require_probe_input(
    trainer: pl.Trainer, pl_module: pl.LightningModule, who: str, need: str, device: torch.device | None = None
) -> tuple[Any | None, Any | None]:
    """A training batch and the module's ``example_input_array`` (either may be ``None``, not both).

    Raises:
        MisconfigurationException: When there is neither, saying what to give.
    """
    batch = first_train_batch(trainer, pl_module, device)
    example = noise_if_constant(pl_module.example_input_array)
    if batch is None and example is None:
        raise MisconfigurationException(
            f"{who} needs {need}, but `trainer.fit` got no training dataloader (no `train_dataloaders`, no"
            " DataModule `train_dataloader()`, no LightningModule `train_dataloader()`) and the module has no"
            " `example_input_array`. Pass a training dataloader, set `self.example_input_array`, or drop this option."
        )
    if example is not None:
        example = (
            move_data_to_device(example, device) if device is not None else trainer.strategy.batch_to_device(example)
        )
    return batch, example


def noise_if_constant(example: Any) -> Any:
    """A constant floating ``example_input_array`` (a GAN's ``zeros(2, latent_dim)``) as N(0, 1) noise of its shape
    (seed 0): statistics measured on a constant input are all zero, and LSUV divides by them."""
    constant = (
        isinstance(example, torch.Tensor)
        and example.is_floating_point()
        and example.numel() > 1
        and float(example.float().std()) == 0.0
    )
    if constant:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(example.shape, generator=generator, dtype=example.dtype).to(example.device)
    return example


def _call(pl_module: nn.Module, value: Any, how: str) -> Callable[[], Any]:
    if how == "*":
        return lambda: pl_module(*value)
    if how == "**":
        return lambda: pl_module(**value)
    return lambda: pl_module(value)


def _required_positional(pl_module: nn.Module) -> int:
    try:
        parameters = inspect.signature(pl_module.forward).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in parameters if p.kind in kinds and p.default is inspect.Parameter.empty)


def forward_candidates(
    pl_module: nn.Module, batch: Any | None, example: Any | None
) -> list[tuple[str, Callable[[], Any]]]:
    """The ways to call ``forward`` that are tried, in order, each as ``(description, call)``.

    * a tuple/list batch ``(x, y, ...)``: ``forward(*batch)`` first when ``forward`` needs two or more arguments, else
      ``forward(batch[0])``; then the other one, ``forward(batch)``, and ``forward(batch[0].flatten(1))`` (images fed to
      an MLP that flattens in ``training_step``);
    * a dict batch: ``forward(**batch)``, ``forward(batch)``, then ``forward(batch[key])`` for the usual input keys
      (:data:`INPUT_KEYS`), then for the first tensor value;
    * a tensor batch: ``forward(batch)``, ``forward(batch.flatten(1))``;
    * finally ``example_input_array`` as Lightning uses it (a tuple is unpacked, a dict given as keywords).
    """
    out: list[tuple[str, Callable[[], Any]]] = []
    if isinstance(batch, (tuple, list)) and batch:
        first = ("forward(batch[0])", _call(pl_module, batch[0], ""))
        unpacked = (f"forward(*batch) with {len(batch)} arguments", _call(pl_module, batch, "*"))
        out += [unpacked, first] if _required_positional(pl_module) >= 2 else [first, unpacked]
        out.append(("forward(batch)", _call(pl_module, batch, "")))
        if isinstance(batch[0], torch.Tensor) and batch[0].dim() > 2:
            out.append(("forward(batch[0].flatten(1))", _call(pl_module, batch[0].flatten(1), "")))
    elif isinstance(batch, Mapping) and batch:
        out.append(("forward(**batch)", _call(pl_module, batch, "**")))
        out.append(("forward(batch)", _call(pl_module, batch, "")))
        keys = [k for k in INPUT_KEYS if k in batch]
        keys += [k for k, v in batch.items() if isinstance(v, torch.Tensor) and k not in keys][:1]
        out += [(f"forward(batch[{k!r}])", _call(pl_module, batch[k], "")) for k in keys]
    elif isinstance(batch, torch.Tensor):
        out.append(("forward(batch)", _call(pl_module, batch, "")))
        if batch.dim() > 2:
            out.append(("forward(batch.flatten(1))", _call(pl_module, batch.flatten(1), "")))
    elif batch is not None:
        out.append((f"forward(batch) with a {type(batch).__name__} batch", _call(pl_module, batch, "")))
    if example is not None:
        how = "*" if isinstance(example, tuple) else "**" if isinstance(example, Mapping) else ""
        out.append(("forward(example_input_array)", _call(pl_module, example, how)))
    return out


class _ProbeRefused(RuntimeError):
    """A probe was about to do something with side effects (backward, optimizer step)."""


def _refuse(what: str) -> Callable[..., None]:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise _ProbeRefused(f"the probe does not run {what}")

    return refuse


@contextlib.contextmanager
def probe_guard(pl_module: pl.LightningModule) -> Iterator[None]:
    """Isolate RNG, restore train/eval flags and buffers, mute ``self.log`` and refuse ``manual_backward``."""
    training = {name: m.training for name, m in pl_module.named_modules()}
    buffers = {name: b.detach().clone() for name, b in pl_module.named_buffers()}
    mute = lambda *_args, **_kwargs: None  # noqa: E731
    patched = {"log": mute, "log_dict": mute, "manual_backward": _refuse("manual_backward")}
    for attr, value in patched.items():
        setattr(pl_module, attr, value)
    try:
        with isolate_rng():
            yield
    finally:
        for attr in patched:
            pl_module.__dict__.pop(attr, None)
        for name, module in pl_module.named_modules():
            module.training = training.get(name, module.training)
        with torch.no_grad():
            for name, buffer in pl_module.named_buffers():
                if name in buffers and buffers[name].shape == buffer.shape:
                    buffer.copy_(buffers[name])


def weight_layers(model: nn.Module) -> list[str]:
    """Qualified names of every submodule holding its own parameters (parametrized ones included; not the root)."""
    return [name for name, _ in initialisable_modules(model) if name]


@dataclass
class Probe:
    """What the probe found and how to run it again.

    Attributes:
        trace: Layer order, input/following activations, untraced layers and output layers.
        forward: How ``forward`` was called (``None`` when no call worked) and a function repeating that call.
        training_step: A function running ``training_step`` (returns its loss) when it was traced for the layers
            ``forward`` missed; ``None`` otherwise.
        tried: Every attempt that failed, as ``"description: error"`` lines.
    """

    trace: TraceResult
    forward: tuple[str, Callable[[], Any]] | None
    training_step: Callable[[], Any] | None = None
    forward_layers: set[str] = field(default_factory=set)
    tried: list[str] = field(default_factory=list)
    example_used: bool = False

    def runner_for(self, layer: str) -> Callable[[], Any] | None:
        """The call whose forward reaches ``layer`` (``forward`` first), or ``None``."""
        if self.forward is not None and layer in self.forward_layers:
            return self.forward[1]
        if self.training_step is not None and layer in self.trace.order:
            return self.training_step
        return None

    def loss(self) -> torch.Tensor | None:
        """A scalar to differentiate for gradient statistics: the training loss when ``training_step`` was traced,
        else the mean square of ``forward``'s floating-point outputs."""
        if self.training_step is not None:
            return _loss_of(self.training_step())
        if self.forward is None:
            return None
        return _pseudo_loss(self.forward[1]())

    def input_activations(self) -> dict[str, Activation]:
        return self.trace.input_activation

    def describe_failure(self) -> str:
        tried = "\n  ".join(self.tried) or "(nothing: no batch and no `example_input_array`)"
        return (
            f"Tried:\n  {tried}\nSet `self.example_input_array` in the LightningModule's `__init__` to an input"
            " `forward` accepts (a tensor, a tuple of positional arguments or a dict of keyword arguments)."
        )


def _loss_of(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("loss"), torch.Tensor):
        return output["loss"]
    return None


def _pseudo_loss(output: Any) -> torch.Tensor | None:
    from lightning_tuning.init.tracing import _tensors

    tensors = [t for t in _tensors(output) if t.is_floating_point() and t.requires_grad]
    if not tensors:
        return None
    return sum((t.float().pow(2).mean() for t in tensors), torch.zeros((), device=tensors[0].device))


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:200]}"


def training_step_runner(pl_module: pl.LightningModule, batch: Any) -> Callable[[], Any]:
    """``training_step(batch, 0)`` or ``training_step(batch)``, as Lightning would call it for this signature."""
    try:
        parameters = list(inspect.signature(pl_module.training_step).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if varargs or len(positional) >= 2:
        return lambda: pl_module.training_step(batch, 0)
    return lambda: pl_module.training_step(batch)


def run_probe(
    pl_module: pl.LightningModule, batch: Any | None, example: Any | None, layers: Sequence[str] | None = None
) -> Probe:
    """Trace the model once (see the module docstring); never raises for a ``forward`` that cannot be called.

    Call it inside :func:`probe_guard`. Check ``probe.forward`` / ``probe.trace.order`` and use
    :meth:`Probe.describe_failure` for the message when nothing could be traced.
    """
    layers = list(weight_layers(pl_module) if layers is None else layers)
    pl_module.train()
    tried: list[str] = []
    probe: Probe | None = None
    for description, call in forward_candidates(pl_module, batch, example):
        try:
            trace = trace_activations(pl_module, layers, call)
        except Exception as err:  # any failure means: not this way; say so if no way works
            tried.append(f"{description}: {_short(err)}")
            continue
        probe = Probe(trace, (description, call), forward_layers=set(trace.order), tried=tried)
        probe.example_used = description == "forward(example_input_array)"
        break
    if probe is None:
        probe = Probe(TraceResult(untraced=list(layers)), None, tried=tried)
    # layers inside a module forward did run (MultiheadAttention.out_proj) are used by it directly: training_step
    # would not reach them either
    ran = set(probe.trace.order)
    missing = [n for n in probe.trace.untraced if not any(a in ran for a in _ancestors(n))]
    automatic = getattr(pl_module, "automatic_optimization", True)
    if missing and automatic and batch is not None and is_overridden("training_step", pl_module):
        run_step = training_step_runner(pl_module, batch)
        try:
            step_trace = trace_activations(pl_module, layers, run_step)
        except Exception as err:
            tried.append(f"training_step(batch) for the layers forward does not reach: {_short(err)}")
        else:
            merged = step_trace
            for name in probe.trace.order:  # what forward saw is kept; training_step adds what it alone reached
                for mine, theirs in (
                    (merged.activation, probe.trace.activation),
                    (merged.input_activation, probe.trace.input_activation),
                ):
                    if name in theirs:
                        mine[name] = theirs[name]
                if name in probe.trace.input_source:
                    merged.input_source[name] = probe.trace.input_source[name]
                if name not in merged.order:
                    merged.order.append(name)
            merged.untraced = [n for n in layers if n not in merged.order]
            probe = Probe(
                merged,
                probe.forward,
                run_step,
                forward_layers=probe.forward_layers,
                tried=tried,
                example_used=probe.example_used,
            )
    return probe


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def is_resuming(trainer: pl.Trainer) -> bool:
    """Whether this fit restores a checkpoint (its weights must be kept)."""
    return trainer.ckpt_path is not None


def shared_seed(trainer: pl.Trainer, seed: int | None) -> int:
    """``seed``, or rank 0's current torch seed broadcast to every rank (so all ranks draw the same weights)."""
    return seed if seed is not None else trainer.strategy.broadcast(torch.initial_seed() % (1 << 63), 0)


def is_fsdp(trainer: pl.Trainer) -> bool:
    """Whether the model is sharded by FSDP (its parameters are flat shards outside forward)."""
    return any("FSDP" in klass.__name__ for klass in type(trainer.strategy).__mro__)


@contextlib.contextmanager
def materialised(trainer: pl.Trainer) -> Iterator[None]:
    """Full, unsharded parameters for the duration (written back to every rank's shard on exit) under FSDP; nothing
    to do under other strategies. Every rank draws the same values (per-parameter generators), so the shards agree
    with a single-process init."""
    if not is_fsdp(trainer):
        yield
        return
    from torch.distributed.fsdp import FullyShardedDataParallel

    wrapped = trainer.strategy.model
    if not isinstance(wrapped, FullyShardedDataParallel):
        yield
        return
    with FullyShardedDataParallel.summon_full_params(wrapped, writeback=True, with_grads=False):
        yield


def refuse_unsupported_strategy(trainer: pl.Trainer, who: str) -> None:
    """DeepSpeed partitions and re-initialises parameters itself; refuse before anything is written.

    Raises:
        MisconfigurationException: Under a DeepSpeed strategy.
    """
    if any(klass.__name__ == "DeepSpeedStrategy" for klass in type(trainer.strategy).__mro__):
        raise MisconfigurationException(
            f"{who} does not support DeepSpeed (strategy={type(trainer.strategy).__name__}): ZeRO partitions the"
            " parameters and restores its own checkpoints after `on_fit_start`, so an init written here would be"
            " partial or overwritten. Initialise inside the model (`configure_model`) instead, or use DDP or FSDP."
        )
