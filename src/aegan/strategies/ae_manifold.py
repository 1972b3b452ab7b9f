"""`ae_manifold`: the AE's reconstruction error of generated samples stabilizes the GAN.

Q = Dec(E(.)) is the pretrained AE, frozen (a copy, never updated, always in eval mode
so its batch-norm statistics never move). G and D start fresh, as in `dcgan`:

    L_D = -E[log D(x)] - E[log(1 - D(G(z)))]
    L_G = -E[log D(G(z))] + lambda_m(t) * ||G(z) - Q(G(z))||^2     (pixel mean)

Gradients of the penalty flow through Q into G. lambda_m(t) = lambda_m * warm-up(t) *
decay(t): linear 0 -> 1 over `warmup_steps`, then optionally `linear`/`cosine` 1 -> 0
between `decay_start` and `decay_end` (t = generator updates done so far, checkpointed).

Default lambda_m = 10. The penalty is a pixel MSE in [-1, 1] units: ~0.0025 on real
digits (the AE's own error), ~0.15 on a fresh G's samples, ~0.01 after a few hundred
dcgan steps, while L_GAN is ~0.7-3. Measured on the params.yaml shape, the penalty's
gradient on G is ~1/7 of L_GAN's at the start and 1/50-1/500 later; lambda_m = 10 makes
it comparable to L_GAN while G is off the AE manifold (when it should stabilize) and a
few per cent once samples lie on it, so it never overrides the adversarial objective.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from aegan.losses import bce
from aegan.nets import Decoder, Discriminator
from aegan.strategies import register_strategy
from aegan.strategies.base import Strategy, StrategyParams


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


@register_strategy("ae_manifold")
class AEManifold(Strategy):
    Params = AEManifoldParams
    uses_ae = True

    def __init__(self, params, shape, optimizer, ae):
        super().__init__(params, shape, optimizer, ae)
        self.generator = Decoder(shape)
        self.discriminator = Discriminator(shape)
        self.q = copy.deepcopy(ae).requires_grad_(False).eval()
        self.opt_g = self.adam(self.generator.parameters())
        self.opt_d = self.adam(self.discriminator.parameters())
        self.step = 0

    def train(self, mode: bool = True) -> "AEManifold":
        super().train(mode)
        self.q.eval()  # Q's batch norm always uses its frozen running statistics
        return self

    def manifold_penalty(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.q(x)).pow(2).mean()

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        lambda_m = self.params.lambda_at(self.step)
        fake = self.generator(self.sample_prior(real.shape[0]))

        d_real, d_fake = self.discriminator(real), self.discriminator(fake.detach())
        loss_d = bce(d_real, 1.0) + bce(d_fake, 0.0)
        self.update(self.opt_d, loss_d)

        loss_gan = bce(self.discriminator(fake), 1.0)
        penalty = self.manifold_penalty(fake)
        loss_g = loss_gan + lambda_m * penalty
        self.update(self.opt_g, loss_g)
        self.step += 1

        return {
            "loss_d": loss_d.detach(),
            "loss_g": loss_g.detach(),
            "loss_gan": loss_gan.detach(),
            "penalty_manifold": penalty.detach(),
            "lambda_m": torch.tensor(lambda_m, device=real.device),
            "d_real": torch.sigmoid(d_real).mean().detach(),
            "d_fake": torch.sigmoid(d_fake).mean().detach(),
        }

    def extra_state(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
