"""Small helpers shared by the strategy tests."""

from __future__ import annotations

import torch


def batch(digits16: torch.Tensor, n: int = 64, seed: int = 0) -> torch.Tensor:
    """A seeded random batch of real digits."""
    return digits16[torch.randperm(len(digits16), generator=torch.Generator().manual_seed(seed))[:n]]


def same_state(a: dict, b: dict) -> bool:
    """Two state dicts hold the same keys and bit-identical tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def restore_through_bytes(src, dst) -> None:
    """dst takes src's checkpoint state, serialised and loaded back the way a resume does (weights_only)."""
    import io

    buffer = io.BytesIO()
    torch.save(src.checkpoint_state(), buffer)
    buffer.seek(0)
    dst.load_checkpoint_state(torch.load(buffer, weights_only=True))
