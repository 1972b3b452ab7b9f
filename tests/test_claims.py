"""*Faster* and *more stable* as tested statements (report/claims.py), on synthetic runs where the answer is known:
a clearly faster strategy is found faster, a wider spread is found less stable, and with no difference at all
the tests call one at most at the nominal rate over many simulated repetitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aegan.report.claims import budget_to_target, log_area, speed, spread_tests

BUDGETS = np.arange(100, 1001, 100)


def synthetic(rng, rates: dict[str, float], seeds: int, noise: float = 0.05, final_spread: dict | None = None):
    """Histories and runs of strategies whose small-sample FID falls as 10 + 200 exp(-budget / rate), with
    multiplicative noise per evaluation; final FID per seed drawn around 30 with the given spread."""
    histories, rows = {}, []
    for s, rate in rates.items():
        for seed in range(seeds):
            fid = (10 + 200 * np.exp(-BUDGETS / rate)) * np.exp(rng.normal(0, noise, len(BUDGETS)))
            histories[(s, seed)] = pd.DataFrame({"step": BUDGETS, "fid_small": fid})
            spread = (final_spread or {}).get(s, 2.0)
            rows.append({"strategy": s, "seed": seed, "status": "finished", "ae_steps_charged": 0,
                         "fid": 30 + rng.normal(0, spread)})  # fmt: skip
    return histories, pd.DataFrame(rows)


def test_budget_to_target_and_log_area_on_a_known_curve():
    budget, fid = np.array([10.0, 20.0, 30.0]), np.array([100.0, 40.0, 10.0])
    assert budget_to_target(budget, fid, 40.0) == 20.0 and np.isnan(budget_to_target(budget, fid, 5.0))
    # log FID linear between the points: mean over [15, 30] of the interpolated log curve
    y = np.log(fid)
    at15 = (y[0] + y[1]) / 2
    assert log_area(budget, fid, 15.0, 30.0) == pytest.approx(((at15 + y[1]) / 2 * 5 + (y[1] + y[2]) / 2 * 10) / 15)
    assert np.isnan(log_area(budget, fid, 5.0, 30.0))  # the curve does not cover the span


def test_a_clearly_faster_strategy_is_faster_on_both_measures():
    rng = np.random.default_rng(0)
    histories, runs = synthetic(rng, {"dcgan": 400.0, "fast": 120.0, "same": 400.0}, seeds=5)
    sp = speed(histories, runs, ["dcgan", "fast", "same"], list(range(5)), "dcgan", 0.95, 100)
    verdicts = {(c.strategy, c.metric): c for c in sp.comparisons}
    for metric in ("budget_to_target", "log_fid_area"):
        assert verdicts[("fast", metric)].delta < 0 and verdicts[("fast", metric)].verdict.startswith("faster than dcgan")
        assert verdicts[("same", metric)].verdict.startswith("no clear difference")
    assert sp.target == pytest.approx(2 * np.mean([h["fid_small"].iloc[-1] for (s, _), h in histories.items()
                                                   if s == "dcgan"]))  # fmt: skip


def test_a_strategy_that_never_reaches_the_target_is_not_tested_on_it():
    rng = np.random.default_rng(1)
    histories, runs = synthetic(rng, {"dcgan": 200.0, "stuck": 1e6}, seeds=3)
    sp = speed(histories, runs, ["dcgan", "stuck"], [0, 1, 2], "dcgan", 0.95, 100)
    (c,) = [c for c in sp.comparisons if c.metric == "budget_to_target"]
    assert c.verdict == "not tested: 3 of 3 run(s) of `stuck` never reached the target"
    (area,) = [c for c in sp.comparisons if c.metric == "log_fid_area"]
    assert area.verdict.startswith("slower than dcgan")  # the area still compares: its curve stays high


def test_a_wider_spread_over_seeds_is_less_stable_and_an_equal_one_is_no_clear_difference():
    rng = np.random.default_rng(2)
    _, runs = synthetic(rng, {"dcgan": 1.0, "wild": 1.0, "calm": 1.0}, seeds=10,
                        final_spread={"dcgan": 1.0, "wild": 15.0, "calm": 1.0})  # fmt: skip
    got = {t.strategy: t for t in spread_tests(runs, "dcgan", 0.05)}
    assert got["wild"].verdict.startswith("less stable than dcgan") and got["wild"].p_adjusted < 0.05
    assert got["calm"].verdict.startswith("no clear difference in spread")


def test_with_no_difference_the_tests_call_one_at_most_at_the_nominal_rate():
    """Holm over the strategies: the chance that any of them is called faster, slower, more or less stable when
    all are the same is at most alpha (here checked to within two binomial standard errors over 300 repeats)."""
    rng = np.random.default_rng(3)
    reps, alarms = 300, {"log_fid_area": 0, "budget_to_target": 0, "spread": 0}
    names = ["dcgan", "a", "b", "c"]
    for _ in range(reps):
        histories, runs = synthetic(rng, dict.fromkeys(names, 300.0), seeds=3, noise=0.1)
        sp = speed(histories, runs, names, [0, 1, 2], "dcgan", 0.95, 100)
        for metric in ("log_fid_area", "budget_to_target"):
            alarms[metric] += any(c.p_adjusted < 0.05 for c in sp.comparisons if c.metric == metric)
        alarms["spread"] += any(t.p_adjusted < 0.05 for t in spread_tests(runs, "dcgan", 0.05))
    bound = 0.05 + 2 * (0.05 * 0.95 / reps) ** 0.5
    assert all(v / reps <= bound for v in alarms.values()), alarms
