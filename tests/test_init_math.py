"""Pure-math tests of lightning_tuning.init: statistics against torch.nn.init's formulas, gains, rules, tracing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from lightning_tuning.init import (
    SCHEMES,
    apply_plan,
    build_plan,
    compute_fans,
    generator_for,
    nonlinearity_gain,
    numeric_gain,
    parse_rules,
    sample,
    trace_activations,
    validate_scheme,
)

LINEAR = (1024, 1024)  # 1,048,576 samples
CONV = (256, 128, 3, 3)  # 294,912 samples; fan_in = 1152, fan_out = 2304


def _expected_std(scheme: str, shape: tuple[int, ...], args: dict) -> float:
    """Independent formulas (written out, not taken from the package)."""
    rf = math.prod(shape[2:]) if len(shape) > 2 else 1
    fan_in, fan_out = shape[1] * rf, shape[0] * rf
    if scheme in ("xavier_uniform", "xavier_normal"):
        return args.get("gain", 1.0) * math.sqrt(2.0 / (fan_in + fan_out))
    if scheme in ("kaiming_uniform", "kaiming_normal"):
        fan = fan_in if args.get("mode", "fan_in") == "fan_in" else fan_out
        nl = args.get("nonlinearity", "leaky_relu")
        gain = {"relu": math.sqrt(2), "tanh": 5 / 3, "linear": 1.0}.get(nl)
        if nl == "leaky_relu":
            gain = math.sqrt(2 / (1 + args.get("a", 0.0) ** 2))
        return gain / math.sqrt(fan)
    if scheme == "lecun_normal":
        return 1 / math.sqrt(fan_in)
    if scheme == "variance_scaling":
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[args["mode"]]
        return math.sqrt(args["scale"] / fan)
    if scheme == "normal":
        return args["std"]
    if scheme == "uniform":
        return (args["b"] - args["a"]) / math.sqrt(12)
    raise AssertionError(scheme)


CASES = [
    ("xavier_uniform", {}),
    ("xavier_normal", {"gain": 2.0}),
    ("kaiming_uniform", {"nonlinearity": "relu"}),
    ("kaiming_normal", {"nonlinearity": "relu"}),
    ("kaiming_normal", {"nonlinearity": "relu", "mode": "fan_out"}),
    ("kaiming_normal", {"nonlinearity": "leaky_relu", "a": 0.2}),
    ("kaiming_uniform", {"nonlinearity": "tanh", "mode": "fan_out"}),
    ("lecun_normal", {}),
    ("lecun_normal", {"truncate": False}),
    ("variance_scaling", {"scale": 2.0, "mode": "fan_avg", "distribution": "uniform"}),
    ("variance_scaling", {"scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal"}),
    ("normal", {"mean": 0.5, "std": 0.02}),
    ("uniform", {"a": -0.3, "b": 0.1}),
]


@pytest.mark.parametrize("shape", [LINEAR, CONV], ids=["linear1024", "conv256x128x3x3"])
@pytest.mark.parametrize(("scheme", "args"), CASES, ids=[f"{s}-{a}" for s, a in CASES])
def test_scheme_statistics_match_formula(scheme, args, shape):
    resolved = validate_scheme(scheme, args)
    w = sample(scheme, shape, resolved, generator_for(0, "w"))
    n = w.numel()
    std = _expected_std(scheme, shape, resolved)
    mean = resolved.get("mean", (resolved["a"] + resolved["b"]) / 2 if scheme == "uniform" else 0.0)
    # std of the sample std is <= ~std * sqrt(1/(2n)) (normal) — 1e-3 relative at n ~ 3e5; 1.5% is > 10 sigma
    assert w.std().item() == pytest.approx(std, rel=0.015)
    assert abs(w.mean().item() - mean) < 6 * std / math.sqrt(n)
    if scheme.endswith("uniform") or resolved.get("distribution") == "uniform":
        bound = math.sqrt(3) * std if scheme != "uniform" else resolved["b"]
        assert w.max().item() <= bound + 1e-6
        assert w.max().item() > bound * 0.999
    if (scheme == "lecun_normal" and resolved["truncate"]) or resolved.get("distribution") == "truncated_normal":
        assert w.abs().max().item() <= 2 * std / 0.8796256610342398 + 1e-6  # cut at 2 sigma of the pre-correction


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (("xavier_uniform", {"gain": 1.5}), lambda t, g: nn.init.xavier_uniform_(t, 1.5, generator=g)),
        (("xavier_normal", {}), lambda t, g: nn.init.xavier_normal_(t, generator=g)),
        (
            ("kaiming_normal", {"nonlinearity": "relu", "mode": "fan_out"}),
            lambda t, g: nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu", generator=g),
        ),
        (
            ("kaiming_uniform", {"a": math.sqrt(5)}),
            lambda t, g: nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=g),
        ),
        (("orthogonal", {"gain": 2.0}), lambda t, g: nn.init.orthogonal_(t, 2.0, generator=g)),
        (("trunc_normal", {"std": 0.5}), lambda t, g: nn.init.trunc_normal_(t, std=0.5, generator=g)),
    ],
)
def test_same_numbers_as_torch_init_with_same_generator(ours, theirs):
    """Same generator, same draws: our schemes are torch.nn.init's, not approximations (conv shape: fan with kernel)."""
    shape = (64, 32, 3)
    got = sample(ours[0], shape, validate_scheme(*ours), generator_for(1, "p"))
    expected = theirs(torch.empty(shape), generator_for(1, "p"))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_zeros_ones_constant_exact():
    g = generator_for(0, "x")
    assert torch.equal(sample("zeros", (5, 3), {}, g), torch.zeros(5, 3))
    assert torch.equal(sample("ones", (4,), {}, g), torch.ones(4))
    assert torch.equal(
        sample("constant", (2, 2), validate_scheme("constant", {"value": 0.25}), g), torch.full((2, 2), 0.25)
    )


