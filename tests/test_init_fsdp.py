"""Init of an FSDP-sharded model built on the meta device: same weights as a single-process init (issue 14).

Lightning's ``FSDPStrategy`` refuses ``accelerator="cpu"`` ("The strategy `fsdp` requires a GPU accelerator"), so the
mechanism the callbacks use under FSDP is tested here with torch's own FSDP on CPU (gloo, two processes): the model is
created on the meta device, materialised by FSDP (``to_empty``), and initialised inside
``summon_full_params(writeback=True)`` with canonical names (``_fsdp_wrapped_module`` parts dropped), exactly as
``WeightInit`` does in ``on_fit_start`` under an FSDP strategy.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lightning_tuning.init import apply_plan, build_plan, parse_rules

RULES = [
    {"modules": ["linear"], "name": "2.*", "weight": "orthogonal", "bias": "zeros"},
    {"modules": ["linear"], "weight": "kaiming_normal", "weight_args": {"nonlinearity": "relu"}, "bias": "zeros"},
]


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 16), nn.ReLU()), nn.Linear(16, 2))


def _worker(rank: int, port: int, out: str) -> None:
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(100 + rank)  # rank-dependent global RNG: the per-parameter generators must not care
    with torch.device("meta"):
        model = _model()
    wrapped = FSDP(
        model,
        device_id=torch.device("cpu"),
        use_orig_params=True,
        auto_wrap_policy=ModuleWrapPolicy({nn.Sequential}),
        param_init_fn=lambda module: module.to_empty(device="cpu", recurse=False),
    )
    shard_shapes = sorted(tuple(p.shape) for p in wrapped.parameters())
    with FSDP.summon_full_params(wrapped, writeback=True, with_grads=False):
        inner = wrapped.module
        apply_plan(inner, build_plan(inner, parse_rules(RULES)).entries, seed=7)
    with FSDP.summon_full_params(wrapped, writeback=False):
        full = {k: v.detach().clone() for k, v in wrapped.module.state_dict().items()}
    torch.save({"full": full, "shard_shapes": shard_shapes}, f"{out}.{rank}")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_fsdp_meta_device_init_matches_single_process(tmp_path):
    out = str(tmp_path / "weights")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2)
    ranks = [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(2)]
    single = _model()
    apply_plan(single, build_plan(single, parse_rules(RULES)).entries, seed=7)
    expected = single.state_dict()
    # the shards really were shards (flat 1-D pieces, not the full tensors)
    assert all(len(shape) == 1 for shape in ranks[0]["shard_shapes"])
    for rank in ranks:
        assert rank["full"].keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(rank["full"][key], value), key
    assert torch.equal(expected["2.0.bias"], torch.zeros(16))
