"""Two of the seeds' claims as tested statements: *faster* (budget to a target, area under the curve) and *more
stable* (spread over seeds), each strategy against the baseline, Holm across strategies.

Faster, per (strategy, seed), from its small-sample FID curve on the budget axis (AE pretraining charged):
- budget to target: the first evaluation at which the curve is at or below the target, twice the baseline's
  final small-sample FID (mean over its seeds); its resolution is `train.eval_every`. A run that never gets
  there is "not reached", and a strategy with such a run is not tested (its mean would drop the slowest).
- mean log small-sample FID over the budget: the trapezoid area under log FID divided by the span, over the
  span every strategy's curve covers (from the latest first evaluation, an AE strategy's first own one, to the
  budget). Lower is faster: the curve is lower for longer.
Both are compared like FID (comparison.compare_metric: Welch t, Holm, the smallest detectable difference).

More stable: each strategy's final FID over seeds against the baseline's with the Brown-Forsythe test
(scipy.stats.levene, center="median": robust to a skewed spread), Holm across strategies. With 3 seeds a side
only a several-fold difference in spread is likely to be seen: the reading says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aegan.report.budget import charged_steps
from aegan.report.comparison import Comparison, compare_metric, holm

TARGET_FACTOR = 2.0  # the target: twice the baseline's final small-sample FID
SPEED_NAMES = {"budget_to_target": "budget to target", "log_fid_area": "mean log FID over budget"}


@dataclass
class Speed:
    runs: pd.DataFrame  # strategy, seed, budget_to_target (NaN: not reached), log_fid_area
    target: float  # small-sample FID
    span: tuple[float, float]  # budget range of the area
    eval_every: int
    comparisons: list[Comparison]


def run_curves(histories: dict, runs: pd.DataFrame, strategies: list[str], seeds: list[int]) -> dict:
    """(strategy, seed) -> (budget, fid_small) arrays of each finished run that logged a curve."""
    finished = runs[runs["status"] == "finished"]
    out = {}
    for s in strategies:
        charged = charged_steps(runs, s)
        for seed in seeds:
            h = histories.get((s, seed))
            if h is None or "fid_small" not in h or not ((finished["strategy"] == s) & (finished["seed"] == seed)).any():
                continue
            curve = h[["step", "fid_small"]].dropna()
            if len(curve):
                out[(s, seed)] = (curve["step"].to_numpy(float) + charged, curve["fid_small"].to_numpy(float))
    return out


def budget_to_target(budget: np.ndarray, fid: np.ndarray, target: float) -> float:
    reached = np.nonzero(fid <= target)[0]
    return float(budget[reached[0]]) if len(reached) else math.nan


def log_area(budget: np.ndarray, fid: np.ndarray, start: float, end: float) -> float:
    """Mean of log FID over [start, end]: trapezoids between the evaluations, log FID linearly interpolated at
    the two ends; NaN where the curve does not cover the span."""
    if end <= start or not (np.all(fid > 0) and budget[0] <= start and budget[-1] >= end):
        return math.nan
    x = np.unique(np.concatenate([[start, end], budget[(budget > start) & (budget < end)]]))
    y = np.interp(x, budget, np.log(fid))
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (end - start))


def speed(histories: dict, runs: pd.DataFrame, strategies: list[str], seeds: list[int], baseline: str,
          confidence: float, eval_every: int) -> Speed | None:  # fmt: skip
    """Budget to target and mean log FID of every finished run, and each strategy against `baseline`; None when
    the baseline has no curve (nothing to set the target by)."""
    curves = run_curves(histories, runs, strategies, seeds)
    finals = [fid[-1] for (s, _), (_, fid) in curves.items() if s == baseline]
    if not finals:
        return None
    target = TARGET_FACTOR * float(np.mean(finals))
    start = max(budget[0] for budget, _ in curves.values())
    end = min(budget[-1] for budget, _ in curves.values())
    rows = [{"strategy": s, "seed": seed, "budget_to_target": budget_to_target(b, f, target),
             "log_fid_area": log_area(b, f, start, end)} for (s, seed), (b, f) in curves.items()]  # fmt: skip
    table = pd.DataFrame(rows, columns=["strategy", "seed", "budget_to_target", "log_fid_area"])
    comparisons = []
    for metric in ("budget_to_target", "log_fid_area"):
        values = {s: table.loc[table["strategy"] == s, metric].to_numpy(float) for s in strategies}
        unreached = {s: int(np.isnan(v).sum()) for s, v in values.items()}
        tested = {s: v for s, v in values.items() if unreached[s] == 0}
        for c in compare_metric(tested, baseline, metric, confidence) if baseline in tested else []:
            if math.isfinite(c.p_adjusted) and c.p_adjusted < 1.0 - confidence:  # in the words of this claim
                c.verdict = (f"{'faster' if c.delta < 0 else 'slower'} than {baseline}: {SPEED_NAMES[metric]} "
                             f"{'lower' if c.delta < 0 else 'higher'} (Holm-adjusted p < {1.0 - confidence:g})")  # fmt: skip
            comparisons.append(c)
        for s in strategies:
            if s != baseline and (unreached[s] or baseline not in tested):
                who = s if unreached[s] else baseline
                comparisons.append(Comparison(s, metric, len(values[s]), len(values.get(baseline, [])), math.nan,
                                              verdict=f"not tested: {unreached[who]} of {len(values[who])} run(s) "
                                                      f"of `{who}` never reached the target"))  # fmt: skip
    return Speed(table, target, (start, end), eval_every, comparisons)


@dataclass
class Spread:
    strategy: str
    n: int
    n_baseline: int
    std: float
    std_baseline: float
    p_value: float = math.nan  # Brown-Forsythe
    p_adjusted: float = math.nan  # Holm across strategies
    verdict: str = ""


def spread_tests(runs: pd.DataFrame, baseline: str, alpha: float, metric: str = "fid", unit: str = "seeds") -> list[Spread]:
    """Each strategy's spread over `unit` (its rows: seeds, or a study's settings) of `metric` against the
    baseline's: Brown-Forsythe, Holm."""
    from scipy import stats

    finished = runs[runs["status"] == "finished"]
    values = {s: finished.loc[finished["strategy"] == s, metric].dropna().to_numpy(float)
              for s in runs["strategy"].drop_duplicates()}  # fmt: skip
    base = values.get(baseline, np.array([]))
    out = []
    for s, a in values.items():
        if s == baseline:
            continue
        t = Spread(s, len(a), len(base), float(a.std(ddof=1)) if len(a) > 1 else math.nan,
                   float(base.std(ddof=1)) if len(base) > 1 else math.nan)  # fmt: skip
        if len(a) < 2 or len(base) < 2:
            t.verdict = f"n too small to tell: {len(a)} finished {unit} against {len(base)}; the test needs 2 a side"
        elif np.ptp(a) == 0 and np.ptp(base) == 0:
            t.verdict = "undefined: no spread on either side"
        else:
            t.p_value = float(stats.levene(a, base, center="median").pvalue)
        out.append(t)
    for t, p_adj in zip(out, holm([t.p_value for t in out])):
        if not math.isfinite(p_adj):
            continue
        t.p_adjusted = p_adj
        if p_adj < alpha:
            word = "less stable" if t.std > t.std_baseline else "more stable"
            t.verdict = f"{word} than {baseline}: {'wider' if t.std > t.std_baseline else 'narrower'} spread over {unit}"
        else:
            t.verdict = (f"no clear difference in spread from {baseline} at n = {t.n} vs {t.n_baseline} (with so few "
                         f"{unit} only a several-fold difference is likely to show)")  # fmt: skip
    return out


