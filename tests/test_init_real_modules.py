"""Weight init on the modules people really write (issue 14): a manual-optimization GAN with ``training_step(batch)``,
Lightning's own ``LightningTransformer``, autoencoders whose output layer is ``decoder.2``, minGPT-style parameter
grouping by name, weight-norm checkpoints, all-or-nothing init, and the report."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest
import torch
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.demos import LightningTransformer
from torch import nn
from torch.utils.data import DataLoader

from lightning_tuning import LSUVInit, WeightInit, WeightNorm
from lightning_tuning.init import generator_for
from tests._init_models import FullAutoEncoder, LitAutoEncoder, MiniGPT, TinyGAN, token_data

CONFIGS = Path(__file__).parents[1] / "configs" / "init"


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are small: one intra-op thread avoids oversubscribing a shared CPU (seconds, not minutes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _callbacks(config: str) -> list[Callback]:
    """The callbacks of a shipped init config, built from the YAML exactly as written."""
    raw = yaml.safe_load((CONFIGS / config).read_text())
    out = []
    for item in raw["init"]:
        module, _, name = item["class_path"].rpartition(".")
        out.append(getattr(importlib.import_module(module), name)(**item.get("init_args", {})))
    return out


class _Snapshot(Callback):
    def on_fit_start(self, trainer, pl_module):
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def _fit(tmp_path, model, callbacks, steps=1, **kwargs):
    snap = _Snapshot()
    trainer = Trainer(
        default_root_dir=tmp_path, max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
        num_sanity_val_steps=0, callbacks=[*callbacks, snap], **kwargs,
    )  # fmt: skip
    trainer.fit(model)
    return snap.weights, trainer


def _kaiming(shape, name, seed=0, **kwargs) -> torch.Tensor:
    """torch.nn.init's own kaiming_normal_ drawn from the per-parameter generator: the independent reference."""
    t = torch.empty(shape)
    return torch.nn.init.kaiming_normal_(t, generator=generator_for(seed, name), **kwargs)


# ---------------------------------------------------------------- GAN: manual optimization, training_step(batch)


def test_gan_he_traces_forward_without_running_training_step(tmp_path):
    model = TinyGAN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    w, _ = _fit(tmp_path, model, _callbacks("he.yaml"), steps=2)
    # two optimizer steps = one batch: the probe never called training_step (manual_backward, opt.step, logging)
    assert model.steps_run == 1
    # generator (traced through forward = generator): gain of the activation each layer's input went through
    torch.testing.assert_close(w["generator.0.weight"], _kaiming((32, 16), "generator.0.weight", nonlinearity="linear"))
    torch.testing.assert_close(
        w["generator.3.weight"], _kaiming((64, 32), "generator.3.weight", a=0.2, nonlinearity="leaky_relu")
    )
    # the output layer, found from the traced graph (tanh looked through), keeps its weights
    assert torch.equal(w["generator.5.weight"], before["generator.5.weight"])
    # the discriminator is never called by forward: its nn.Sequential states the activations
    torch.testing.assert_close(
        w["discriminator.0.weight"], _kaiming((32, 64), "discriminator.0.weight", nonlinearity="linear")
    )
    torch.testing.assert_close(
        w["discriminator.2.weight"], _kaiming((1, 32), "discriminator.2.weight", a=0.2, nonlinearity="leaky_relu")
    )


def test_gan_lsuv_rescales_the_generator_on_noise(tmp_path):
    model = TinyGAN()
    (lsuv,) = _callbacks("lsuv.yaml")
    with pytest.warns(UserWarning, match=r"not reached by `forward\(example_input_array\)`.*discriminator.0"):
        w, _ = _fit(tmp_path, model, [lsuv], steps=2)
    assert model.steps_run == 1
    assert lsuv.output_layers == ["generator.5"]
    assert set(lsuv.final_std) == {"generator.0", "generator.3"}
    # independent re-measurement: the constant example_input_array is replaced by N(0, 1) noise (seed 0)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    first = torch.nn.functional.linear(z, w["generator.0.weight"], w["generator.0.bias"])
    assert first.std(unbiased=False).item() == pytest.approx(1.0, abs=0.1)


