"""Pydantic bases shared by params.py and every strategy's `Params`: a leaf module, so neither imports the other."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StrategyParams(StrictModel):
    """Base of every strategy's params section (the section named after the strategy in params.yaml)."""


class OptimizerParams(StrictModel):
    lr: float = Field(2e-4, gt=0.0, le=1.0)
    beta1: float = Field(0.5, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