@pytest.mark.parametrize("shape", [(256, 512), (512, 256), (64, 32, 3, 3)])
def test_orthogonal_is_orthogonal(shape):
    w = sample("orthogonal", shape, validate_scheme("orthogonal", {"gain": 1.5}), generator_for(0, "o")).flatten(1)
    rows, cols = w.shape
    gram = w @ w.T if rows <= cols else w.T @ w
    torch.testing.assert_close(gram, 1.5**2 * torch.eye(min(rows, cols)), atol=1e-4, rtol=0)


def test_trunc_normal_bounds_are_absolute():
    w = sample(
        "trunc_normal",
        (100_000,),
        validate_scheme("trunc_normal", {"std": 1.0, "a": -0.5, "b": 0.5}),
        generator_for(0, "t"),
    )
    assert w.min().item() >= -0.5
    assert w.max().item() <= 0.5


def test_fans_follow_torch_layout():
    assert compute_fans((10, 20)) == (20, 10)
    assert compute_fans((256, 128, 3, 3)) == (1152, 2304)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        compute_fans((10,))


def test_gains_known_and_numeric():
    assert nonlinearity_gain("relu") == pytest.approx(math.sqrt(2))
    assert nonlinearity_gain("tanh") == pytest.approx(5 / 3)  # torch's convention kept
    assert numeric_gain(F.relu) == pytest.approx(math.sqrt(2), rel=1e-6)  # the definition reproduces He for ReLU
    assert numeric_gain(lambda x: x) == pytest.approx(1.0, rel=1e-6)
    x = torch.randn(4_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for name, fn in [("gelu", F.gelu), ("silu", F.silu), ("mish", F.mish)]:
        monte_carlo = 1 / fn(x).pow(2).mean().sqrt().item()  # rel. error ~ 1e-3
        assert nonlinearity_gain(name) == pytest.approx(monte_carlo, rel=5e-3)
    with pytest.raises(ValueError, match="gelu"):
        nonlinearity_gain("swishy")


def test_seeded_generators_are_reproducible_and_name_dependent():
    a = torch.rand(5, generator=generator_for(3, "body.0.weight"))
    torch.manual_seed(123)
    torch.rand(100)  # global RNG use must not matter
    b = torch.rand(5, generator=generator_for(3, "body.0.weight"))
    c = torch.rand(5, generator=generator_for(3, "body.1.weight"))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    ("scheme", "args", "match"),
    [
        ("kaiming_normel", {}, "Allowed: zeros, ones, constant"),
        ("kaiming_normal", {"gain": 2}, r"unknown argument\(s\) \['gain'\]. Allowed: \['a', 'mode', 'nonlinearity'\]"),
        ("kaiming_normal", {"mode": "fan_avg"}, "allowed: fan_in, fan_out"),
        ("kaiming_normal", {"nonlinearity": "swish2"}, "'auto' or one of"),
        ("constant", {}, r"needs argument\(s\) \['value'\]"),
        ("normal", {"std": -1}, "positive"),
        ("uniform", {"a": 1, "b": 0}, "a < b"),
        ("xavier_uniform", {"gain": [1]}, "gain"),
    ],
)
def test_scheme_validation_errors(scheme, args, match):
    with pytest.raises(ValueError, match=match):
        validate_scheme(scheme, args)


def test_every_scheme_is_documented_and_valid_by_default():
    for name, scheme in SCHEMES.items():
        if not scheme.required:
            validate_scheme(name, {})


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.b = nn.Linear(16, 16)
        self.c = nn.Linear(16, 16)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = F.relu(self.a(x))
        x = nn.functional.gelu(self.norm(self.b(x)))  # norm layers are looked through
        x = F.leaky_relu(self.drop(self.c(x)), 0.2)
        return self.head(x)


def test_tracing_finds_activations_in_execution_order():
    net = Net()
    trace = trace_activations(net, ["head", "c", "b", "norm", "a"], lambda: net(torch.randn(4, 8)))
    assert trace.order == ["a", "b", "norm", "c", "head"]
    assert {k: repr(v) for k, v in trace.activation.items()} == {
        "a": "relu",
        "b": "gelu",
        "c": "leaky_relu(0.2)",
        "head": "linear",
    }
    assert trace.activation["b"].gain() == pytest.approx(nonlinearity_gain("gelu"), rel=1e-6)


