"""Deep plain ReLU MLPs on MNIST-1D under different inits, through the real callbacks.

For depths 10/20/30 and inits {default, xavier, kaiming, orthogonal, lsuv}, over several seeds: the per-layer output
std at init (first/middle/last hidden layer), the first-layer gradient std at init, and test accuracy after a fixed
budget of SGD steps. Prints a markdown table and writes ``benchmarks/results/init_depth.md`` and ``.json``.

Run: ``python benchmarks/init_depth.py [--steps 300 --seeds 3 --width 128]`` (about 6 minutes on 2 CPU cores).

``python benchmarks/init_depth.py --activations`` measures instead the gain rule of ``nonlinearity: auto`` on a
20-layer MLP of width 256 for GELU, SiLU, Tanh, ReLU and LeakyReLU with N(0, 1) input: the std of every layer's output
relative to the input's, with the activation's gain on the first layer (the rule before issue 14) and without it (the
current rule), over 10 seeds; writes ``benchmarks/results/init_activations.md`` (seconds).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from _common import machine_header, quiet, quiet_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_tuning import LSUVInit, WeightInit
from lightning_tuning.callbacks._init_report import measure

INITS = {
    "default": None,
    "xavier": [{"modules": ["Linear"], "weight": "xavier_uniform", "bias": "zeros"}],
    "kaiming": [
        {"modules": ["Linear"], "weight": "kaiming_normal", "weight_args": {"nonlinearity": "auto"}, "bias": "zeros"}
    ],
    "orthogonal": [{"modules": ["Linear"], "weight": "orthogonal", "weight_args": {"gain": "auto"}, "bias": "zeros"}],
    "lsuv": "lsuv",
}


class DeepMLP(pl.LightningModule):
    def __init__(self, depth: int, width: int, data: dict, lr: float = 0.01) -> None:
        super().__init__()
        sizes = [40] + [width] * (depth - 1)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.head = nn.Linear(width, 10)
        self.data = data
        self.lr = lr

    def forward(self, x):
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.head(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.data["x"], self.data["y"]), batch_size=128, shuffle=True, drop_last=True)


class AtInit(pl.Callback):
    """Measures the model right after the init callbacks (it is listed after them)."""

    def on_fit_start(self, trainer, pl_module):
        batch = next(iter(DataLoader(TensorDataset(pl_module.data["x"], pl_module.data["y"]), batch_size=512)))
        self.stats = measure(pl_module, batch, None)


def load_data() -> dict:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 8000
    d = make_dataset(args)
    as_t = lambda a, dt: torch.as_tensor(a, dtype=dt)  # noqa: E731
    return {"x": as_t(d["x"], torch.float32), "y": as_t(d["y"], torch.long),
            "x_test": as_t(d["x_test"], torch.float32), "y_test": as_t(d["y_test"], torch.long)}  # fmt: skip


def run(depth: int, init: str, seed: int, data: dict, steps: int, width: int) -> dict:
    pl.seed_everything(seed, verbose=False)
    model = DeepMLP(depth, width, data)
    callbacks: list[pl.Callback] = []
    if init == "lsuv":
        callbacks.append(LSUVInit(seed=seed, exclude=["head"], tol=0.1))
    elif INITS[init] is not None:
        callbacks.append(WeightInit(rules=INITS[init], seed=seed))
    probe = AtInit()
    trainer = quiet_trainer(max_steps=steps, callbacks=[*callbacks, probe], logger=False)
    trainer.fit(model)
    with torch.no_grad():
        acc = (model(data["x_test"]).argmax(1) == data["y_test"]).float().mean().item()
    hidden = [s for s in probe.stats if s.layer.startswith("hidden")]
    return {
        "depth": depth, "init": init, "seed": seed, "acc": acc,
        "std_first": hidden[0].act_std, "std_mid": hidden[len(hidden) // 2].act_std, "std_last": hidden[-1].act_std,
        "grad_first": hidden[0].grad_std, "dead_last": hidden[-1].dead_frac,
    }  # fmt: skip


ACTIVATIONS = {
    "GELU": nn.GELU,
    "SiLU": nn.SiLU,
    "Tanh": nn.Tanh,
    "ReLU": nn.ReLU,
    "LeakyReLU(0.01)": lambda: nn.LeakyReLU(0.01),
}


def activation_depth(activation: str, seed: int, rule: str, depth: int = 20, width: int = 256) -> list[float]:
    """Layer output std / input std for a ``[Linear(width, width), act] * depth`` net under He with ``auto`` gains."""
    from lightning_tuning.init import apply_plan, build_plan, parse_rules, trace_activations
    from lightning_tuning.init.signal import correct_drift, drift_checked

    rules = parse_rules(
        [{"modules": ["linear"], "weight": "kaiming_normal", "weight_args": {"nonlinearity": "auto"}, "bias": "zeros"}]
    )
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), ACTIVATIONS[activation]()]
    net = nn.Sequential(*layers)
    x = torch.randn(1024, width, generator=torch.Generator().manual_seed(1000 + seed))
    names = [str(2 * i) for i in range(depth)]
    with torch.no_grad():
        trace = trace_activations(net, names, lambda: net(x))
    gains = trace.activation if rule == "following" else trace.input_activation
    apply_plan(net, build_plan(net, rules).entries, seed, gains)
    if rule == "kept":  # WeightInit's keep_signal: drift corrected on the probe batch (not the measured one)
        probe = torch.randn(256, width, generator=torch.Generator().manual_seed(2000 + seed))
        correct_drift(net, drift_checked(names, trace.input_activation), trace.input_source, lambda: net(probe))
    stds: list[float] = []
    hooks = [net[int(n)].register_forward_hook(lambda _m, _i, out: stds.append(out.std().item())) for n in names]
    with torch.no_grad():
        net(x)
    for hook in hooks:
        hook.remove()
    return [s / x.std().item() for s in stds]


def activations_table(seeds: int = 10) -> str:
    lines = [
        machine_header(),
        "",
        f"20 x [Linear(256, 256), activation], kaiming_normal with `nonlinearity: auto`, biases 0, input N(0, 1) of"
        f" 1024 x 256, {seeds} seeds. Layer output std / input std: layer 1, layer 20 (median over seeds), and the"
        " lowest and highest value of any layer over all seeds.",
        "",
        "| activation | gain rule | layer 1 | layer 20 (median) | min any layer | max any layer |",
        "|---|---|---|---|---|---|",
    ]
    for activation in ACTIVATIONS:
        for rule, label in (
            ("following", "gain on every layer (before issue 14)"),
            ("input", "input's activation, `keep_signal: false`"),
            ("kept", "input's activation + drift kept within 1.5x (default)"),
        ):
            runs = [activation_depth(activation, seed, rule) for seed in range(seeds)]
            lines.append(
                f"| {activation} | {label} | {statistics.median(r[0] for r in runs):.2f}"
                f" | {statistics.median(r[-1] for r in runs):.2f} | {min(min(r) for r in runs):.2f}"
                f" | {max(max(r) for r in runs):.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    if "--activations" in sys.argv:
        torch.set_num_threads(1)
        table = activations_table()
        print(table)
        out = Path(__file__).parent / "results" / "init_activations.md"
        out.write_text(table + "\n")
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depths", type=int, nargs="+", default=[10, 20, 30])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "init_depth")
    args = parser.parse_args()
    quiet()
    torch.set_num_threads(2)
    # vanishing inits produce denormal floats, which are ~100x slower on CPU; flushing them to 0 changes no result
    torch.set_flush_denormal(True)
    data = load_data()
    rows, start = [], time.time()
    for depth in args.depths:
        for init in INITS:
            for seed in range(args.seeds):
                rows.append(run(depth, init, seed, data, args.steps, args.width))
            print(f"depth {depth} {init}: done ({time.time() - start:.0f}s)", flush=True)
    lines = [
        machine_header(),
        "",
        f"MNIST-1D (8000 samples, 40 features), plain ReLU MLP width {args.width}, SGD(lr=0.01, momentum=0.9),"
        f" batch 128, {args.steps} steps, {args.seeds} seeds (median; accuracy also min-max). Chance = 0.10.",
        "",
        "| depth | init | out std L1 | out std mid | out std last | grad std L1 | dead ReLU last | test acc (min-max) |",  # noqa: E501
        "|---|---|---|---|---|---|---|---|",
    ]
    for depth in args.depths:
        for init in INITS:
            group = [r for r in rows if r["depth"] == depth and r["init"] == init]
            med = {k: statistics.median(r[k] for r in group) for k in group[0] if k not in ("depth", "init", "seed")}
            accs = [r["acc"] for r in group]
            lines.append(
                f"| {depth} | {init} | {med['std_first']:.3g} | {med['std_mid']:.3g} | {med['std_last']:.3g}"
                f" | {med['grad_first']:.2g} | {med['dead_last']:.0%} | {med['acc']:.3f}"
                f" ({min(accs):.3f}-{max(accs):.3f}) |"
            )
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(table + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
