"""The budget axis: generator-side updates, the AE pretraining a strategy relies on included (docs/design.md, the protocol).

A strategy that uses the AE is charged `ae_steps_charged` updates before its
own first step, so its curve on this axis starts there. On it the report
checks that the baseline's small-sample FID has flattened by the end of the
budget, and compares the ranking at the matched budget with the ranking at
equal own steps (the head-start view, which credits the AE's pretraining for free).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from aegan.report.tables import mean_curve


def charged_steps(runs: pd.DataFrame, strategy: str) -> int:
    """AE pretraining updates charged to `strategy` (the same for all its seeds; 0 when it uses no AE)."""
    values = pd.to_numeric(runs.loc[runs["strategy"] == strategy, "ae_steps_charged"], errors="coerce").dropna()
    return int(values.iloc[0]) if len(values) else 0


def budget_curve(histories: dict, runs: pd.DataFrame, strategy: str, seeds: list[int], column: str) -> pd.DataFrame:
    """step, budget, mean, std over seeds of one logged column, with budget = own step + charged AE steps."""
    curve = mean_curve(histories, strategy, seeds, column)
    return curve.assign(budget=curve["step"] + charged_steps(runs, strategy))


@dataclass
class Plateau:
    flat: bool | None  # None: too few evaluations to tell
    last: float  # mean small-sample FID over the last quarter of the budget
    previous: float  # ... over the quarter before it
    change: float  # |last - previous| / previous
    tolerance: float


def plateau(curve: pd.DataFrame, tolerance: float) -> Plateau:
    """Has a budget curve flattened: is the mean over its last quarter within `tolerance` of the quarter before?"""
    if curve.empty:
        return Plateau(None, math.nan, math.nan, math.nan, tolerance)
    end = curve["budget"].max()
    last = curve.loc[curve["budget"] > 0.75 * end, "mean"]
    previous = curve.loc[(curve["budget"] > 0.5 * end) & (curve["budget"] <= 0.75 * end), "mean"]
    if last.empty or previous.empty:
        return Plateau(None, math.nan, math.nan, math.nan, tolerance)
    change = abs(last.mean() - previous.mean()) / previous.mean()
    return Plateau(bool(change <= tolerance), float(last.mean()), float(previous.mean()), float(change), tolerance)


def value_at_step(curve: pd.DataFrame, step: int) -> float:
    """The curve's mean at its last evaluation at or before own step `step`."""
    before = curve[curve["step"] <= step]
    return float(before["mean"].iloc[-1]) if len(before) else math.nan


def rankings(histories: dict, runs: pd.DataFrame, strategies: list[str], seeds: list[int]) -> dict:
    """Small-sample FID of each strategy at the matched budget (its last evaluation) and at equal own steps
    (every strategy after as many own updates as the one with the fewest; the head-start view), both sorted."""
    curves = {s: budget_curve(histories, runs, s, seeds, "fid_small") for s in strategies}
    curves = {s: c for s, c in curves.items() if len(c)}
    if not curves:
        return {"matched": [], "own_steps": [], "own_step": None}
    own = int(min(c["step"].max() for c in curves.values()))
    matched = sorted(((s, float(c["mean"].iloc[-1])) for s, c in curves.items()), key=lambda t: t[1])
    at_own = sorted(((s, value_at_step(c, own)) for s, c in curves.items()), key=lambda t: (math.isnan(t[1]), t[1]))
    return {"matched": matched, "own_steps": at_own, "own_step": own}