def test_gan_weight_norm_config_trains_with_both_optimizers(tmp_path):
    model = TinyGAN()
    seen = {}

    class Check(Callback):
        def on_train_start(self, trainer, pl_module):
            _opt_g, opt_d = trainer.optimizers
            ids_d = {id(p) for g in opt_d.param_groups for p in g["params"]}
            plist = pl_module.discriminator[0].parametrizations.weight
            seen["d_has_g_v"] = {id(plist.original0), id(plist.original1)} <= ids_d
            seen["out_plain"] = not hasattr(pl_module.generator[5], "parametrizations")

    _fit(tmp_path, model, [*_callbacks("weight_norm.yaml"), Check()], steps=2)
    assert seen == {"d_has_g_v": True, "out_plain": True}
    assert model.steps_run == 1


def test_forward_that_cannot_take_the_batch_says_what_was_tried(tmp_path):
    model = TinyGAN(example=False)
    with pytest.raises(MisconfigurationException) as err:
        _fit(tmp_path, model, [WeightInit(rules=[{"modules": ["linear"], "weight": "zeros"}], exclude_output=True)])
    message = str(err.value)
    assert "forward(batch[0])" in message
    assert "forward(*batch) with 2 arguments" in message
    assert "forward(batch[0].flatten(1))" in message
    assert "example_input_array" in message
    # `auto` gains alone do not need forward: they fall back to the structure, with a warning saying what was tried
    with pytest.warns(UserWarning, match="could not call the module's `forward`"):
        w, _ = _fit(tmp_path, TinyGAN(example=False), [WeightInit(rules=_he_rules(), seed=0)])
    torch.testing.assert_close(
        w["generator.3.weight"], _kaiming((64, 32), "generator.3.weight", a=0.2, nonlinearity="leaky_relu")
    )


def _he_rules():
    return [{"modules": ["linear"], "weight": "kaiming_normal", "weight_args": {"nonlinearity": "auto"}}]


class _DictBatchMLP(FullAutoEncoder):
    def training_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self(batch["image"]), batch["image"].flatten(1))

    def train_dataloader(self):
        images = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        return DataLoader([{"image": x, "label": 0} for x in images], batch_size=8)


def test_dict_batch_is_fed_by_its_input_key(tmp_path):
    cb = WeightInit(rules=_he_rules(), exclude_output=True, seed=0)
    w, _ = _fit(tmp_path, _DictBatchMLP(), [cb])
    assert cb.output_layers == ["decoder.2"]
    # decoder.2's input went through the ReLU after decoder.0
    torch.testing.assert_close(w["decoder.0.weight"], _kaiming((32, 3), "decoder.0.weight", nonlinearity="linear"))
    torch.testing.assert_close(w["encoder.2.weight"], _kaiming((3, 32), "encoder.2.weight", nonlinearity="relu"))


# ---------------------------------------------------------------- autoencoders: output layer decoder.2


@pytest.mark.parametrize("model_class", [LitAutoEncoder, FullAutoEncoder])
def test_autoencoder_output_layer_is_decoder_2(tmp_path, model_class):
    model = model_class()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (init,) = _callbacks("he.yaml")
    w, _ = _fit(tmp_path, model, [init])
    assert init.output_layers == ["decoder.2"]
    assert torch.equal(w["decoder.2.weight"], before["decoder.2.weight"])
    torch.testing.assert_close(w["decoder.0.weight"], _kaiming((32, 3), "decoder.0.weight", nonlinearity="linear"))
    torch.testing.assert_close(w["encoder.2.weight"], _kaiming((3, 32), "encoder.2.weight", nonlinearity="relu"))

    (lsuv,) = _callbacks("lsuv.yaml")
    model = model_class()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    w, _ = _fit(tmp_path, model, [lsuv])
    assert lsuv.output_layers == ["decoder.2"]
    assert torch.equal(w["decoder.2.weight"], before["decoder.2.weight"])
    assert set(lsuv.final_std) == {"encoder.0", "encoder.2", "decoder.0"}


# ---------------------------------------------------------------- Lightning's LightningTransformer


class SyntheticTransformer(LightningTransformer):
    """Lightning's demo transformer on synthetic tokens (no WikiText2 download)."""

    def __init__(self) -> None:
        super().__init__(vocab_size=50)

    def prepare_data(self) -> None:
        pass

    def train_dataloader(self):
        return DataLoader(token_data(vocab=50), batch_size=8)


OUT_PROJ = "model.transformer.encoder.layers.0.self_attn.out_proj"


