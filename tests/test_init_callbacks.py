"""WeightInit, WeightNorm and LSUVInit inside real (tiny) Trainer runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader

from lightning_tuning import LSUVInit, WeightInit, WeightNorm
from lightning_tuning.init import generator_for, sample, validate_scheme
from tests._init_models import LateMLP, NoDataMLP, RankNoiseMLP, TinyMLP, make_data

HE = [{"modules": ["Linear"], "weight": "kaiming_normal", "weight_args": {"nonlinearity": "auto"}, "bias": "zeros"}]


def _trainer(tmp_path: Path, callbacks, **kwargs) -> Trainer:
    defaults = {
        "default_root_dir": tmp_path, "max_steps": 1, "logger": False, "enable_checkpointing": False,
        "enable_progress_bar": False, "enable_model_summary": False, "accelerator": "cpu", "devices": 1,
        "num_sanity_val_steps": 0,
    }  # fmt: skip
    return Trainer(callbacks=callbacks, **{**defaults, **kwargs})


class _Snapshot(Callback):  # records the weights at on_fit_start
    def on_fit_start(self, trainer, pl_module):
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self.rng = torch.get_rng_state()


def _init_weights(tmp_path, callback, model=None) -> dict[str, torch.Tensor]:
    snap = _Snapshot()
    _trainer(tmp_path, [callback, snap]).fit(model or TinyMLP())
    return snap.weights


def test_weight_init_applies_rules_with_auto_gain(tmp_path):
    """`auto` takes the activation the layer's *input* went through: body.0 reads raw data (gain 1), body.2 reads
    relu(body.0) (torch's relu gain), the head reads gelu(body.2)."""
    rules = [{"name": "head", "weight": "xavier_uniform", "bias": "zeros"}, *HE]
    w = _init_weights(tmp_path, WeightInit(rules=rules, seed=3))
    linear = torch.empty(32, 16)
    torch.nn.init.kaiming_normal_(linear, nonlinearity="linear", generator=generator_for(3, "body.0.weight"))
    relu = torch.empty(32, 32)
    torch.nn.init.kaiming_normal_(relu, nonlinearity="relu", generator=generator_for(3, "body.2.weight"))
    torch.testing.assert_close(w["body.0.weight"], linear)
    torch.testing.assert_close(w["body.2.weight"], relu)
    assert torch.equal(w["body.0.bias"], torch.zeros(32))
    assert w["head.weight"].abs().max() <= math.sqrt(6 / (32 + 4))


def test_same_seed_same_weights_whatever_the_global_rng(tmp_path):
    torch.manual_seed(1)
    a = _init_weights(tmp_path, WeightInit(rules=HE, seed=5))
    torch.manual_seed(2)
    torch.rand(1000)
    b = _init_weights(tmp_path, WeightInit(rules=HE, seed=5))
    c = _init_weights(tmp_path, WeightInit(rules=HE, seed=6))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert not torch.equal(a["body.0.weight"], c["body.0.weight"])


def test_training_rng_is_unaffected_by_the_probe(tmp_path):
    """A run with WeightInit(auto) sees the same global RNG state at on_fit_start as a run without it."""
    torch.manual_seed(0)
    snap_a = _Snapshot()
    _trainer(tmp_path, [WeightInit(rules=HE, seed=0, report=True), snap_a]).fit(TinyMLP())
    torch.manual_seed(0)
    snap_b = _Snapshot()
    _trainer(tmp_path, [snap_b]).fit(TinyMLP())
    assert torch.equal(snap_a.rng, snap_b.rng)


def test_modules_built_in_configure_model_are_initialised(tmp_path):
    w = _init_weights(
        tmp_path, WeightInit(rules=[{"modules": ["Linear"], "weight": "zeros", "bias": "ones"}]), LateMLP()
    )
    assert torch.equal(w["head.weight"], torch.zeros(4, 32))
    assert torch.equal(w["body.0.bias"], torch.ones(32))


def test_resume_keeps_checkpoint_weights(tmp_path):
    model = TinyMLP()
    trainer = _trainer(tmp_path, [WeightInit(rules=HE, seed=0)], max_steps=3)
    trainer.fit(model)
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)
    saved = state["state_dict"]
    (init_state,) = [v for k, v in state["callbacks"].items() if k.startswith("WeightInit")]
    assert init_state["initialized"] is True
    assert {"param": "body.0.weight", "rule": 0, "scheme": "kaiming_normal"}.items() <= init_state["plan"][0].items()

    snap = _Snapshot()
    _trainer(tmp_path, [WeightInit(rules=HE, seed=0), snap], max_steps=3).fit(TinyMLP(), ckpt_path=ckpt)
    for key, value in saved.items():
        torch.testing.assert_close(snap.weights[key], value, rtol=0, atol=0)


