"""Statistics of the baseline comparison and the budget axis, on small worked examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from aegan.report.budget import Plateau, plateau, rankings
from aegan.report.comparison import compare_metric, holm
from aegan.report.text import fmt


def test_holm_against_a_worked_example():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> monotone: 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([math.nan, 0.01, 0.04])  # nothing tested for the first: not counted in m
    assert math.isnan(adjusted[0]) and adjusted[1:] == pytest.approx([0.02, 0.04])
    assert holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_several_strategies_are_adjusted_together_and_get_simultaneous_intervals():
    base = np.array([50.0, 60.0, 70.0])
    values = {"dcgan": base, "a": np.array([30.0, 32.0, 34.0]), "b": np.array([45.0, 55.0, 52.0])}
    out = {c.strategy: c for c in compare_metric(values, "dcgan", "fid", 0.95)}
    raw = {s: stats.ttest_ind(values[s], base, equal_var=False) for s in ("a", "b")}
    assert [out[s].p_value for s in "ab"] == pytest.approx([raw[s].pvalue for s in "ab"])
    assert [out[s].p_adjusted for s in "ab"] == pytest.approx(holm([raw["a"].pvalue, raw["b"].pvalue]))
    bonferroni = raw["a"].confidence_interval(1 - 0.05 / 2)  # m = 2
    assert (out["a"].adj_low, out["a"].adj_high) == (pytest.approx(bonferroni.low), pytest.approx(bonferroni.high))
    assert out["a"].adj_low < out["a"].ci_low and out["a"].adj_high > out["a"].ci_high  # wider than the raw one


def test_no_spread_on_either_side_gives_an_undefined_p_not_zero():
    out = compare_metric({"dcgan": np.array([7.0, 7.0, 7.0]), "a": np.array([5.0, 5.0, 5.0])}, "dcgan", "fid", 0.95)
    (c,) = out
    assert c.delta == -2.0 and math.isnan(c.p_value) and math.isnan(c.p_adjusted) and math.isnan(c.ci_low)
    assert c.verdict.startswith("undefined: no spread over seeds")


def test_one_seed_has_no_std_and_no_test():
    assert fmt(200.0, math.nan, n=1) == "200 ± –" and fmt(60.0, 10.0, n=3) == "60 ± 10"
    (c,) = compare_metric({"dcgan": np.array([1.0, 2.0, 3.0]), "a": np.array([4.0])}, "dcgan", "fid", 0.95)
    assert c.verdict.startswith("n too small to tell: 1 finished seed(s) against 3") and math.isnan(c.p_value)


def test_detectable_difference_shrinks_with_more_seeds():
    seeds = np.array([45.0, 50.0, 55.0])
    small = compare_metric({"dcgan": seeds + 1, "a": seeds}, "dcgan", "fid", 0.95)[0]
    large = compare_metric({"dcgan": np.tile(seeds, 10) + 1, "a": np.tile(seeds, 10)}, "dcgan", "fid", 0.95)[0]
    se = math.sqrt(2 * seeds.var(ddof=1) / 3)
    assert small.detectable == pytest.approx((stats.t.ppf(1 - 0.025, 4) + stats.t.ppf(0.8, 4)) * se)
    assert large.detectable < small.detectable / 3  # ~sqrt(10) from n, more from the t quantiles
    assert small.verdict.startswith("no clear difference") and f"{small.detectable:.3g}" in small.verdict


def curve(budgets, means):
    return pd.DataFrame({"step": budgets, "budget": budgets, "mean": means, "std": [0.0] * len(means)})


def test_plateau_criterion():
    flat = plateau(curve([20, 40, 60, 80, 100], [80, 40, 30, 29, 31]), 0.1)  # (29 + 31) / 2 vs 30: 0%
    assert flat.flat is True and flat.change == pytest.approx(0.0)
    falling = plateau(curve([20, 40, 60, 80, 100], [80, 40, 30, 20, 18]), 0.1)
    assert falling.flat is False and falling.change == pytest.approx(abs(19 - 30) / 30)
    assert plateau(curve([100], [5.0]), 0.1).flat is None and isinstance(plateau(curve([], []), 0.1), Plateau)


def test_rankings_on_the_budget_axis_charge_the_ae_steps():
    runs = pd.DataFrame({"strategy": ["g", "a"], "ae_steps_charged": [0, 50]})
    histories = {("g", 0): pd.DataFrame({"step": [50, 100], "fid_small": [40.0, 20.0]}),
                 ("a", 0): pd.DataFrame({"step": [50], "fid_small": [30.0]})}  # fmt: skip
    r = rankings(histories, runs, ["g", "a"], [0])
    assert r["matched"] == [("g", 20.0), ("a", 30.0)]  # both at budget 100
    assert r["own_step"] == 50 and r["own_steps"] == [("a", 30.0), ("g", 40.0)]  # a's head start credited


def test_holm_is_statsmodels_holm(monkeypatch):
    import gc

    import numpy as np
    from statsmodels.stats.multitest import multipletests

    # multipletests calls gc.collect() on every call: 50 ms alone, seconds in a suite holding torch and MLflow
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 12):
        for _ in range(10):
            p = list(rng.uniform(0, 1, m) ** 3)  # many small p-values: the step-down and the cap both matter
            assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))


def test_on_the_log_scale_the_difference_is_a_ratio_and_so_is_what_would_go_unseen():
    values = {"dcgan": np.array([30.0, 33.0, 36.0]), "ae_init": np.array([28.0, 35.0, 31.0])}
    (c,) = compare_metric(values, "dcgan", "fid", 0.95, log=True)
    a, b = np.log(values["ae_init"]), np.log(values["dcgan"])
    assert c.log and c.delta == pytest.approx(a.mean() - b.mean())
    assert c.verdict.startswith("no clear difference from dcgan at n = 3 vs 3: a true ratio within ×")
    assert f"×{np.exp(c.detectable):.3g} either way" in c.verdict
