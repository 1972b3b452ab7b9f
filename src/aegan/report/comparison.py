"""Each strategy against the baseline, over training seeds: Welch t tests for FID and KID, Holm across strategies.

Per metric, each strategy's difference of means to the baseline gets a Welch
t interval and p-value (scipy, unequal variances). The p-values of the
strategies compared are Holm-adjusted (a family per metric); the adjusted
interval is the simultaneous Bonferroni interval at level
1 - (1 - confidence) / m. The verdict uses the Holm-adjusted p. For each
comparison, the smallest difference its n and observed spreads could detect
(80% power, at the adjusted level) says what a "no clear difference" can and
cannot rule out. With fewer than 2 finished seeds on a side, or no spread on
either side, nothing is tested and the reading says why. Each comparison keeps
the spreads, m and level it was made with (seeds.py scales it to other n).
FID is compared on the log scale (`LOG_SCALE`): its difference is a log ratio,
exp(delta) the ratio of geometric means to the baseline's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

POWER = 0.8
NAMES = {"fid": "FID", "kid_mean": "KID (×1)"}  # KID as torch-fidelity gives it: not scaled (papers often give ×10³)
LOG_SCALE = {"fid"}  # compared as logs: FID is right-skewed and its differences multiply (exp(delta): a ratio)


@dataclass
class Comparison:
    strategy: str
    metric: str
    n: int
    n_baseline: int
    delta: float  # mean of the strategy minus mean of the baseline: negative = better (lower FID/KID)
    ci_low: float = math.nan  # Welch t interval at `confidence`
    ci_high: float = math.nan
    p_value: float = math.nan  # raw, two-sided
    p_adjusted: float = math.nan  # Holm, across the strategies compared on this metric
    adj_low: float = math.nan  # simultaneous (Bonferroni) interval
    adj_high: float = math.nan
    detectable: float = math.nan  # smallest |difference| this n and spread detect with POWER at the adjusted level
    verdict: str = ""
    std: float = math.nan  # sample std over seeds of the strategy (NaN for fewer than 2), as the test used it
    std_baseline: float = math.nan  # and of the baseline
    family: int = 0  # m: how many strategies were tested on this metric (Holm's family, the adjusted level's m)
    confidence: float = math.nan  # the level the comparison was made at (alpha = 1 - confidence)
    log: bool = False  # values were compared as logs: delta, intervals and detectable are log ratios
    primary: bool = False  # the declared primary measure of its claim (claims.py): only these give verdicts
    events: tuple[int, int] | None = None  # a test of proportions: (runs with the event, the baseline's runs with it)
    se: float = math.nan  # standard error of delta (Welch), where a t test was made
    df: float = math.nan  # its Welch-Satterthwaite degrees of freedom
    margin: float = math.nan  # equivalence margin on delta's scale (claims.py): equivalent when surely within ±margin
    p_equivalence: float = math.nan  # TOST: the larger of the two one-sided p-values against ±margin
    p_equivalence_adjusted: float = math.nan  # Holm, across the strategies tested on this metric


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment; NaN p-values (nothing tested) stay NaN and do not count in m.

    Equal to statsmodels' `multipletests(method="holm")` (tests/test_comparison.py checks it), which runs a full
    garbage collection on every call: about 50 ms, where metrics_diff and the tests call it thousands of times.
    """
    idx = [i for i, p in enumerate(pvalues) if math.isfinite(p)]
    m, out, running = len(idx), [math.nan] * len(pvalues), 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def welch(a: np.ndarray, b: np.ndarray, confidence: float):
    """Welch's t test of mean(a) - mean(b): the scipy result and its interval; None when neither side has spread."""
    from scipy import stats

    # no spread on either side, or only rounding noise (values equal but for the last bits): nothing to test
    tiny = 1e-12 * max(1.0, abs(float(a.mean())), abs(float(b.mean())))
    if a.std(ddof=1) <= tiny and b.std(ddof=1) <= tiny:
        return None
    res = stats.ttest_ind(a, b, equal_var=False)
    return res, res.confidence_interval(confidence_level=confidence)


