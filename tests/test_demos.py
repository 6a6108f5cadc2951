"""Demo data and models: shapes, held-out splits, caching, determinism, and that each one learns."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer, seed_everything
from torch import nn

from lightning_tuning.demos import (
    MNIST1DMLP,
    CharLMDataModule,
    CharTransformer,
    DigitsConvNet,
    DigitsDataModule,
    MNIST1DConvNet,
    MNIST1DDataModule,
    mnist1d_data,
)
from lightning_tuning.demos.cache import CACHE_DIR_ENV_VAR, resolve_cache_dir
from lightning_tuning.demos.char_lm import VOCABULARY, decode, encode, load_corpus
from tests.lr_helpers import quiet_trainer


def rows(dataset: torch.utils.data.TensorDataset) -> set[bytes]:
    return {row.numpy().tobytes() for row in dataset.tensors[0]}


def setup_all(datamodule: LightningDataModule) -> LightningDataModule:
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


# --- MNIST-1D data ---------------------------------------------------------------------------------------------


def test_mnist1d_shapes_and_split_sizes(tmp_path: Path) -> None:
    dm = setup_all(
        MNIST1DDataModule(num_samples=300, train_split=0.8, val_fraction=0.25, batch_size=16, cache_dir=tmp_path)
    )

    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (180, 60, 60)
    signals, labels = next(iter(dm.train_dataloader()))
    assert signals.shape == (16, 40)
    assert signals.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert set(labels.tolist()) <= set(range(10))


def test_mnist1d_splits_are_disjoint(tmp_path: Path) -> None:
    dm = setup_all(MNIST1DDataModule(num_samples=300, cache_dir=tmp_path))

    train, val, test = rows(dm.train_set), rows(dm.val_set), rows(dm.test_set)
    assert len(train) == len(dm.train_set)  # no duplicate signals that could hide an overlap
    assert not train & val
    assert not train & test
    assert not val & test


def test_mnist1d_cache_is_written_then_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dm = MNIST1DDataModule(num_samples=100, cache_dir=tmp_path)
    assert not dm.cache_path.exists()
    dm.prepare_data()
    assert dm.cache_path.is_file()
    assert dm.cache_path.is_relative_to(tmp_path)

    def no_generation(*args: object) -> None:
        raise AssertionError("the cached arrays should have been reused")

    monkeypatch.setattr(mnist1d_data, "generate_mnist1d", no_generation)
    setup_all(MNIST1DDataModule(num_samples=100, cache_dir=tmp_path))


def test_mnist1d_cache_key_covers_generation_arguments(tmp_path: Path) -> None:
    paths = {
        MNIST1DDataModule(num_samples=100, cache_dir=tmp_path).cache_path,
        MNIST1DDataModule(num_samples=200, cache_dir=tmp_path).cache_path,
        MNIST1DDataModule(num_samples=100, seed=1, cache_dir=tmp_path).cache_path,
        MNIST1DDataModule(num_samples=100, train_split=0.5, cache_dir=tmp_path).cache_path,
    }
    assert len(paths) == 4
    # the split of the training part into train/validation is not a generation argument
    assert MNIST1DDataModule(num_samples=100, val_fraction=0.3, cache_dir=tmp_path).cache_path in paths


def test_cache_dir_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV_VAR, str(tmp_path / "from_env"))
    assert resolve_cache_dir() == tmp_path / "from_env"
    assert resolve_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert MNIST1DDataModule(num_samples=100).cache_path.is_relative_to(tmp_path / "from_env")


def test_mnist1d_is_deterministic_per_seed(tmp_path: Path) -> None:
    first = setup_all(MNIST1DDataModule(num_samples=200, cache_dir=tmp_path / "a"))
    again = setup_all(MNIST1DDataModule(num_samples=200, cache_dir=tmp_path / "b"))
    other = setup_all(MNIST1DDataModule(num_samples=200, seed=7, cache_dir=tmp_path / "a"))

    for split in ("train_set", "val_set", "test_set"):
        for left, right in zip(getattr(first, split).tensors, getattr(again, split).tensors, strict=True):
            torch.testing.assert_close(left, right)
    assert not torch.equal(first.train_set.tensors[0], other.train_set.tensors[0])


def test_mnist1d_generation_leaves_global_random_state_alone(tmp_path: Path) -> None:
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    MNIST1DDataModule(num_samples=100, cache_dir=tmp_path).prepare_data()
    assert (random.random(), np.random.rand()) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_samples": 5}, "`num_samples` must be at least 10"),
        ({"train_split": 1.0}, "`train_split` must be strictly between 0 and 1, got 1.0"),
        ({"val_fraction": 0.0}, "`val_fraction` must be strictly between 0 and 1"),
        ({"batch_size": 0}, "`batch_size` must be at least 1, got 0"),
    ],
)
def test_mnist1d_rejects_bad_arguments(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MNIST1DDataModule(**kwargs)


def test_mnist1d_empty_split_is_a_clear_error(tmp_path: Path) -> None:
    dm = MNIST1DDataModule(num_samples=10, val_fraction=0.01, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="every split needs at least one"):
        setup_all(dm)


# --- MNIST-1D models -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("depth", "width"), [(1, 8), (3, 32), (20, 16)])
def test_mlp_depth_and_width(depth: int, width: int) -> None:
    model = MNIST1DMLP(depth=depth, width=width, activation="tanh")

    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    assert len(linears) == depth + 1
    assert [layer.out_features for layer in linears] == [width] * depth + [10]
    assert linears[0].in_features == 40
    assert sum(isinstance(module, nn.Tanh) for module in model.modules()) == depth
    assert not any(isinstance(module, nn.modules.batchnorm._NormBase | nn.LayerNorm) for module in model.modules())
    assert model(torch.randn(5, 40)).shape == (5, 10)


def test_mlp_layers_alternate_linear_and_activation_modules() -> None:
    model = MNIST1DMLP(depth=3, width=8, activation="relu")
    kinds = [type(module) for module in model.net]
    assert kinds == [nn.Linear, nn.ReLU] * 3 + [nn.Linear]


def test_mlp_rejects_unknown_activation() -> None:
    with pytest.raises(ValueError, match=r"`activation` must be one of .*'relu'.*got 'swish'"):
        MNIST1DMLP(activation="swish")  # type: ignore[arg-type]


def test_conv_net_output_shape_and_modules() -> None:
    model = MNIST1DConvNet(channels=8, kernel_size=3)
    assert model(torch.randn(4, 40)).shape == (4, 10)
    assert sum(isinstance(module, nn.Conv1d) for module in model.modules()) == 3
    assert sum(isinstance(module, nn.ReLU) for module in model.modules()) == 3


def test_models_save_their_hyperparameters() -> None:
    model = MNIST1DMLP(depth=4, width=16, lr=0.01)
    assert model.hparams == {"depth": 4, "width": 16, "activation": "relu", "lr": 0.01, "weight_decay": 0.0}


# --- digits and the character LM -------------------------------------------------------------------------------


def test_digits_shapes_and_disjoint_stratified_splits() -> None:
    dm = setup_all(DigitsDataModule(batch_size=32))

    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 1797
    images, _ = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 1, 8, 8)
    assert images.min() >= 0.0
    assert images.max() <= 1.0
    train, val, test = rows(dm.train_set), rows(dm.val_set), rows(dm.test_set)
    assert not train & val
    assert not train & test
    assert not val & test
    for split in (dm.val_set, dm.test_set):
        assert set(split.tensors[1].tolist()) == set(range(10))
    assert DigitsConvNet()(images).shape == (32, 10)


def test_char_corpus_fits_the_vocabulary() -> None:
    text = load_corpus()
    assert len(text) > 100_000
    assert set(text) <= set(VOCABULARY)
    assert decode(encode(text[:500])) == text[:500]


def test_char_lm_splits_are_contiguous_held_out_text() -> None:
    dm = setup_all(CharLMDataModule(block_size=16, max_chars=4000, val_fraction=0.1, test_fraction=0.1, batch_size=4))

    inputs, targets = next(iter(dm.train_dataloader()))
    assert inputs.shape == targets.shape == (4, 16)
    torch.testing.assert_close(inputs[:, 1:], targets[:, :-1])  # targets are the next characters
    text = load_corpus()[:4000]
    train_text, val_text = text[:3200], text[3200:3600]
    assert decode(dm.train_set.tensors[0][0]) == train_text[:16]
    assert decode(dm.val_set.tensors[0][0]) == val_text[:16]
    assert decode(dm.test_set.tensors[0][0]) == text[3600:3616]


def test_char_transformer_is_causal() -> None:
    torch.manual_seed(0)
    model = CharTransformer(block_size=16, d_model=32, n_layer=2, n_head=4, dropout=0.0).eval()
    tokens = torch.randint(0, len(VOCABULARY), (1, 16))
    changed = tokens.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % len(VOCABULARY)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[:, :10], model(changed)[:, :10])
        assert not torch.allclose(model(tokens)[:, 10:], model(changed)[:, 10:])


@pytest.mark.parametrize("norm_first", [True, False])
def test_char_transformer_pre_and_post_norm_blocks(norm_first: bool) -> None:
    torch.manual_seed(0)
    model = CharTransformer(block_size=16, d_model=32, n_layer=3, n_head=4, dropout=0.0, norm_first=norm_first)
    model.eval()
    assert [layer.norm_first for layer in model.blocks.layers] == [norm_first] * 3
    assert model.hparams["norm_first"] is norm_first
    outputs: list[torch.Tensor] = []
    model.blocks.layers[-1].register_forward_hook(lambda module, args, output: outputs.append(output))
    tokens = torch.randint(0, len(VOCABULARY), (2, 16))
    with torch.no_grad():
        logits = model(tokens)
    assert logits.shape == (2, 16, len(VOCABULARY))
    # a post-norm block ends in LayerNorm (weight 1, bias 0 at init): every position has mean 0 and (biased)
    # variance 1 over the features; a pre-norm block ends in a residual sum, which does not
    hidden = outputs[0]
    mean, var = hidden.mean(-1), hidden.var(-1, unbiased=False)
    if norm_first:
        assert isinstance(model.final_norm, nn.LayerNorm)
        assert (var - 1).abs().max() > 0.1
    else:
        assert isinstance(model.final_norm, nn.Identity)
        torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-5, rtol=0)
        torch.testing.assert_close(var, torch.ones_like(var), atol=1e-3, rtol=0)
    # causal in both variants
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % len(VOCABULARY)
    with torch.no_grad():
        torch.testing.assert_close(model(changed)[:, :10], logits[:, :10])


def test_char_transformer_rejects_a_non_bool_norm_first() -> None:
    with pytest.raises(ValueError, match=r"`norm_first` must be a bool .* got 'post'"):
        CharTransformer(d_model=16, n_head=2, norm_first="post")  # type: ignore[arg-type]


def test_char_transformer_rejects_too_long_sequences() -> None:
    model = CharTransformer(block_size=8, d_model=16, n_head=2)
    with pytest.raises(ValueError, match="exceed the model's block_size=8"):
        model(torch.zeros(1, 9, dtype=torch.long))


# --- each demo learns ------------------------------------------------------------------------------------------


def fit_steps(model: LightningModule, datamodule: LightningDataModule, steps: int, tmp_path: Path) -> Trainer:
    trainer = quiet_trainer(
        max_steps=steps,
        limit_val_batches=0,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule)
    return trainer


def mean_loss(model: LightningModule, loader: torch.utils.data.DataLoader, batches: int) -> float:
    model.eval()
    losses = []
    with torch.no_grad():
        for index, (inputs, targets) in enumerate(loader):
            if index == batches:
                break
            logits = model(inputs)
            losses.append(nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1)))
    return torch.stack(losses).mean().item()


@pytest.mark.parametrize(
    ("make_model", "make_data", "steps"),
    [
        (lambda: MNIST1DConvNet(channels=16), lambda: MNIST1DDataModule(num_samples=400, batch_size=32), 40),
        (lambda: MNIST1DMLP(depth=2, width=64, lr=3e-3), lambda: MNIST1DDataModule(num_samples=400, batch_size=32), 40),
        (lambda: DigitsConvNet(channels=8), lambda: DigitsDataModule(batch_size=32), 40),
        (
            lambda: CharTransformer(block_size=32, d_model=32, n_layer=1, n_head=2, lr=3e-3),
            lambda: CharLMDataModule(block_size=32, max_chars=20_000, batch_size=16),
            40,
        ),
    ],
    ids=["mnist1d-cnn", "mnist1d-mlp", "digits", "char-lm"],
)
def test_demo_learns(make_model: object, make_data: object, steps: int, tmp_path: Path) -> None:
    seed_everything(0)
    model, datamodule = make_model(), setup_all(make_data())  # type: ignore[operator]
    before = mean_loss(model, datamodule.val_dataloader(), batches=4)

    trainer = fit_steps(model, datamodule, steps, tmp_path)

    assert trainer.global_step == steps
    after = mean_loss(model, datamodule.val_dataloader(), batches=4)
    assert after < 0.9 * before, (before, after)


def test_training_logs_the_shared_metric_names(tmp_path: Path) -> None:
    model, datamodule = MNIST1DConvNet(channels=4), MNIST1DDataModule(num_samples=100, batch_size=20)
    trainer = quiet_trainer(
        max_epochs=1,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule)
    assert {"train_loss_step", "train_loss_epoch", "train_acc", "val_loss", "val_acc"} <= set(trainer.callback_metrics)
    trainer.test(model, datamodule, verbose=False)
    assert {"test_loss", "test_acc"} <= set(trainer.callback_metrics)

    lm = CharTransformer(block_size=8, d_model=16, n_layer=1, n_head=2)
    trainer = quiet_trainer(
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=2,
        enable_checkpointing=False,
    )
    trainer.fit(lm, CharLMDataModule(block_size=8, max_chars=2000, batch_size=4))
    assert {"val_loss", "val_acc", "val_ppl"} <= set(trainer.callback_metrics)
    torch.testing.assert_close(
        trainer.callback_metrics["val_ppl"], trainer.callback_metrics["val_loss"].exp(), rtol=1e-3, atol=1e-3
    )


def test_resumable_sampler_permutation_depends_on_seed_and_epoch_only() -> None:
    from types import SimpleNamespace

    from lightning_tuning.demos.resumable import ResumableShuffleSampler

    def trainer(epoch: int, restarting: bool = False, completed: int = 0) -> SimpleNamespace:
        progress = SimpleNamespace(current=SimpleNamespace(completed=completed))
        loop = SimpleNamespace(restarting=restarting, epoch_loop=SimpleNamespace(batch_progress=progress))
        return SimpleNamespace(current_epoch=epoch, fit_loop=loop)

    epoch1 = list(ResumableShuffleSampler(50, seed=3, batch_size=10, trainer=lambda: trainer(1)))
    assert sorted(epoch1) == list(range(50))
    torch.manual_seed(123)  # the global RNG plays no part
    assert list(ResumableShuffleSampler(50, seed=3, batch_size=10, trainer=lambda: trainer(1))) == epoch1
    assert list(ResumableShuffleSampler(50, seed=3, batch_size=10, trainer=lambda: trainer(2))) != epoch1
    resumed = ResumableShuffleSampler(50, seed=3, batch_size=10, trainer=lambda: trainer(1, True, completed=2))
    assert list(resumed) == epoch1[20:]


# --- GAN (third-party style: manual optimization, two optimizers) -----------------------------------------------


def ring_reference(modes: int, radius: float) -> np.ndarray:
    return np.array(
        [[radius * np.cos(2 * np.pi * k / modes), radius * np.sin(2 * np.pi * k / modes)] for k in range(modes)]
    )


def nearest_distance(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.sqrt(((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1)).min(axis=1)


def test_ring_data_is_a_ring_of_gaussians() -> None:
    from lightning_tuning.demos.gan import ring_centres, ring_samples

    np.testing.assert_allclose(ring_centres(6, 3.0).numpy(), ring_reference(6, 3.0), atol=1e-6)
    points = ring_samples(20_000, modes=6, radius=3.0, std=0.1, seed=3).numpy()
    # the distance of a 2-D isotropic Gaussian point to its centre is Rayleigh: mean std * sqrt(pi / 2)
    assert nearest_distance(points, ring_reference(6, 3.0)).mean() == pytest.approx(0.1 * np.sqrt(np.pi / 2), rel=0.03)
    modes = nearest_distance(points, ring_reference(6, 3.0))
    assert modes.max() < 1.0, "every point belongs to one mode"
    assert np.array_equal(points, ring_samples(20_000, modes=6, radius=3.0, std=0.1, seed=3).numpy())
    state = torch.random.get_rng_state()
    ring_samples(10)
    assert torch.equal(state, torch.random.get_rng_state()), "the global RNG is left alone"


def test_ring_data_rejects_bad_sizes() -> None:
    from lightning_tuning.demos import RingDataModule

    with pytest.raises(ValueError, match=r"`num_samples=10` must be at least `batch_size=64`"):
        RingDataModule(num_samples=10, batch_size=64)


@pytest.mark.slow
def test_gan_learns_the_ring(tmp_path: Path) -> None:
    from lightning_tuning.demos import RingDataModule, RingGAN

    seed_everything(0)
    model, datamodule = RingGAN(), RingDataModule(num_samples=1024, batch_size=64)
    centres = ring_reference(8, 2.0)
    with torch.no_grad():
        before = nearest_distance(model.sample(2000).numpy(), centres).mean()
    trainer = quiet_trainer(max_steps=100, limit_val_batches=1, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule)
    assert trainer.global_step == 100, "two optimizer steps per batch"
    with torch.no_grad():
        after = nearest_distance(model.sample(2000).numpy(), centres).mean()
    assert after < 0.5 * before, (before, after)
    assert {"d_loss", "g_loss", "val_mode_distance", "val_modes_covered"} <= set(trainer.callback_metrics)
