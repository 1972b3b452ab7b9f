"""Pydantic bases shared by params.py, params_strategies.py and the strategies: a leaf module."""

from __future__ import annotations

from typing import Annotated, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# what numpy (np.random.seed) and torch (manual_seed) both accept, so a seed that validates also runs
SEED_MAX = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored.

    Strict types: a number written as a string ("40") or a boolean is an error, never coerced;
    a float field accepts an integer (1 means 1.0). NaN and infinity are errors (`.inf` as a weight or
    bound would only fail, or silently disable a check, once a run is under way).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value, info: ValidationInfo):
        """Strict mode still matches True to a Literal[1, 3]: a boolean is accepted only where a boolean is asked."""
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and bool not in (annotation, *get_args(annotation)):
            raise ValueError(f"{str(value).lower()} is a boolean: give a value of the field's own type")
        return value


class StrategyParams(StrictModel):
    """Base of every strategy's params section (the section named after the strategy in params.yaml)."""


class OptimizerParams(StrictModel):
    lr: float = Field(gt=0.0, le=1.0)
    beta1: float = Field(ge=0.0, lt=1.0)
    beta2: float = Field(ge=0.0, lt=1.0)