@pytest.mark.parametrize("config", ["he.yaml", "lsuv.yaml", "weight_norm.yaml"])
def test_lightning_transformer_trains_with_the_shipped_configs(tmp_path, config):
    seed_everything(0)
    model = SyntheticTransformer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    callbacks = _callbacks(config)
    w, trainer = _fit(tmp_path, model, callbacks, steps=2)
    assert trainer.global_step == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    init = callbacks[-1]
    assert init.output_layers == ["model.decoder"]
    key = "model.decoder.weight"
    assert torch.equal(w[key], before[key])
    if config == "he.yaml":
        # out_proj is never called through forward: `auto` falls back to Linear's own default, U(+-1/sqrt(fan_in))
        expected = torch.empty(200, 200)
        torch.nn.init.kaiming_uniform_(expected, a=math.sqrt(5), generator=generator_for(0, f"{OUT_PROJ}.weight"))
        torch.testing.assert_close(w[f"{OUT_PROJ}.weight"], expected)
        assert "fell back to the layer's own default" in init.notes[OUT_PROJ]
        # linear2 reads relu(linear1(x)): torch's relu gain; linear1 reads a LayerNorm output: gain 1
        ff = "model.transformer.encoder.layers.1"
        torch.testing.assert_close(w[f"{ff}.linear2.weight"], _kaiming((200, 200), f"{ff}.linear2.weight"))
        torch.testing.assert_close(
            w[f"{ff}.linear1.weight"], _kaiming((200, 200), f"{ff}.linear1.weight", nonlinearity="linear")
        )
    if config == "weight_norm.yaml":
        assert "model.transformer.encoder.layers.0.linear1.weight" in model.state_dict()  # plain names saved
        assert hasattr(model.model.transformer.encoder.layers[0].linear1, "parametrizations")


# ---------------------------------------------------------------- weight-norm checkpoints and param names


def test_weight_norm_checkpoint_loads_with_the_modules_own_loader(tmp_path):
    seed_everything(0)
    model = LitAutoEncoder()
    _, trainer = _fit(tmp_path, model, _callbacks("weight_norm.yaml"), steps=2)
    trainer.save_checkpoint(tmp_path / "wn.ckpt")
    loaded = LitAutoEncoder.load_from_checkpoint(tmp_path / "wn.ckpt")  # no WeightNorm, no Trainer
    assert not hasattr(loaded.encoder[0], "parametrizations")
    x = torch.rand(5, 64)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.decoder(loaded.encoder(x)), model.decoder(model.encoder(x)))
    # the effective weight w = g v / ||v|| is what the checkpoint holds
    layer = model.encoder[0]
    plist = layer.parametrizations.weight
    norm = plist.original1.detach().norm(dim=1, keepdim=True)
    torch.testing.assert_close(loaded.encoder[0].weight, plist.original0.detach() * plist.original1.detach() / norm)


def test_weight_norm_resume_with_ckpt_path_restores_g_and_v_exactly(tmp_path):
    """The checkpoint's state_dict holds the plain weight; `fit(ckpt_path=...)` puts back the exact g and v (and the
    optimizer state that goes with them), not merely g = ||w||, v = w."""

    def run(ckpt=None, save=None):
        seed_everything(0)
        model = LitAutoEncoder()
        trainer = Trainer(
            default_root_dir=tmp_path, max_steps=3, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
            callbacks=_callbacks("weight_norm.yaml"),
        )  # fmt: skip
        trainer.fit(model, ckpt_path=ckpt)  # resumed at step 3 of 3: restores, trains no further
        if save:
            trainer.save_checkpoint(save)
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        return params, trainer.optimizers[0].state_dict()

    saved, saved_opt = run(save=tmp_path / "wn.ckpt")
    state = torch.load(tmp_path / "wn.ckpt", weights_only=True)
    assert not any("parametrizations" in k for k in state["state_dict"])
    resumed, resumed_opt = run(ckpt=tmp_path / "wn.ckpt")
    v = "encoder.0.parametrizations.weight.original1"
    assert v in saved
    assert not torch.allclose(saved[v].norm(dim=1), saved["encoder.0.parametrizations.weight.original0"])
    for key in saved:
        assert torch.equal(saved[key], resumed[key]), key
    for index, param_state in saved_opt["state"].items():
        assert torch.equal(param_state["exp_avg"], resumed_opt["state"][index]["exp_avg"])