def compare_metric(values: dict[str, np.ndarray], baseline: str, metric: str, confidence: float,
                   log: bool = False) -> list[Comparison]:  # fmt: skip
    """Each strategy's values against the baseline's (Welch, Holm); `log`: compare their logs (positive values)."""
    from scipy import stats

    if log:
        values = {s: np.log(np.maximum(np.asarray(v, float), 1e-300)) for s, v in values.items()}
    base = values.get(baseline, np.array([]))
    others = [s for s in values if s != baseline]
    out, tests = [], {}
    for s in others:
        a = values[s]
        c = Comparison(s, metric, len(a), len(base), float(a.mean() - base.mean()) if len(a) and len(base) else math.nan,
                       std=_std(a), std_baseline=_std(base), confidence=confidence, log=log)  # fmt: skip
        if len(a) < 2 or len(base) < 2:
            c.verdict = (f"n too small to tell: {len(a)} finished seed(s) against {len(base)} for {baseline}; "
                         "a test needs at least 2 on each side")  # fmt: skip
        elif (tested := welch(a, base, confidence)) is None:
            c.verdict = "undefined: no spread over seeds on either side, so no test (p and interval undefined)"
        else:
            res, ci = tested
            c.ci_low, c.ci_high, c.p_value = float(ci.low), float(ci.high), float(res.pvalue)
            tests[s] = (res, math.sqrt(a.var(ddof=1) / len(a) + base.var(ddof=1) / len(base)))
            c.se, c.df = tests[s][1], float(res.df)
        out.append(c)
    m = len(tests)
    alpha = 1.0 - confidence
    for c, p_adj in zip(out, holm([c.p_value for c in out])):
        c.family = m
        if c.strategy not in tests:
            continue
        res, se = tests[c.strategy]
        c.p_adjusted = p_adj
        half = float(stats.t.ppf(1 - alpha / (2 * m), res.df)) * se
        c.adj_low, c.adj_high = c.delta - half, c.delta + half
        c.detectable = float((stats.t.ppf(1 - alpha / (2 * m), res.df) + stats.t.ppf(POWER, res.df)) * se)
        name = NAMES.get(metric, metric)
        if p_adj < alpha:
            word = "better" if c.delta < 0 else "worse"
            c.verdict = f"{word} than {baseline}: {'lower' if c.delta < 0 else 'higher'} {name} (Holm-adjusted p < {alpha:g})"
        else:
            unseen = (f"a true ratio within ×{math.exp(c.detectable):.3g} either way" if log else
                      f"a true difference smaller than {c.detectable:.3g}")  # fmt: skip
            c.verdict = f"no clear difference from {baseline} at n = {c.n} vs {c.n_baseline}: {unseen} would likely go unseen"
    return out


def tost_mean(delta: float, se: float, df: float, margin: float) -> float:
    """Two one-sided t tests of |true delta| >= margin (Schuirmann): the larger p; small = surely within ±margin."""
    from scipy import stats

    if not (math.isfinite(se) and se > 0 and math.isfinite(margin)):
        return math.nan
    return float(max(stats.t.sf((delta + margin) / se, df), stats.t.cdf((delta - margin) / se, df)))


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


def compare_with_baseline(runs: pd.DataFrame, baseline: str, confidence: float,
                          metrics: tuple[str, ...] = ("fid", "kid_mean")) -> list[Comparison]:  # fmt: skip
    """Every strategy against `baseline` on each of `metrics`, over finished training seeds."""
    finished = runs[runs["status"] == "finished"]
    order = list(runs["strategy"].drop_duplicates())
    out = []
    for metric in metrics:
        values = {s: finished.loc[finished["strategy"] == s, metric].dropna().to_numpy(dtype=float) for s in order}
        out += compare_metric(values, baseline, metric, confidence, log=metric in LOG_SCALE)
    return out