def summary_entries(sp: Speed | None, spreads: list[Spread], baseline: str) -> dict:
    """What summary.json adds per strategy (and under "speed"): the faster and more-stable figures and tests."""
    out: dict = {}
    if sp is not None:
        for s, g in sp.runs.groupby("strategy", sort=False):
            entry = out.setdefault(s, {})
            for metric in ("budget_to_target", "log_fid_area"):
                v = g[metric].to_numpy(float)
                ok = v[~np.isnan(v)]
                entry[metric] = {"mean": float(ok.mean()) if len(ok) else None,
                                 "std": float(ok.std(ddof=1)) if len(ok) > 1 else None,
                                 "n": int(len(ok)), "runs": int(len(v))}  # fmt: skip
        for c in sp.comparisons:
            if math.isfinite(c.p_value):
                out.setdefault(c.strategy, {})[f"{c.metric}_minus_{baseline}"] = {
                    "mean": c.delta, "ci_low": c.ci_low, "ci_high": c.ci_high, "p": c.p_value, "p_holm": c.p_adjusted,
                    "detectable": c.detectable}  # fmt: skip
        out["speed"] = {"target_fid_small": sp.target, "target_factor": TARGET_FACTOR, "eval_every": sp.eval_every,
                        "area_budget_span": list(sp.span)}  # fmt: skip
    for t in spreads:
        if math.isfinite(t.p_value):
            out.setdefault(t.strategy, {})[f"fid_spread_vs_{baseline}"] = {"p": t.p_value, "p_holm": t.p_adjusted}
    return out