def test_rules_first_match_wins_frozen_exclude_and_globs():
    net = Net()
    net.c.weight.requires_grad_(False)
    rules = parse_rules(
        [
            {"name": "head", "weight": "zeros", "bias": "ones"},
            {"modules": ["Linear"], "weight": "xavier_uniform", "bias": "zeros"},
            {"modules": ["norm"], "weight": "ones"},
            {"name": "nothing.*", "weight": "zeros"},
        ]
    )
    plan = build_plan(net, rules, exclude=["a"])
    got = {e.qualified_name: (e.rule, e.scheme) for e in plan.entries}
    assert got == {
        "norm.weight": (2, "ones"),
        "b.weight": (1, "xavier_uniform"),
        "b.bias": (1, "zeros"),
        "c.bias": (1, "zeros"),  # c.weight is frozen
        "head.weight": (0, "zeros"),
        "head.bias": (0, "ones"),
    }
    assert plan.selected_by_rule[3] == 0


def test_rule_parsing_errors_name_the_rule():
    with pytest.raises(ValueError, match=r"rules\[1\] has unknown key\(s\) \['wieght'\]"):
        parse_rules([{"weight": "zeros"}, {"wieght": "zeros"}])
    with pytest.raises(ValueError, match=r"rules\[0\] .* names no scheme"):
        parse_rules([{"modules": ["Linear"]}])
    with pytest.raises(ValueError, match=r"rules\[0\]: Unknown init scheme 'he'"):
        parse_rules([{"weight": "he"}])


def test_lstm_params_glob():
    lstm = nn.LSTM(8, 16)
    rules = parse_rules(
        [
            {"modules": ["rnn"], "params": ["weight_hh*"], "weight": "orthogonal"},
            {"modules": ["LSTM"], "weight": "xavier_uniform", "bias": "zeros"},
        ]
    )
    plan = build_plan(lstm, rules)
    assert {e.param: e.scheme for e in plan.entries} == {
        "weight_ih_l0": "xavier_uniform",
        "weight_hh_l0": "orthogonal",
        "bias_ih_l0": "zeros",
        "bias_hh_l0": "zeros",
    }
    apply_plan(lstm, plan.entries, seed=0)
    w = lstm.weight_hh_l0.detach()  # (4*16, 16): orthonormal columns
    torch.testing.assert_close(w.T @ w, torch.eye(16), atol=1e-4, rtol=0)


def test_init_of_weight_normalised_layer_really_changes_it():
    layer = weight_norm(nn.Linear(64, 64))
    before = layer.weight.detach().clone()
    g_before = layer.parametrizations.weight.original0.detach().clone()
    nn.init.zeros_(layer.weight)  # the torch pitfall (pytorch#180968): silently does nothing
    torch.testing.assert_close(layer.weight.detach(), before)

    rules = parse_rules([{"modules": ["Linear"], "weight": "kaiming_normal", "weight_args": {"nonlinearity": "relu"}}])
    plan = build_plan(layer, rules)
    assert [e.param for e in plan.entries] == ["weight"]  # g and v are reached through the weight
    apply_plan(layer, plan.entries, seed=0)
    after = layer.weight.detach()
    expected = sample("kaiming_normal", (64, 64), plan.entries[0].args, generator_for(0, "weight"))
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(layer.parametrizations.weight.original0.detach(), g_before)


def test_default_scheme_is_seeded_and_keeps_other_params():
    def build():
        torch.manual_seed(torch.randint(0, 10_000, ()).item())  # different global RNG every time
        net = nn.Linear(32, 32)
        plan = build_plan(
            net,
            parse_rules(
                [{"modules": ["Linear"], "weight": "default", "bias": "constant", "bias_args": {"value": 0.5}}]
            ),
        )
        apply_plan(net, plan.entries, seed=7)
        return net

    a, b = build(), build()
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)
    assert torch.equal(a.bias.detach(), torch.full((32,), 0.5))
    assert a.weight.abs().max().item() <= 1 / math.sqrt(32) + 1e-6  # torch's default U(±1/sqrt(fan_in))


def test_auto_gain_resolves_from_trace():
    net = Net()
    trace = trace_activations(net, ["a", "b", "c", "head"], lambda: net(torch.randn(4, 8)))
    rules = parse_rules([{"modules": ["Linear"], "weight": "kaiming_normal", "weight_args": {"nonlinearity": "auto"}}])
    plan = build_plan(net, rules)
    apply_plan(net, plan.entries, seed=0, activations=trace.activation)
    for layer, act in [("a", "relu"), ("b", "gelu"), ("head", "linear")]:
        args = validate_scheme("kaiming_normal", {"nonlinearity": act})
        expected = sample(
            "kaiming_normal", tuple(getattr(net, layer).weight.shape), args, generator_for(0, f"{layer}.weight")
        )
        torch.testing.assert_close(getattr(net, layer).weight.detach(), expected)
    with pytest.raises(ValueError, match="no forward pass was traced"):
        apply_plan(net, plan.entries, seed=0, activations=None)
