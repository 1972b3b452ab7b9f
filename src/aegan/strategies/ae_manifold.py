"""`ae_manifold`: the AE's reconstruction error of generated samples stabilizes the GAN.

Q = Dec(E(.)) is the pretrained AE, frozen (a copy, never updated, always in eval mode
so its batch-norm statistics never move). G and D start fresh and train as in `dcgan`
(`NonSaturatingGAN`), with the penalty added to G's loss through its hook:

    L_D = -E[log D(x)] - E[log(1 - D(G(z)))]
    L_G = -E[log D(G(z))] + lambda_m(t) * ||G(z) - Q(G(z))||^2     (pixel mean)

Gradients of the penalty flow through Q into G. lambda_m(t) = lambda_m * warm-up(t) *
decay(t): linear 0 -> 1 over `warmup_steps`, then optionally `linear`/`cosine` 1 -> 0
between `decay_start` and `decay_end` (t = generator updates done so far, checkpointed).

The penalty is a pixel MSE in [-1, 1] units: small on real images (the AE's own error),
large on a fresh G's samples. The default lambda_m makes its gradient on G comparable to
L_GAN's while G is off the AE manifold (when it should stabilize) and a small fraction of
it once samples lie on it, so it never overrides the adversarial objective;
`python bench/loss_scales.py` prints both terms on the data at hand.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from aegan.strategies.base import NonSaturatingGAN


def lambda_at(p, step: int) -> float:
    """The penalty weight after `step` generator updates, under the schedule of section `p` (params.yaml ae_manifold)."""
    warm = min(1.0, step / p.warmup_steps) if p.warmup_steps else 1.0
    frac = min(1.0, max(0.0, (step - p.decay_start) / max(1, p.decay_end - p.decay_start)))
    decay = {"none": 1.0, "linear": 1.0 - frac, "cosine": 0.5 * (1.0 + math.cos(math.pi * frac))}[p.decay]
    return p.lambda_m * warm * decay


class AEManifold(NonSaturatingGAN):
    name = "ae_manifold"
    uses_ae = True
    cuda_graph_safe = False  # lambda_m's schedule follows a Python step counter: a replayed graph would freeze it

    def __init__(self, params, shape, optimizer, ae):
        super().__init__(params, shape, optimizer, ae)  # dcgan's G, D and optimizers
        self.q = copy.deepcopy(ae).requires_grad_(False).eval()
        self.step = 0

    def train(self, mode: bool = True) -> "AEManifold":
        super().train(mode)
        self.q.eval()  # Q's batch norm always uses its frozen running statistics
        return self

    def manifold_penalty(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.q(x)).pow(2).mean()

    def generator_penalty(self, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lambda_m = lambda_at(self.params, self.step)
        self.step += 1  # this step's generator update is the one the penalty goes into
        penalty = self.manifold_penalty(fake)
        return lambda_m * penalty, {
            "penalty_manifold": penalty.detach(),
            "lambda_m": torch.tensor(lambda_m, device=fake.device),
        }

    def extra_state(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])


STRATEGY = AEManifold