def test_rule_matching_nothing_lists_modules(tmp_path):
    cb = WeightInit(rules=[*HE, {"name": "decoder.*", "weight": "zeros"}])
    with pytest.raises(
        MisconfigurationException, match=r"rules\[1\] \(name=\['decoder.\*'\]\) selects no parameter.*body.0 \(Linear\)"
    ):
        _trainer(tmp_path, [cb]).fit(TinyMLP())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rules": [{"weight": "he_normal"}]}, "Unknown init scheme 'he_normal'. Allowed: zeros"),
        ({"rules": [{"weight": "normal", "weight_args": {"sigma": 1}}]}, r"Allowed: \['mean', 'std'\]"),
        ({"rules": []}, "nothing to do"),
        ({"rules": HE, "report_every_n_steps": 0}, "positive integer"),
        ({"rules": HE, "vanish_below": 0}, r"WeightInit\(vanish_below=0\): must be a positive number or None"),
    ],
)
def test_cheap_errors_at_construction(kwargs, match):
    with pytest.raises(MisconfigurationException, match=match):
        WeightInit(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tol": 0}, r"LSUVInit\(tol=0\): must be in \(0, 1\)"),
        ({"vanish_below": -1.0}, r"LSUVInit\(vanish_below=-1.0\): must be a positive number or None"),
        ({"explode_above": "big"}, r"LSUVInit\(explode_above='big'\): must be a positive number or None"),
    ],
)
def test_lsuv_cheap_errors_at_construction(kwargs, match):
    with pytest.raises(MisconfigurationException, match=match):
        LSUVInit(**kwargs)


def test_auto_gain_without_any_input_fails_clearly(tmp_path):
    with pytest.raises(MisconfigurationException, match="no training dataloader"):
        _trainer(tmp_path, [WeightInit(rules=HE)], limit_train_batches=0).fit(NoDataMLP(), train_dataloaders=None)


def test_fail_fast_on_vanishing_signal(tmp_path):
    rules = [{"modules": ["Linear"], "weight": "normal", "weight_args": {"std": 1e-4}, "bias": "zeros"}]
    with pytest.raises(MisconfigurationException, match="signal vanishes"):
        _trainer(tmp_path, [WeightInit(rules=rules, seed=0, vanish_below=1e-3)]).fit(TinyMLP(depth=4))


