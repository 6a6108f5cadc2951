r"""
LayerwiseLR
===========

Discriminative and layer-wise learning rates for fine-tuning, applied to the module's own optimizer.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch.optim import Optimizer
from typing_extensions import override

from lightning_tuning.callbacks.scale_lr import check_optimizer_indices, reject_torch_schedulers, targeted_optimizers
from lightning_tuning.schedules.layerwise import BlockSpec, parameter_scales, split_param_groups


class LayerwiseLR(Callback):
    r"""Give parts of the model their own LR scale by splitting the optimizer's param groups before the first step.

    Two ways to set a parameter's scale, which multiply:

    * ``lr_scales``: ``{glob: scale}``, first matching rule wins. ``"backbone"`` (no wildcard) is everything in that
      module; ``"backbone.*"``, ``"*.bias"``, ``"encoder.layer.1?.*"`` are ``fnmatch`` globs on parameter names
      (``*`` crosses dots). E.g. ``{"backbone": 0.1}``: the backbone trains at a tenth of the head's LR.
    * ``blocks`` with ``layer_decay`` (LLRD, as in BEiT/MAE fine-tuning): the model's blocks from input to output;
      block ``k`` of ``K`` gets ``layer_decay ** (K - k)``, parameters in no block (the head) 1. An entry is a
      module or parameter name, a list of names that form one block (``[patch_embed, cls_token, pos_embed]``),
      or a glob expanding into one block per module, ``*`` within one level (``"blocks.*"``: ``blocks.0``,
      ``blocks.1``, ... in model order). BEiT's ViT recipe: ``blocks=[[patch_embed, cls_token, pos_embed],
      "blocks.*"]``, ``layer_decay=0.75``.

    Each of the optimizer's param groups is split by the scales of its parameters; every other option (weight decay,
    betas, ...) is kept, the LR is multiplied by the scale, and new groups whose options end up identical are merged
    (``merge=True``): one group per distinct option set, never one per tensor. Groups get a ``name`` from their
    block or rule (``"blocks.3"``, ``"backbone"``, ``"rest"``; prefixed by the original group's name or ``pg{i}``
    when there were several), so ``LearningRateMonitor`` and the dashboard show one LR line per name.

    It runs at the start of fit, before schedules read the base LRs and before the LR range test (which keeps the
    ratios between groups). The split is a pure function of the model and this config, so a resumed fit rebuilds the
    same groups and the checkpoint's optimizer state loads into them exactly.

    Args:
        lr_scales: ``{glob: scale}`` rules on parameter names, each scale ``> 0``.
        blocks: the blocks for layer-wise decay, input to output.
        layer_decay: the per-block factor, in ``(0, 1]``; needs ``blocks``.
        merge: merge groups whose options end up identical (default ``True``).
        optimizers: indices of the optimizers to split; ``None`` (default) for all.

    Raises:
        MisconfigurationException: at construction, for no rule and no blocks, a scale that is not positive, or
            ``layer_decay`` without ``blocks`` (or the reverse); at the start of fit, for a rule or block that matches
            no parameter, a parameter in two blocks, or an optimizer with a torch scheduler.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> from lightning_tuning import LayerwiseLR
        >>> trainer = Trainer(callbacks=[LayerwiseLR(blocks=["embed", "layers.*"], layer_decay=0.75)])
    """

    def __init__(
        self,
        lr_scales: dict[str, float] | None = None,
        blocks: list[str | list[str]] | None = None,
        layer_decay: float | None = None,
        merge: bool = True,
        optimizers: list[int] | None = None,
    ) -> None:
        for pattern, scale in (lr_scales or {}).items():
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
                raise MisconfigurationException(
                    f"LayerwiseLR: `lr_scales[{pattern!r}]={scale!r}` must be a number > 0 (the factor of that "
                    "part's LR; freeze a part with requires_grad=False instead of a scale of 0)."
                )
        if blocks and layer_decay is None:
            raise MisconfigurationException(
                "LayerwiseLR: `blocks` is given without `layer_decay`: set `layer_decay` (e.g. 0.75)."
            )
        if layer_decay is not None:
            if not blocks:
                raise MisconfigurationException(
                    f"LayerwiseLR: `layer_decay={layer_decay}` needs `blocks`, the model's blocks from input to "
                    "output (e.g. ['embed', 'layers.*'])."
                )
            if isinstance(layer_decay, bool) or not isinstance(layer_decay, (int, float)) or not 0 < layer_decay <= 1:
                raise MisconfigurationException(
                    f"LayerwiseLR: `layer_decay={layer_decay!r}` must lie in (0, 1]: each block closer to the input "
                    "trains at that factor of the next one's LR."
                )
        if not lr_scales and not blocks:
            raise MisconfigurationException(
                "LayerwiseLR: give `lr_scales` ({glob: scale}, e.g. {'backbone': 0.1}) and/or `blocks` with "
                "`layer_decay` (e.g. blocks=['embed', 'layers.*'], layer_decay=0.75)."
            )
        if blocks is not None and not all(
            isinstance(b, str) or (isinstance(b, (list, tuple)) and b and all(isinstance(n, str) for n in b))
            for b in blocks
        ):
            raise MisconfigurationException(
                f"LayerwiseLR: `blocks={blocks!r}` must be a list of module names, globs or lists of names."
            )
        self.lr_scales = dict(lr_scales or {})
        self.blocks: list[BlockSpec] = [b if isinstance(b, str) else list(b) for b in blocks or []]
        self.layer_decay = None if layer_decay is None else float(layer_decay)
        self.merge = merge
        self.optimizers = check_optimizer_indices("LayerwiseLR", optimizers)
        self.layout: dict[int, list[tuple[str, int]]] = {}
        self._saved_layout: dict[str, Any] | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(optimizers=self.optimizers)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        targets = targeted_optimizers("LayerwiseLR", trainer, self.optimizers)
        reject_torch_schedulers(
            "LayerwiseLR", trainer, [optimizer for _, optimizer in targets], "splitting its param groups would break it"
        )
        named = list(pl_module.named_parameters())
        try:
            scales = parameter_scales(
                [name for name, _ in named],
                [name for name, _ in pl_module.named_modules()],
                self.lr_scales,
                self.blocks,
                self.layer_decay,
            )
        except ValueError as err:
            raise MisconfigurationException(f"LayerwiseLR: {err}") from err
        by_id = {id(parameter): scales[name] for name, parameter in named}
        self.layout.clear()
        for index, optimizer in targets:
            self._split(optimizer, by_id)
            self.layout[index] = [
                (str(group.get("name", "")), len(group["params"])) for group in optimizer.param_groups
            ]
            rank_zero_info(
                f"LayerwiseLR: optimizer {index} ({type(optimizer).__name__}) now has {len(optimizer.param_groups)} "
                "param group(s): "
                + ", ".join(
                    f"{group.get('name') or 'pg'} ({len(group['params'])} tensors, lr {float(group['lr']):.4g})"
                    for group in optimizer.param_groups
                )
            )
        self._check_resume()

    def _split(self, optimizer: Optimizer, scale_of: dict[int, tuple[float, str]]) -> None:
        if any(group.get("lt_layerwise") for group in optimizer.param_groups):
            return  # this optimizer object was split by an earlier fit already
        if optimizer.state:
            rank_zero_warn(
                "LayerwiseLR: the optimizer has state already (it stepped before fit): the state stays with each "
                "parameter, but split the groups before training for a clean start."
            )
        groups = split_param_groups(optimizer.param_groups, scale_of, merge=self.merge)
        for group in groups:
            group["lt_layerwise"] = True
        optimizer.param_groups.clear()
        for group in groups:
            optimizer.param_groups.append(group)

    def _check_resume(self) -> None:
        if self._saved_layout is None:
            return
        now = {str(index): [list(entry) for entry in layout] for index, layout in self.layout.items()}
        saved = {key: [list(entry) for entry in value] for key, value in self._saved_layout.items()}
        if now != saved:
            raise MisconfigurationException(
                "LayerwiseLR: the checkpoint's param groups were split differently "
                f"({saved}) from this run's ({now}), so its optimizer state cannot be loaded into them. Resume with "
                "the LayerwiseLR config (and model) the checkpoint was written with."
            )

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"layout": {str(index): [list(entry) for entry in layout] for index, layout in self.layout.items()}}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._saved_layout = dict(state_dict.get("layout", {}))
