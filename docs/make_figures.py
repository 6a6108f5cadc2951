"""Draw the schedule figures of docs/guide.md with the schedule preview (no training), into docs/figures/.

Run: ``python docs/make_figures.py``. Each figure is what ``python -m lightning_tuning preview`` computes for that
callback list on a run of 5 epochs x 40 optimizer steps with SGD (lr 0.1, momentum 0.9).
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.demos.boring_classes import BoringModel

from lightning_tuning import (
    CosineAnnealing,
    CyclicLR,
    ExponentialDecay,
    MultiStepDecay,
    OneCycle,
    StepDecay,
    Warmup,
)
from lightning_tuning.plotting import new_figure, render_rgb, save_png
from lightning_tuning.preview import preview_schedule

OUT = Path(__file__).parent / "figures"


class Model(BoringModel):
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


FIGURES: dict[str, dict[str, list[Any]]] = {
    "warmup": {
        "linear, 40 steps": [Warmup(40)],
        "exponential, tau 10": [Warmup(10, kind="exponential")],
        "constant 0.1, 40 steps": [Warmup(40, kind="constant")],
    },
    "decay": {
        "StepDecay(step_size=2, gamma=0.3)": [StepDecay(2, gamma=0.3)],
        "MultiStepDecay(['50%', '75%'])": [MultiStepDecay(["50%", "75%"])],
        "ExponentialDecay(0.6)": [ExponentialDecay(0.6)],
    },
    "cosine": {
        "CosineAnnealing()": [CosineAnnealing()],
        "Warmup(20) + CosineAnnealing(start='after_warmup')": [Warmup(20), CosineAnnealing(start="after_warmup")],
        "CosineAnnealing(T_0=20, T_mult=2)": [CosineAnnealing(T_0=20, T_mult=2)],
    },
    "cyclic": {
        "CyclicLR triangular": [CyclicLR(0.01, 0.1, step_size_up=25, cycle_momentum=False)],
        "CyclicLR triangular2": [CyclicLR(0.01, 0.1, step_size_up=25, mode="triangular2", cycle_momentum=False)],
    },
    "one_cycle": {"OneCycle(max_lr=0.1)": [OneCycle(0.1)]},
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, variants in FIGURES.items():
        show_momentum = name == "one_cycle"
        figure = new_figure(7, 5 if show_momentum else 3, what="docs/make_figures.py")
        axes = figure.subplots(2 if show_momentum else 1, 1, squeeze=False)
        for label, callbacks in variants.items():
            with TemporaryDirectory() as tmp:
                trainer = Trainer(
                    default_root_dir=tmp,
                    max_epochs=5,
                    limit_train_batches=40,
                    limit_val_batches=0,
                    logger=False,
                    enable_progress_bar=False,
                    enable_model_summary=False,
                    enable_checkpointing=False,
                    callbacks=callbacks,
                )
                preview = preview_schedule(trainer, Model())
            axes[0][0].plot(preview.columns["lr-SGD"], label=label)
            if show_momentum:
                axes[1][0].plot(preview.columns["lr-SGD-momentum"], label=label, color="tab:orange")
                axes[1][0].set_ylabel("momentum")
        axes[0][0].set_ylabel("learning rate")
        axes[-1][0].set_xlabel("optimizer step (40 per epoch)")
        axes[0][0].legend(fontsize="small")
        for row in axes:
            row[0].grid(alpha=0.3)
        figure.tight_layout()
        save_png(render_rgb(figure, dpi=90), OUT / f"{name}.png")
        print(f"wrote {OUT / name}.png")


if __name__ == "__main__":
    main()