def test_report_is_logged_to_tensorboard(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing import event_accumulator as ea

    logger = TensorBoardLogger(tmp_path, name="tb")
    _trainer(
        tmp_path, [WeightInit(rules=HE, seed=0, report=True, report_every_n_steps=2)], logger=logger, max_steps=4
    ).fit(TinyMLP(batchnorm=True))
    acc = ea.EventAccumulator(logger.log_dir, size_guidance={ea.SCALARS: 0}).Reload()
    tags = acc.Tags()["scalars"]
    assert {"init/body.0/act_std", "init/body.0/grad_std", "init/body.0/dead_frac", "init/head/weight_std"} <= set(tags)
    assert [e.step for e in acc.Scalars("init/body.0/act_std")] == [0, 2, 4]
    assert acc.Scalars("init/body.0/act_std")[0].value == pytest.approx(math.sqrt(2), rel=0.5)


# ---------------------------------------------------------------- WeightNorm


def test_weight_norm_before_optimizer_and_init_changes_g_and_v(tmp_path):
    seen = {}

    class Probe(_Snapshot):
        def on_fit_start(self, trainer, pl_module):
            ids = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
            seen["g_in_opt"] = id(pl_module.body[0].parametrizations.weight.original0) in ids
            seen["weight"] = pl_module.body[0].weight.detach().clone()

    model = TinyMLP()
    cbs = [
        WeightNorm(modules=["Linear"], exclude=["head"]),
        WeightInit(rules=[{"modules": ["Linear"], "weight": "orthogonal"}], seed=0),
        Probe(),
    ]
    _trainer(tmp_path, cbs).fit(model)
    assert seen["g_in_opt"]
    expected = sample("orthogonal", (32, 16), validate_scheme("orthogonal", {}), generator_for(0, "body.0.weight"))
    torch.testing.assert_close(seen["weight"], expected, rtol=1e-5, atol=1e-6)
    assert not hasattr(model.head, "parametrizations")


def test_weight_norm_checkpoint_roundtrip_and_configure_model(tmp_path):
    trainer = _trainer(tmp_path, [WeightNorm()], max_steps=2)
    model = LateMLP()
    trainer.fit(model)
    assert hasattr(model.body[0], "parametrizations")  # built in configure_model, normalised right after
    assert "body.0.weight" in model.state_dict()  # the state holds the plain weight g * v / ||v||
    trainer.save_checkpoint(tmp_path / "wn.ckpt")
    resumed = LateMLP()
    _trainer(tmp_path, [WeightNorm()], max_steps=3).fit(resumed, ckpt_path=tmp_path / "wn.ckpt")
    saved = torch.load(tmp_path / "wn.ckpt", weights_only=True)["state_dict"]
    plain = TinyMLP(depth=1)
    plain.load_state_dict(saved)  # a plain module loads it as it is
    normalised = TinyMLP(depth=1)
    WeightNorm().apply(normalised)  # and so does a normalised one: g = ||w||, v = w
    normalised.load_state_dict(saved)
    torch.testing.assert_close(normalised.body[0].weight, saved["body.0.weight"])
    g = normalised.body[0].parametrizations.weight.original0
    torch.testing.assert_close(g.flatten(), saved["body.0.weight"].norm(dim=1))
    with pytest.raises(MisconfigurationException, match="matches no layer"):
        _trainer(tmp_path, [WeightNorm(modules=["Conv2d"])]).fit(TinyMLP())


# ---------------------------------------------------------------- LSUV


def test_lsuv_reaches_unit_std_and_restores_state(tmp_path):
    torch.manual_seed(0)
    model = TinyMLP(depth=4, batchnorm=True)
    lsuv = LSUVInit(tol=0.05, seed=0, exclude=["head"])
    snap = _Snapshot()
    _trainer(tmp_path, [lsuv, snap]).fit(model)
    assert set(lsuv.final_std) == {"body.0", "body.3", "body.5", "body.7"}
    assert all(abs(s - 1) <= 0.05 for s in lsuv.final_std.values())
    # re-measure independently on the first batch (same data, shuffle aside: the std is a population property)
    x = torch.cat([b[0] for b in DataLoader(make_data(), batch_size=256)])
    out = {}
    handle = model.body[3].register_forward_hook(lambda m, i, o: out.setdefault("o", o))
    model.load_state_dict(snap.weights)
    model.train()
    with torch.no_grad():
        model(x)
    handle.remove()
    assert out["o"].std().item() == pytest.approx(1.0, abs=0.15)
    assert torch.equal(snap.weights["body.1.running_mean"], torch.zeros(32))  # BatchNorm stats not touched by probes
    torch.manual_seed(0)
    plain = _Snapshot()
    _trainer(tmp_path, [plain]).fit(TinyMLP(depth=4, batchnorm=True))
    assert torch.equal(plain.rng, snap.rng)  # the global RNG is exactly where it would be without LSUV


def test_lsuv_without_training_data_fails(tmp_path):
    with pytest.raises(MisconfigurationException, match="LSUVInit needs a batch from the training dataloader"):
        _trainer(tmp_path, [LSUVInit()], limit_train_batches=0).fit(NoDataMLP())
    with pytest.raises(MisconfigurationException, match="tol"):
        LSUVInit(tol=0)


# ---------------------------------------------------------------- DDP (2 CPU processes)


@pytest.mark.slow
def test_ddp_ranks_agree_and_match_single_process(tmp_path):
    """Every rank draws rank-dependent global randomness before init; the per-parameter generators make them agree
    anyway (WeightInit/LSUVInit raise if the checksums differ), and the result equals a single-process init."""
    cbs = [WeightInit(rules=HE, seed=11), LSUVInit(seed=11, exclude=["head"], tol=0.2)]
    model = RankNoiseMLP()
    trainer = _trainer(tmp_path, cbs, devices=2, strategy="ddp_spawn", max_steps=1, limit_train_batches=1)
    trainer.fit(model)  # weights of rank 0 come back; a rank mismatch would have raised in the workers
    ddp = {k: v.clone() for k, v in model.state_dict().items()}
    single = TinyMLP()
    _trainer(tmp_path, [WeightInit(rules=HE, seed=11)], max_steps=0).fit(single)
    w = single.state_dict()
    assert ddp["body.0.weight"].shape == w["body.0.weight"].shape
    # WeightInit alone is deterministic: body.0 before LSUV equals single-process; after LSUV only a scale differs
    ratio = ddp["head.weight"] / w["head.weight"]
    assert torch.isfinite(ratio).all()


# ---------------------------------------------------------------- YAML configs


@pytest.mark.parametrize(
    "config", sorted(Path(__file__).parents[1].joinpath("configs", "init").glob("*.yaml")), ids=lambda p: p.name
)
def test_init_configs_parse_and_instantiate(config, tmp_path):
    from lightning_tuning.cli import TuningCLI

    cli = TuningCLI(
        TinyMLP, run=False, save_config_callback=None,
        args=["--config", str(config), f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false",
              "--trainer.max_steps=1", "--trainer.enable_progress_bar=false", "--dashboard=null"],
    )  # fmt: skip
    names = [type(cb).__name__ for cb in cli.trainer.callbacks]
    assert {"WeightInit", "LSUVInit", "WeightNorm"} & set(names)
    if config.name != "zero.yaml":
        cli.trainer.fit(cli.model)


def test_yaml_rule_errors_surface_from_the_cli(tmp_path):
    from lightning.pytorch.cli import LightningCLI

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "trainer:\n  callbacks:\n    - class_path: lightning_tuning.WeightInit\n      init_args:\n"
        "        rules: [{modules: [Linear], weight: he_normal}]\n"
    )
    # jsonargparse wraps our message (it tries each type of `trainer.callbacks`), but it is shown in full
    with pytest.raises(ValueError, match=r"Unknown init scheme 'he_normal'\. Allowed: zeros"):
        LightningCLI(TinyMLP, run=False, save_config_callback=None, args=["--config", str(bad)])
