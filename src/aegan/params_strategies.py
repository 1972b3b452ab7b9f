"""params.yaml's strategy sections: one model per strategy, the section named after it (docs/design.md).

Here are each knob's type and the values it may take; its value and what it does are in params.yaml, and the
strategy's module is where it is used. A train stage is handed its own strategy's section (`self.params`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from aegan.params_base import StrategyParams


class DCGANParams(StrategyParams):
    """The control has no knobs of its own."""


class AEInitParams(StrategyParams):
    latent_prior: Literal["fitted", "standard"]
    init_disc_from_encoder: bool


class AEDiscParams(StrategyParams):
    gamma: float = Field(gt=0.0, le=1.0)
    lambda_k: float = Field(ge=0.0)
    disc_width: int = Field(ge=4, le=1024)
    disc_hidden: int = Field(ge=2, le=4096)


class AEHybridParams(StrategyParams):
    lambda_rec: float = Field(ge=0.0)
    lambda_lat: float = Field(ge=0.0)
    latent_reg: Literal["adversarial", "moments"]
    latent_disc_width: int = Field(ge=4, le=4096)


class AEManifoldParams(StrategyParams):
    lambda_m: float = Field(ge=0.0)
    warmup_steps: int = Field(ge=0)
    decay: Literal["none", "linear", "cosine"]
    decay_start: int = Field(ge=0)
    decay_end: int = Field(ge=0)

    @model_validator(mode="after")
    def _valid_schedule(self) -> "AEManifoldParams":
        if self.decay != "none" and self.decay_end <= self.decay_start:
            raise ValueError(f"decay_end ({self.decay_end}) must be > decay_start ({self.decay_start})")
        if self.decay == "none" and (self.decay_start or self.decay_end):
            raise ValueError("decay_start/decay_end are set but decay is 'none': choose linear or cosine")
        return self


class VAEGANParams(StrategyParams):
    beta: float = Field(ge=0.0)
    gamma: float = Field(ge=0.0)
