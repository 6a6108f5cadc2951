"""Per-parameter random generators: the same (seed, name) always gives the same numbers, on any rank or device.

Drawing every parameter from its own ``torch.Generator`` seeded by a hash of the run seed and the parameter's qualified
name makes the init independent of the global RNG (data loaders, dropout, other callbacks), of the order in which
parameters are visited, and of the number of processes; so DDP ranks agree without a broadcast.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, name: str) -> int:
    """A 63-bit seed from a run seed and a qualified name (stable across Python runs, unlike ``hash``)."""
    digest = hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator_for(seed: int, name: str) -> torch.Generator:
    """A CPU generator seeded from ``(seed, name)``; sample on CPU and copy to the device for device independence."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(derive_seed(seed, name))
    return generator
