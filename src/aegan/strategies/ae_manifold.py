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
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from aegan.strategies.base import NonSaturatingGAN, StrategyParams


class AEManifoldParams(StrategyParams):
    lambda_m: float = Field(10.0, ge=0.0, description="weight of the manifold penalty ||G(z) - Q(G(z))||^2")
    warmup_steps: int = Field(0, ge=0, description="linear ramp of lambda_m from 0 over this many steps")
    decay: Literal["none", "linear", "cosine"] = "none"
    decay_start: int = Field(0, ge=0, description="step where the decay to 0 begins")
    decay_end: int = Field(0, ge=0, description="step where lambda_m reaches 0")

    @model_validator(mode="after")
    def _valid_schedule(self) -> "AEManifoldParams":
        if self.decay != "none" and self.decay_end <= self.decay_start:
            raise ValueError(f"decay_end ({self.decay_end}) must be > decay_start ({self.decay_start})")
        if self.decay == "none" and (self.decay_start or self.decay_end):
            raise ValueError("decay_start/decay_end are set but decay is 'none': choose linear or cosine")
        return self

    def lambda_at(self, step: int) -> float:
        """The penalty weight after `step` generator updates."""
        warm = min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0
        frac = min(1.0, max(0.0, (step - self.decay_start) / max(1, self.decay_end - self.decay_start)))
        decay = {"none": 1.0, "linear": 1.0 - frac, "cosine": 0.5 * (1.0 + math.cos(math.pi * frac))}[self.decay]
        return self.lambda_m * warm * decay


class AEManifold(NonSaturatingGAN):
    knob_space = {"lambda_m": {"low": 0.3, "high": 30.0, "log": True}}
    name = "ae_manifold"
    Params = AEManifoldParams
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
        lambda_m = self.params.lambda_at(self.step)
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
