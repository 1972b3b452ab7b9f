"""Which strategy the comparison chose, and whether it decided that.

The candidate is the strategy with the best mean of the primary "better"
measure over its finished seeds (`report.primary.better`: FID on the log scale,
i.e. the lowest geometric mean; or KID). The comparison *decided* it when the
report's own test (Welch over seeds, Holm across the others: comparison.py)
finds it better than every other strategy at the report's confidence; else the
other strategy it could not be told apart from is named. Only a decided winner
may become the registry's `best` (`aegan promote`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from aegan.report.comparison import compare_metric


@dataclass
class Winner:
    strategy: str
    measure: str  # the primary "better" measure it was chosen and tested on
    mean: float  # its mean of that measure over seeds (geometric for FID)
    strategies: int  # how many strategies it was compared with, itself included
    decided: bool
    closest: str | None  # the other strategy least clearly behind it (the one it could not beat, when undecided)
    ratio: float | None  # FID: candidate / closest (geometric means); KID: None
    delta: float | None  # closest minus candidate on the tested scale (log FID, or KID)
    p_holm: float | None  # Holm-adjusted p of candidate vs closest
    words: str  # one line: what was decided

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def choose(runs: pd.DataFrame, measure: str, confidence: float) -> Winner | None:
    """The candidate among the strategies with finished runs, tested against each other one; None without any."""
    finished = runs[runs["status"] == "finished"]
    log = measure == "fid"
    values = {}
    for s in dict.fromkeys(finished["strategy"]):
        v = finished.loc[finished["strategy"] == s, measure].dropna().to_numpy(float)
        v = v[np.isfinite(v)]
        if len(v):
            values[s] = v
    if not values:
        return None
    scale = {s: np.log(np.maximum(v, 1e-300)) if log else v for s, v in values.items()}
    candidate = min(scale, key=lambda s: float(scale[s].mean()))
    mean = float(np.exp(scale[candidate].mean())) if log else float(scale[candidate].mean())
    if len(values) == 1:
        return Winner(candidate, measure, mean, 1, False, None, None, None, None,
                      f"`{candidate}` was the only strategy with finished runs: nothing to decide")  # fmt: skip
    tests = compare_metric(values, candidate, measure, confidence, log=log)
    alpha = 1.0 - confidence
    # the closest: the largest adjusted p (untested pairs first), then the smallest gap
    closest = max(tests, key=lambda c: (c.p_adjusted if math.isfinite(c.p_adjusted) else math.inf, -c.delta))
    decided = all(math.isfinite(c.p_adjusted) and c.p_adjusted < alpha and c.delta > 0 for c in tests)
    ratio = math.exp(-closest.delta) if log and math.isfinite(closest.delta) else None
    gap = f"ratio {ratio:.3g}" if ratio is not None else f"difference {-closest.delta:.3g}"
    p = f"Holm p {closest.p_adjusted:.2g}" if math.isfinite(closest.p_adjusted) else closest.verdict
    n = f"{len(values[candidate])} vs {len(values[closest.strategy])} seeds"
    name = "FID" if log else measure
    if decided:
        words = (f"`{candidate}` has the best {name} and is better than each of the other {len(tests)} strategies "
                 f"(Welch over seeds, Holm; the closest, `{closest.strategy}`: {gap}, {p}, {n})")  # fmt: skip
    else:
        words = (f"undecided: `{candidate}` has the best mean {name} but is not shown better than "
                 f"`{closest.strategy}` ({gap}, {p}, {n}); more seeds (`aegan decide`) can decide it")  # fmt: skip
    return Winner(candidate, measure, mean, len(values), decided, closest.strategy, ratio,
                  float(closest.delta), float(closest.p_adjusted), words)  # fmt: skip
