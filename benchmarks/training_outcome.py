"""Training outcome of each practice on MNIST-1D, and warmup vs. divergence on the character-level LM.

MNIST-1D (``MNIST1DConvNet``, its default AdamW(lr=3e-3, weight_decay=1e-2), batch 100, 3600 training signals,
validation every epoch = 36 steps): the baseline (constant LR, PyTorch's default init) against each practice alone
and two presets, over several seeds (the seed sets the model's init and the shuffling; the data split is fixed).
Every ``--eval-every`` steps the test accuracy is measured on the 1000 held-out test signals; reported: final test
accuracy (mean ± std), and the optimizer steps until the test accuracy first reaches the MNIST-1D paper's CNN
accuracy (0.94) and lower thresholds.

Character-level LM (``CharTransformer``, 2 pre-norm layers by default, d_model 64, on the first 200k characters of
``pydoc_data.topics``): AdamW at high learning rates with and without a linear ``Warmup``, several seeds; a run
diverges when a training loss is NaN/inf or the mean loss of its last 10% of steps is above its first loss, and
learned no context when that final loss is not at least 0.05 nats below the unigram entropy of the training text
(the loss of predicting every character from the character frequencies alone), which is how post-norm fails here.
``--lm-norm post --lm-layers 6`` runs the post-norm variant (the original Transformer's blocks, where warmup is
known to prevent divergence) and writes ``benchmarks/results/training_outcome_lm_postnorm.md`` (with the raw runs
in ``training_outcome_lm_postnorm.json``).
``--lm-warmups none 10% 50%`` sets the warmup lengths compared; ``--lm-merge`` adds a call's LM runs to the stored
ones (same LR, warmup, seed, steps, norm and depth replaced) and reports them all.

Runs go to ``--workers`` worker processes of one thread each (default 2, the machine's cores); timings are not
measured here.

Run: ``python benchmarks/training_outcome.py`` (about 6 min) or ``--quick`` (about 1 min);
results go to ``benchmarks/results/training_outcome.md``. The LM part alone: ``--seeds 0``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, machine_header, md_table, mean_std, quiet, quiet_trainer, write_results

THRESHOLDS = (0.94, 0.90, 0.85)
HE_RULE = {
    "modules": ["linear", "conv"],
    "weight": "kaiming_normal",
    "weight_args": {"nonlinearity": "auto", "mode": "fan_in"},
    "bias": "zeros",
}
CONFIGS: dict[str, str] = {
    "baseline": "constant LR, default init",
    "warmup": "Warmup('5%'), then constant",
    "step_decay": "StepDecay(step_size=steps//3, gamma=0.3, interval='step')",
    "cosine": "CosineAnnealing() to 0 over the run",
    "plateau": "PlateauDecay(val_loss, factor=0.5, patience=2, min_lr=1e-5)",
    "one_cycle": "OneCycle(max_lr=0.01, pct_start=0.3)",
    "cyclic": "CyclicLR(base_lr=5e-4, max_lr=5e-3, step_size_up=36)  (36 steps = 1 epoch)",
    "he_init": "WeightInit(kaiming_normal fan_in, gain auto, bias 0)",
    "lsuv": "LSUVInit(linear+conv, head excluded, tol 0.1)",
    "preset_warmup_cosine": "He init + Warmup('5%') + CosineAnnealing(start='after_warmup')",
    "preset_one_cycle": "He init + OneCycle(max_lr=0.01)",
}


def _callbacks(name: str, steps: int, seed: int) -> list[Any]:
    from lightning_tuning import (
        CosineAnnealing,
        CyclicLR,
        LSUVInit,
        OneCycle,
        PlateauDecay,
        StepDecay,
        Warmup,
        WeightInit,
    )

    def he() -> Any:
        return WeightInit(rules=[dict(HE_RULE)], seed=seed, report=False)

    return {
        "baseline": lambda: [],
        "warmup": lambda: [Warmup("5%")],
        "step_decay": lambda: [StepDecay(step_size=steps // 3, gamma=0.3, interval="step")],
        "cosine": lambda: [CosineAnnealing()],
        "plateau": lambda: [PlateauDecay(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-5)],
        "one_cycle": lambda: [OneCycle(max_lr=0.01, pct_start=0.3)],
        "cyclic": lambda: [CyclicLR(base_lr=5e-4, max_lr=5e-3, step_size_up=36)],
        "he_init": lambda: [he()],
        "lsuv": lambda: [
            LSUVInit(
                modules=["linear", "conv"],
                exclude=["head", "*.head", "*output*"],
                tol=0.1,
                max_iters=10,
                seed=seed,
                report=False,
            )
        ],
        "preset_warmup_cosine": lambda: [he(), Warmup("5%"), CosineAnnealing(start="after_warmup")],
        "preset_one_cycle": lambda: [he(), OneCycle(max_lr=0.01)],
    }[name]()


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    quiet()


def run_mnist(name: str, seed: int, steps: int, eval_every: int) -> dict[str, Any]:
    """One MNIST-1D run; returns the test-accuracy curve."""
    import lightning.pytorch as pl
    import torch

    from lightning_tuning.demos import MNIST1DConvNet, MNIST1DDataModule

    quiet()
    pl.seed_everything(seed, verbose=False)
    data = MNIST1DDataModule(num_samples=5000, batch_size=100)
    data.prepare_data()
    data.setup("fit")
    test_x, test_y = data.test_set.tensors  # type: ignore[union-attr]
    curve: list[tuple[int, float]] = []

    def test_accuracy(module: Any) -> float:
        was_training = module.training
        module.eval()
        with torch.no_grad():
            accuracy = float((module(test_x).argmax(-1) == test_y).float().mean())
        module.train(was_training)
        return accuracy

    class TestProbe(pl.Callback):
        def on_train_batch_end(self, trainer: Any, module: Any, *args: Any) -> None:
            if trainer.global_step % eval_every == 0 or trainer.global_step == steps:
                curve.append((trainer.global_step, test_accuracy(module)))

    trainer = quiet_trainer(
        max_steps=steps, max_epochs=-1, logger=False, callbacks=[*_callbacks(name, steps, seed), TestProbe()]
    )
    start = time.perf_counter()
    trainer.fit(MNIST1DConvNet(), datamodule=data)
    return {"name": name, "seed": seed, "curve": curve, "seconds": time.perf_counter() - start}


LM_DATA = {"block_size": 64, "batch_size": 32, "max_chars": 200_000}


def unigram_entropy() -> float:
    """Cross-entropy (nats) of predicting each training character from the training text's character frequencies."""
    from lightning_tuning.demos import CharLMDataModule

    data = CharLMDataModule(**LM_DATA)  # type: ignore[arg-type]
    data.setup("fit")
    targets = data.train_set.tensors[1].flatten()  # type: ignore[union-attr]
    counts = targets.bincount().double()
    probs = counts[counts > 0] / counts.sum()
    return float(-(probs * probs.log()).sum())


