"""The study's settings (docs/study.md, "Are GANs Created Equal?"): what setting k of a strategy trains with.

Setting 0 is the strategy's own: train.optimizer and its params section as
written. Setting k > 0 takes lr and beta1 from point k of a scrambled Sobol
sequence over `study.lr` x `study.beta1` seeded by draw_seed alone, so every
strategy's setting k has the same optimizer (common random numbers:
strategies differ by their own knobs, not by luck of the draw), and the
strategy's own knobs from point k of a Sobol sequence over `study.<strategy>`
seeded by (draw_seed, strategy). Sobol points fill a range evenly where
random draws clump: the first 4 put one value in each quarter of every range
(a log range by its logarithm): with the default lr range, 4 drawn settings
try one lr in each of 5e-5-1.1e-4 (BEGAN's own 1e-4), 1.1e-4-2.2e-4,
2.2e-4-4.7e-4 and 4.7e-4-1e-3. A setting depends on its id, not on how many
settings there are: adding settings leaves the others' stages cached.
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


def sobol_point(dims: int, index: int, seed) -> np.ndarray:
    """Point `index` (1-based) of the scrambled Sobol sequence in [0, 1)^dims with this seed (scipy.stats.qmc)."""
    from scipy.stats import qmc

    sequence = qmc.Sobol(dims, scramble=True, seed=np.random.default_rng(seed))
    if index > 1:
        sequence.fast_forward(index - 1)
    return sequence.random(1)[0]


def scale(u: float, r) -> float:
    """u in [0, 1) onto a `Range` (params.Range): linearly, or by the logarithm when `r.log`."""
    if r.log:
        return float(math.exp(math.log(r.low) + u * (math.log(r.high) - math.log(r.low))))
    return float(r.low + u * (r.high - r.low))


def setting(study, strategy: str, index: int, optimizer: OptimizerParams, knobs: StrategyParams) -> Setting:
    """Setting `index` of `strategy`; `optimizer` and `knobs` are its own (train.optimizer, its section), `study`
    the params' study section."""
    own_opt, own_knobs = optimizer.model_dump(), knobs.model_dump()
    if index == 0:
        return Setting(strategy, 0, OptimizerParams.model_validate(own_opt), knobs.model_validate(own_knobs))
    u = sobol_point(2, index, [study.draw_seed])
    opt = own_opt | {"lr": scale(u[0], study.lr), "beta1": scale(u[1], study.beta1)}
    space = getattr(study, strategy)
    knobs_u = sobol_point(len(space), index, [study.draw_seed, zlib.crc32(strategy.encode())]) if space else []
    drawn: dict[str, Any] = {knob: scale(v, space[knob]) for knob, v in zip(sorted(space), knobs_u)}
    try:  # validated: a range may reach outside what the knob allows (e.g. gamma <= 1)
        return Setting(strategy, index, OptimizerParams.model_validate(opt), knobs.model_validate(own_knobs | drawn))
    except ValueError as err:
        first = str(err).splitlines()[1] if len(str(err).splitlines()) > 1 else str(err)
        raise UserError(f"study setting {index} of {strategy} draws {drawn}, which {strategy} refuses ({first.strip()}): "
                        f"narrow study.{strategy}'s ranges to the knob's allowed values") from None
