"""Loss pieces shared by several strategies, written as in the papers."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """-E[log D] for target 1, -E[log(1 - D)] for target 0, where D = sigmoid(logits)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))