def run_lm(
    lr: float, warmup: str | None, seed: int, steps: int, norm_first: bool = True, n_layer: int = 2
) -> dict[str, Any]:
    """One char-LM run (``warmup``: a ``Warmup`` length such as ``'10%'``, or None); returns its losses."""
    import lightning.pytorch as pl

    from lightning_tuning import Warmup
    from lightning_tuning.demos import CharLMDataModule, CharTransformer

    quiet()
    pl.seed_everything(seed, verbose=False)
    losses: list[float] = []

    class LossRecorder(pl.Callback):
        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, *args: Any) -> None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            losses.append(float(loss))

    callbacks: list[Any] = [LossRecorder()]
    if warmup:
        callbacks.insert(0, Warmup(warmup))
    trainer = quiet_trainer(max_steps=steps, max_epochs=-1, logger=False, callbacks=callbacks, limit_val_batches=0)
    model = CharTransformer(block_size=64, d_model=64, n_layer=n_layer, n_head=4, lr=lr, norm_first=norm_first)
    start = time.perf_counter()
    trainer.fit(model, datamodule=CharLMDataModule(**LM_DATA))  # type: ignore[arg-type]
    tail = losses[-max(1, len(losses) // 10) :]
    finite = all(math.isfinite(x) for x in losses)
    final = statistics.mean(tail) if finite else float("nan")
    diverged = (not finite) or final > losses[0]
    return {
        "lr": lr,
        "warmup": warmup,
        "seed": seed,
        "steps": steps,
        "norm_first": norm_first,
        "n_layer": n_layer,
        "first": losses[0],
        "final": final,
        "diverged": diverged,
        "first_nonfinite_step": next((i for i, x in enumerate(losses) if not math.isfinite(x)), None),
        "max_loss": max(losses),
        "min_loss": min(losses),
        # the training loss every 10 steps (NaN/inf kept as strings for JSON)
        "loss_every_10": [x if math.isfinite(x) else str(x) for x in losses[::10]],
        "seconds": time.perf_counter() - start,
    }


def _call(job: tuple[str, tuple]) -> dict[str, Any]:
    kind, args = job
    return run_mnist(*args) if kind == "mnist" else run_lm(*args)


def steps_to(curve: list[tuple[int, float]], threshold: float) -> int | None:
    return next((step for step, acc in curve if acc >= threshold), None)


def mnist_table(results: list[dict[str, Any]], seeds: int) -> str:
    rows = []
    baseline = [r["curve"][-1][1] for r in results if r["name"] == "baseline"]
    for name, description in CONFIGS.items():
        runs = [r for r in results if r["name"] == name]
        if not runs:
            continue
        finals = [r["curve"][-1][1] for r in runs]
        bests = [max(acc for _, acc in r["curve"]) for r in runs]
        row = [
            f"`{name}`",
            description,
            f"**{mean_std(finals)}**",
            f"{statistics.mean(finals) - statistics.mean(baseline):+.3f}",
        ]
        row.append(mean_std(bests))
        for threshold in THRESHOLDS:
            reached = [s for s in (steps_to(r["curve"], threshold) for r in runs) if s is not None]
            cell = f"{statistics.median(reached):.0f}" if reached else "—"
            row.append(f"{cell} ({len(reached)}/{len(runs)})")
        rows.append(row)
    headers = ["config", "what", "final test acc", "Δ vs baseline", "best test acc"]
    headers += [f"steps to {t:.2f} (median; seeds reaching)" for t in THRESHOLDS]
    return md_table(headers, rows)


NO_CONTEXT_MARGIN = 0.05  # nats; the mean loss of 30 batches of 2048 characters varies by ~0.01 around its mean


def _warmup_order(warmup: str | None) -> float:
    return -1.0 if warmup is None else float(warmup.rstrip("%"))


def load_lm_runs(path: Path) -> list[dict[str, Any]]:
    """Stored LM runs; the first format stored ``warmup`` as a bool (True meant ``Warmup('10%')``)."""
    if not path.exists():
        return []
    runs = json.loads(path.read_text())["runs"]
    for run in runs:
        if isinstance(run["warmup"], bool):
            run["warmup"] = "10%" if run["warmup"] else None
    return list(runs)


def lm_table(results: list[dict[str, Any]], unigram: float) -> str:
    rows = []
    for lr in sorted({r["lr"] for r in results}):
        for warmup in sorted({r["warmup"] for r in results if r["lr"] == lr}, key=_warmup_order):
            runs = [r for r in results if r["lr"] == lr and r["warmup"] == warmup]
            finals = [r["final"] for r in runs if math.isfinite(r["final"])]
            rows.append(
                [
                    f"{lr:g}",
                    f"Warmup('{warmup}')" if warmup else "none",
                    f"**{sum(r['diverged'] for r in runs)}/{len(runs)}**",
                    f"{sum(r['diverged'] or r['final'] >= unigram - NO_CONTEXT_MARGIN for r in runs)}/{len(runs)}",
                    f"{statistics.mean(r['first'] for r in runs):.3f}",
                    mean_std(finals) if finals else "all NaN",
                    ", ".join(f"{r['final']:.2f}" for r in runs),
                ]
            )
    return md_table(
        [
            "AdamW lr",
            "warmup",
            "diverged",
            f"diverged or no context learned (final ≥ {unigram - NO_CONTEXT_MARGIN:.3f})",
            "first loss",
            "final loss (mean ± std)",
            "final loss per seed",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per MNIST-1D config")
    parser.add_argument("--steps", type=int, default=1800, help="optimizer steps per MNIST-1D run (36 per epoch)")
    parser.add_argument("--eval-every", type=int, default=36, help="steps between test-accuracy measurements")
    parser.add_argument("--lm-seeds", type=int, default=5)
    parser.add_argument("--lm-steps", type=int, default=300)
    parser.add_argument("--lm-lrs", type=float, nargs="+", default=[1e-2, 3e-2])
    parser.add_argument("--lm-norm", choices=["pre", "post"], default="pre", help="pre-norm or post-norm LM blocks")
    parser.add_argument("--lm-layers", type=int, default=2, help="transformer blocks of the LM")
    parser.add_argument(
        "--lm-warmups", nargs="+", default=["none", "10%"], help="LM warmup lengths to compare ('none' for none)"
    )
    parser.add_argument(
        "--lm-merge", action="store_true", help="add the LM runs to the stored raw runs of --out and report all"
    )
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke mode: 1 seed, 360 steps, 3 LM seeds of 60 steps")
    parser.add_argument(
        "--out",
        default=None,
        help="file name under benchmarks/results/ (default training_outcome.md, with --lm-norm post "
        "training_outcome_lm_postnorm.md); the LM runs' raw results go next to it as .json",
    )
    args = parser.parse_args()
    if args.out is None:
        args.out = "training_outcome_lm_postnorm.md" if args.lm_norm == "post" else "training_outcome.md"
    norm_first = args.lm_norm == "pre"
    if args.quick:
        args.seeds, args.steps, args.lm_seeds, args.lm_steps = 1, 360, 3, 60
    jobs: list[tuple[str, tuple]] = [
        ("lm", (lr, warmup, seed, args.lm_steps, norm_first, args.lm_layers))
        for lr in args.lm_lrs
        for seed in range(args.lm_seeds)
        for warmup in [None if w == "none" else w for w in args.lm_warmups]
    ]
    jobs += [
        ("mnist", (name, seed, args.steps, args.eval_every)) for seed in range(args.seeds) for name in args.configs
    ]
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers, initializer=_worker_init) as pool:
        results = []
        for index, result in enumerate(pool.imap_unordered(_call, jobs), 1):
            results.append(result)
            print(f"[{index}/{len(jobs)}] {time.perf_counter() - start:.0f}s", file=sys.stderr)
    mnist = [r for r in results if "curve" in r]
    lm = [r for r in results if "diverged" in r]
    raw = (RESULTS_DIR / args.out).with_suffix(".json")
    if args.lm_merge:

        def key(r: dict[str, Any]) -> tuple:
            return (r["lr"], r["warmup"], r["seed"], r["steps"], r["norm_first"], r["n_layer"])

        new = {key(r) for r in lm}
        lm += [r for r in load_lm_runs(raw) if key(r) not in new]
    lm.sort(key=lambda r: (r["lr"], _warmup_order(r["warmup"]), r["seed"]))
    unigram = unigram_entropy()
    if lm:
        raw.write_text(json.dumps({"unigram_entropy": unigram, "runs": lm}, indent=1) + "\n")
    # --seeds 0 runs the LM part alone
    mnist_section = (
        [
            f"## MNIST-1D CNN: {args.steps} steps, {args.seeds} seeds",
            "",
            f"`MNIST1DConvNet` (channels 32), AdamW(lr=3e-3, weight_decay=1e-2) unless the schedule sets the LR, "
            f"batch 100, 5000 signals (3600 train / 400 val / 1000 test), validation every epoch (36 steps). Seeds "
            f"0..{args.seeds - 1} (init and shuffling; fixed data). Test accuracy measured every {args.eval_every} "
            f"steps; 'final' is after step {args.steps}. Threshold 0.94 is the MNIST-1D paper's CNN accuracy; "
            f"'—' means no seed reached it within {args.steps} steps.",
            "",
            mnist_table(mnist, args.seeds),
            "",
        ]
        if mnist
        else []
    )
    text = "\n".join(
        [
            "# Training outcome",
            "",
            machine_header().split("(intra-op")[0]
            + f"(intra-op threads 1 per worker, {args.workers} worker{'s' * (args.workers > 1)}), lightning "
            + machine_header().rsplit("lightning ", 1)[1],
            "",
            *mnist_section,
            f"## Character-level LM ({args.lm_norm}-norm, {args.lm_layers} layers): AdamW at a high LR, with and "
            f"without warmup ({args.lm_seeds} seeds)",
            "",
            f"`CharTransformer(block_size=64, d_model=64, n_layer={args.lm_layers}, n_head=4, dropout=0.1, "
            f"norm_first={norm_first})`, weight_decay 1e-2, "
            f"batch 32 x 64 characters of the first 200k characters of `pydoc_data.topics`, {args.lm_steps} steps, "
            f"constant LR after the warmup, seeds 0..{args.lm_seeds - 1}. Diverged = a NaN/inf training loss, or "
            f"the mean loss of the last 10% of steps ('final loss') above the first loss (ln 96 ≈ {math.log(96):.2f} "
            f"at init). No context learned = a final loss less than {NO_CONTEXT_MARGIN} below {unigram:.3f}, the "
            f"unigram entropy of the training text (the loss of predicting each character from the character "
            f"frequencies alone).",
            "",
            lm_table(lm, unigram),
            "",
            f"Wall time of this call: {time.perf_counter() - start:.0f} s"
            + (" (its runs were merged with the stored ones)." if args.lm_merge else "."),
            "",
        ]
    )
    write_results(args.out, text)


if __name__ == "__main__":
    main()