def test_min_gpt_param_grouping_by_name_keeps_working(tmp_path):
    model = MiniGPT()
    seen = {}

    class Check(Callback):
        def on_train_start(self, trainer, pl_module):
            decay, no_decay = trainer.optimizers[0].param_groups
            plist = pl_module.mlp[0].parametrizations.weight
            seen["g_v_decay"] = {id(plist.original0), id(plist.original1)} <= {id(p) for p in decay["params"]}
            seen["decay"] = decay["weight_decay"]
            seen["count"] = sum(len(g["params"]) for g in (decay, no_decay))

    _fit(tmp_path, model, [*_callbacks("weight_norm.yaml"), Check()], steps=1)
    # every parameter is in exactly one group; mlp.0 and mlp.2 are normalised (head is the output layer)
    assert seen == {"g_v_decay": True, "decay": 0.1, "count": len(list(model.parameters()))}
    assert not hasattr(model.head, "parametrizations")


# ---------------------------------------------------------------- all-or-nothing, report, strategies


def test_init_is_all_or_nothing(tmp_path):
    model = LitAutoEncoder()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rules = [{"modules": ["linear"], "weight": "zeros", "bias": "xavier_uniform"}]  # a bias has no fan: refused
    with pytest.raises(MisconfigurationException, match=r"Cannot initialise 'encoder.0.bias' \(rule 0\): Fan in"):
        _fit(tmp_path, model, [WeightInit(rules=rules)])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_report_names_attention_rows_and_root_parameters():
    from lightning_tuning.callbacks._init_report import measure
    from lightning_tuning.init.report import format_table

    model = MiniGPT()
    batch = next(iter(DataLoader(token_data(), batch_size=4)))
    stats = measure(model, batch, None)
    rows = {s.layer: s for s in stats}
    assert "pos_emb" in rows
    assert not math.isnan(rows["pos_emb"].weight_std)
    assert not math.isnan(rows["attn"].act_std)  # MultiheadAttention's (output, weights) tuple
    table = format_table(stats)
    assert "nan" not in table
    long = SyntheticTransformer()
    tokens = next(iter(long.train_dataloader()))
    table = format_table(measure(long, tokens, None))
    assert "model.transformer.decoder.layers.1.multihead_attn.out_proj" in table  # never cut
    assert "nan" not in table


def test_deepspeed_is_refused_before_anything_is_written():
    from lightning_tuning.callbacks._init_probe import refuse_unsupported_strategy

    class DeepSpeedStrategy:  # stands in for lightning's (deepspeed is not installed here)
        pass

    class FakeTrainer:
        strategy = DeepSpeedStrategy()

    with pytest.raises(MisconfigurationException, match=r"WeightInit does not support DeepSpeed"):
        refuse_unsupported_strategy(FakeTrainer(), "WeightInit")  # type: ignore[arg-type]


def test_lsuv_and_weight_norm_accept_only_booleans_for_exclude_output():
    for callback in (WeightInit, LSUVInit, WeightNorm):
        kwargs = {"rules": _he_rules()} if callback is WeightInit else {}
        with pytest.raises(MisconfigurationException, match=r"exclude_output='yes'\): must be true or false"):
            callback(exclude_output="yes", **kwargs)


def test_probe_restores_modes_and_buffers():
    from lightning_tuning.callbacks._init_probe import probe_guard, run_probe

    model = TinyGAN()
    model.eval()
    model.generator[1].train()
    stats = model.generator[1].running_mean.clone()
    with probe_guard(model):
        probe = run_probe(model, None, torch.randn(4, 16))
    assert probe.forward is not None
    assert probe.forward[0] == "forward(example_input_array)"
    assert model.generator[1].training
    assert not model.generator[0].training
    assert not model.training
    assert torch.equal(model.generator[1].running_mean, stats)
    assert isinstance(model.generator[1], nn.BatchNorm1d)


def test_report_figure_and_table_go_to_tensorboard(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing import event_accumulator as ea

    model = FullAutoEncoder()
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = Trainer(
        default_root_dir=tmp_path, max_steps=2, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", devices=1,
        callbacks=[WeightInit(rules=_he_rules(), seed=0, report=True, report_every_n_steps=2)],
    )  # fmt: skip
    snap = _Snapshot()
    trainer.callbacks.append(snap)
    trainer.fit(model)
    acc = ea.EventAccumulator(logger.log_dir, size_guidance={ea.IMAGES: 0, ea.TENSORS: 0}).Reload()
    images = acc.Images("init/layers")
    assert [image.step for image in images] == [0, 2]
    assert images[0].width > 400
    assert images[0].height > 300
    (text,) = [t for t in acc.Tensors("init/table/text_summary") if t.step == 0]
    table = text.tensor_proto.string_val[0].decode()
    # the weight std in the table is the one of the weights the run started from, computed here
    expected = snap.weights["decoder.0.weight"].std().item()
    assert f"| decoder.0 | Linear | relu | {expected:.3g} |" in table
