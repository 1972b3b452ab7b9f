"""The study's settings (DESIGN 3, "Are GANs Created Equal?"): what setting k of a strategy trains with.

Setting 0 is the strategy's own: train.optimizer and its params section as
written. Setting k > 0 draws lr and beta1 from `study.lr` / `study.beta1` with
a generator seeded by (draw_seed, k) alone, so every strategy's setting k has
the same optimizer (common random numbers: strategies differ by their own
knobs, not by luck of the draw), and the strategy's own knobs from
`study.<strategy>` with a generator seeded by (draw_seed, k, strategy). A
setting depends on its id, not on how many settings there are: adding
settings leaves the others' stages cached.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from aegan.errors import UserError
from aegan.params_base import OptimizerParams, StrategyParams


@dataclass(frozen=True)
class Setting:
    strategy: str
    index: int
    optimizer: OptimizerParams
    knobs: StrategyParams

    def values(self) -> dict[str, float]:
        """What was searched, as `lr`, `beta1` and the knob names: the study's table columns and MLflow params."""
        out = {"lr": self.optimizer.lr, "beta1": self.optimizer.beta1}
        return out | {k: v for k, v in self.knobs.model_dump().items() if isinstance(v, float)}


def draw(rng: np.random.Generator, r) -> float:
    """One value from a `Range` (params.Range): uniform, or log-uniform when `r.log`."""
    if r.log:
        return float(math.exp(rng.uniform(math.log(r.low), math.log(r.high))))
    return float(rng.uniform(r.low, r.high))


def setting(study, strategy: str, index: int, optimizer: OptimizerParams, knobs: StrategyParams) -> Setting:
    """Setting `index` of `strategy`; `optimizer` and `knobs` are its own (train.optimizer, its section).

    `study` is the params' study section (a stage view: only the ranges it reads are its dependencies).
    """
    # plain models from the stage's views (model_dump reads through the view, so the reads are recorded)
    knobs_cls = type(getattr(knobs, "_model", knobs))
    own_opt, own_knobs = optimizer.model_dump(), knobs.model_dump()
    if index == 0:
        return Setting(strategy, 0, OptimizerParams.model_validate(own_opt), knobs_cls.model_validate(own_knobs))
    shared = np.random.default_rng([study.draw_seed, index])
    opt = own_opt | {"lr": draw(shared, study.lr), "beta1": draw(shared, study.beta1)}
    own = np.random.default_rng([study.draw_seed, index, zlib.crc32(strategy.encode())])
    space = getattr(study, strategy)
    drawn: dict[str, Any] = {knob: draw(own, space[knob]) for knob in sorted(space)}
    try:  # validated: a range may reach outside what the knob allows (e.g. gamma <= 1)
        return Setting(strategy, index, OptimizerParams.model_validate(opt), knobs_cls.model_validate(own_knobs | drawn))
    except ValueError as err:
        first = str(err).splitlines()[1] if len(str(err).splitlines()) > 1 else str(err)
        raise UserError(f"study setting {index} of {strategy} draws {drawn}, which {strategy} refuses ({first.strip()}): "
                        f"narrow study.{strategy}'s ranges to the knob's allowed values") from None
