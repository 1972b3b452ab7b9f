"""How many training seeds a question needs: the smallest FID ratio to the baseline that n seeds per side could
detect, at the spreads this run observed.

FID is compared as logs (comparison.LOG_SCALE), so a difference is a log ratio. For each strategy compared with
the baseline on FID (comparison.compare_metric) and each n in `SEEDS`, the detectable difference is
compare_metric's: (t_{1-alpha/(2m)}(df) + t_POWER(df)) * sqrt(s_a^2/n + s_b^2/n), with s_a and s_b the observed
stds of final log FID over finished seeds, df Welch-Satterthwaite's at that n,
alpha = 1 - confidence and m the strategies tested (the Holm family). It assumes the spreads stay as observed;
with few seeds an observed std is itself rough. At the run's own n (the same on both sides) it is
compare_metric's `detectable`. A strategy with fewer than 2 finished seeds on a side, or no spread on either
side, was not tested and gets no figures: `why` says which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aegan.report.comparison import POWER, Comparison

SEEDS = (2, 3, 4, 5, 6, 8, 10, 15, 20)  # seeds per side in the table
TARGET_SHARE = 0.10  # the difference asked about: a FID ratio of 1 + this to the baseline's (log1p of it as a log)


@dataclass
class SeedsNeeded:
    strategy: str
    n: int  # finished seeds now, of the strategy and of the baseline
    n_baseline: int
    detectable: dict[int, float] = field(default_factory=dict)  # n per side -> smallest detectable |Δ log FID|; {}: none
    n_for_target: int | None = None  # the first n in SEEDS whose detectable is at most the target; None: none is
    why: str = ""  # why there are no figures


def welch_df(std_a: float, std_b: float, n: int) -> float:
    """Welch-Satterthwaite degrees of freedom with n seeds on each side."""
    va, vb = std_a**2 / n, std_b**2 / n
    return (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (n - 1))


def detectable(std_a: float, std_b: float, n: int, alpha: float, m: int) -> float:
    """The smallest true difference n seeds per side detect with POWER at level alpha / m (two-sided)."""
    from scipy import stats

    df = welch_df(std_a, std_b, n)
    return float((stats.t.ppf(1 - alpha / (2 * m), df) + stats.t.ppf(POWER, df)) * math.sqrt((std_a**2 + std_b**2) / n))


def seeds_needed(comparisons: list[Comparison], baseline: str, baseline_mean: float) -> tuple[float, list[SeedsNeeded]]:
    """(the target, one row per strategy compared on FID): the target is a FID ratio of 1 + TARGET_SHARE as a log
    ratio, or TARGET_SHARE of `baseline_mean` where FID was compared on its own scale."""
    fid = [c for c in comparisons if c.metric == "fid"]
    target = math.log1p(TARGET_SHARE) if any(c.log for c in fid) else TARGET_SHARE * baseline_mean
    rows = []
    for c in fid:
        row = SeedsNeeded(c.strategy, c.n, c.n_baseline)
        if c.n < 2 or c.n_baseline < 2:
            row.why = (f"n too small: {c.n} finished seed(s) against {c.n_baseline} for {baseline}; a spread needs "
                       "at least 2 on each side")  # fmt: skip
        elif not math.isfinite(c.p_value):  # compare_metric found no spread on either side: nothing was tested
            row.why = "no spread over seeds on either side: nothing to scale from"
        else:
            alpha = 1.0 - c.confidence
            row.detectable = {n: detectable(c.std, c.std_baseline, n, alpha, c.family) for n in SEEDS}
            row.n_for_target = next((n for n in SEEDS if row.detectable[n] <= target), None)
        rows.append(row)
    return target, rows


def baseline_mean(table, baseline: str) -> float:
    """The baseline's mean final FID from the main table (tables.aggregate); NaN when it was not run."""
    mean = table.loc[table["strategy"] == baseline, "fid_mean"]
    return float(mean.iloc[0]) if len(mean) else math.nan


def summary_entries(target: float, rows: list[SeedsNeeded]) -> dict:
    """What summary.json adds: {"seeds_needed": {strategy: {...}, "target_10pct": ...}}; nothing when no strategy
    was compared. NaN is written as null (atomic.write_json)."""
    if not rows:
        return {}
    entries: dict = {r.strategy: {"n": r.n, "n_baseline": r.n_baseline, "n_for_10pct": r.n_for_target,
                                  "detectable_fid": {str(n): d for n, d in r.detectable.items()}}
                     for r in rows}  # fmt: skip
    return {"seeds_needed": entries | {"target_10pct": target}}
