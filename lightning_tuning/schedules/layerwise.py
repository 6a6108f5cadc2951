"""Discriminative and layer-wise learning rates: an LR scale per parameter, and param groups split and merged by it.

Two ways to give a parameter a scale, which multiply:

* ``lr_scales``: ``{glob: scale}`` rules on parameter names, first match wins. A glob matches a parameter when it
  matches the full name (``fnmatch``: ``*`` crosses dots, so ``"backbone.*"`` is all of the backbone and ``"*.bias"``
  every bias) or, written without wildcards, a module the parameter belongs to (``"backbone"``).
* layer-wise decay (LLRD; Howard & Ruder 2018, BEiT, MAE fine-tuning): ``blocks`` lists the model's blocks from input
  to output; block ``k`` of ``K`` gets ``decay ** (K - k)``, parameters in no block (the head) 1. A block is a module
  or parameter name (``"patch_embed"``, ``"cls_token"``), a list of such names forming one block, or a glob with
  wildcards that expands into one block per matching module, ``*`` matching within one dot-separated level
  (``"blocks.*"`` is ``blocks.0, blocks.1, ...`` in model order).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

BlockSpec = str | list[str]


def _has_wildcard(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


def _belongs(name: str, owner: str) -> bool:
    """Whether parameter ``name`` is ``owner`` itself or inside module ``owner``."""
    return name == owner or name.startswith(owner + ".")


def rule_matches(pattern: str, name: str) -> bool:
    """Whether an ``lr_scales`` glob matches parameter ``name`` (see the module docstring)."""
    if _has_wildcard(pattern):
        return fnmatch.fnmatchcase(name, pattern)
    return _belongs(name, pattern)


def _level_match(name: str, pattern: str) -> bool:
    parts, pattern_parts = name.split("."), pattern.split(".")
    return len(parts) == len(pattern_parts) and all(
        fnmatch.fnmatchcase(part, glob) for part, glob in zip(parts, pattern_parts, strict=True)
    )


def expand_blocks(blocks: Sequence[BlockSpec], module_names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The blocks in order, each as ``(label, [module or parameter names])``; globs expanded over ``module_names``.

    Raises:
        ValueError: a glob matches no module.
    """
    expanded: list[tuple[str, list[str]]] = []
    for spec in blocks:
        names = [spec] if isinstance(spec, str) else list(spec)
        if len(names) == 1 and _has_wildcard(names[0]):
            matches = [module for module in module_names if _level_match(module, names[0])]
            if not matches:
                raise ValueError(
                    f"`blocks` entry {names[0]!r} matches no module; a wildcard matches within one level of the "
                    f"dotted names (e.g. 'blocks.*' for blocks.0, blocks.1, ...). Modules: {_sample(module_names)}."
                )
            expanded.extend((match, [match]) for match in matches)
        else:
            expanded.append(("+".join(names), names))
    return expanded


def _sample(names: Sequence[str], count: int = 8) -> str:
    shown = ", ".join(repr(name) for name in names[:count])
    return shown + (f", ... ({len(names)} in all)" if len(names) > count else "")


def parameter_scales(
    parameter_names: Sequence[str],
    module_names: Sequence[str],
    lr_scales: Mapping[str, float] | None = None,
    blocks: Sequence[BlockSpec] | None = None,
    layer_decay: float | None = None,
) -> dict[str, tuple[float, str]]:
    """The LR scale of every parameter and a label saying where it came from (for param group names).

    Raises:
        ValueError: a rule or a block matches no parameter, or a parameter is in two blocks.
    """
    result: dict[str, tuple[float, str]] = dict.fromkeys(parameter_names, (1.0, ""))
    if blocks and layer_decay is not None:
        expanded = expand_blocks(blocks, module_names)
        count = len(expanded)
        owner: dict[str, str] = {}
        for index, (label, names) in enumerate(expanded):
            members = [p for p in parameter_names if any(_belongs(p, n) for n in names)]
            if not members:
                raise ValueError(
                    f"`blocks` entry {label!r} matches no parameter. Parameters: {_sample(parameter_names)}."
                )
            for parameter in members:
                if parameter in owner:
                    raise ValueError(
                        f"parameter {parameter!r} is in two blocks, {owner[parameter]!r} and {label!r}: "
                        "list every block once, none inside another."
                    )
                owner[parameter] = label
                result[parameter] = (layer_decay ** (count - index), label)
    for pattern in lr_scales or {}:
        if not any(rule_matches(pattern, p) for p in parameter_names):
            raise ValueError(
                f"`lr_scales` rule {pattern!r} matches no parameter. Parameters: {_sample(parameter_names)}."
            )
    for parameter in parameter_names:
        for pattern, scale in (lr_scales or {}).items():
            if rule_matches(pattern, parameter):
                decay, label = result[parameter]
                result[parameter] = (decay * float(scale), f"{label}|{pattern}" if label else pattern)
                break
    return result


def _options_key(group: Mapping[str, Any]) -> str:
    return repr(sorted((key, repr(value)) for key, value in group.items() if key not in ("params", "name")))


def _scaled(value: Any, scale: float) -> Any:
    if scale == 1.0:
        return value
    if hasattr(value, "mul"):  # a tensor LR
        return value.mul(scale)
    return value * scale


SCALED_KEYS = ("lr", "initial_lr", "lt_base_lr")
"""Group keys that hold a learning rate, multiplied by the parameter's scale."""


def split_param_groups(
    groups: Sequence[dict[str, Any]], scale_of: Mapping[int, tuple[float, str]], merge: bool = True
) -> list[dict[str, Any]]:
    """New param groups: each group split by its parameters' scales, other options kept, identical ones merged.

    Args:
        groups: the optimizer's param groups (not modified).
        scale_of: ``id(parameter) -> (scale, label)``; a parameter missing keeps scale 1 (label ``"rest"``).
        merge: merge the new groups whose options (everything but ``params`` and ``name``) end up identical, across
            the original groups too: one group per tensor made a real project's step 23% slower than one group per
            option set.

    Returns:
        Groups in the order of their first parameter. ``name`` is the label of its parameters (``"rest"`` for scale 1
        without a rule), prefixed by the original group's ``name``, or ``pg{i}`` where there were several groups;
        labels merged into one group are joined by ``+``. A single group that stays whole (its parameters share one
        scale) is scaled and keeps its own name.
    """
    several = len(groups) > 1
    pieces: list[tuple[dict[str, Any], list[str]]] = []
    for index, group in enumerate(groups):
        prefix = group.get("name") or (f"pg{index + 1}" if several else "")
        by_scale: dict[float, tuple[dict[str, Any], list[str]]] = {}
        for parameter in group["params"]:
            scale, label = scale_of.get(id(parameter), (1.0, ""))
            qualified = f"{prefix}/{label or 'rest'}" if prefix else (label or "rest")
            if scale not in by_scale:
                piece = {key: _scaled(value, scale) if key in SCALED_KEYS else value for key, value in group.items()}
                piece["params"] = []
                by_scale[scale] = (piece, [])
                pieces.append(by_scale[scale])
            piece, labels = by_scale[scale]
            piece["params"].append(parameter)
            if qualified not in labels:
                labels.append(qualified)
    if not several and len(pieces) == 1:
        # one group whose parameters share one scale (e.g. only the head trains while a backbone is frozen): scaled,
        # but not renamed
        return [pieces[0][0]]
    result: list[tuple[dict[str, Any], list[str]]] = []
    by_options: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for piece, labels in pieces:
        key = _options_key(piece)
        if merge and key in by_options:
            target, target_labels = by_options[key]
            target["params"].extend(piece["params"])
            target_labels.extend(label for label in labels if label not in target_labels)
            continue
        by_options[key] = (piece, labels)
        result.append((piece, labels))
    for piece, labels in result:
        piece["name"] = "+".join(labels)
    return [piece for piece, _ in result]
