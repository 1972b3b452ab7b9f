"""The three claims as tested statements (report/claims.py), on synthetic runs where the answer is known: a
slow starter is slower, a collapsing strategy less stable, an oscillating one oscillates more, a 3x FID is worse on
the log scale, only the declared primary measure gives a verdict, and with no difference at all every test calls
one at most at its nominal rate over hundreds of simulated repetitions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from aegan.report.claims import claims, failure_tests, log_area, oscillation, reached_at
from params_file import validated

BUDGETS = np.arange(0, 1001, 25)
ALPHA = 0.05


def params_for(strategies, **report):
    return validated({"strategies": strategies, "seeds": [0, 1], "train": {"budget": 1000, "eval_every": 25},
                      "report": report})  # fmt: skip


def synthetic(rng, strategies: dict[str, dict], seeds: int):
    """Histories and runs: strategy -> {rate, final (geometric mean FID), spread (log sd), wobble (late log sd),
    fail (share of collapsed runs)}. Small-sample FID falls as floor + 300 exp(-budget / rate), noise on the log."""
    histories, rows = {}, []
    for s, spec in strategies.items():
        for seed in range(seeds):
            rate, wobble = spec.get("rate", 150.0), spec.get("wobble", 0.0)
            curve = 20 + 300 * np.exp(-BUDGETS / rate)
            late = BUDGETS > 750
            log_fid = np.log(curve) + rng.normal(0, 0.03, len(BUDGETS)) + late * rng.normal(0, wobble, len(BUDGETS))
            histories[(s, seed)] = pd.DataFrame({"step": BUDGETS, "fid_small": np.exp(log_fid)})
            collapsed = rng.random() < spec.get("fail", 0.0)
            rows.append({"strategy": s, "seed": seed, "status": "finished", "ae_steps_charged": 0,
                         "fid": spec.get("final", 30.0) * math.exp(rng.normal(0, spec.get("spread", 0.1))),
                         "kid_mean": rng.normal(0.01, 0.002), "precision": 0.8,
                         "recall": 0.1 if collapsed else 0.7})  # fmt: skip
    return histories, pd.DataFrame(rows)


def verdict(cl, strategy: str, claim: str) -> str:
    t = cl.test(strategy, cl.primary[claim])
    return t.verdict


def test_area_target_and_oscillation_on_known_curves():
    budget, fid = np.array([0.0, 10.0, 20.0]), np.array([100.0, 40.0, 10.0])
    assert reached_at(budget, fid, 40.0) == 10.0 and math.isnan(reached_at(budget, fid, 5.0))
    y = np.log(fid)
    assert log_area(budget, fid, 0.0, 20.0) == pytest.approx(((y[0] + y[1]) / 2 * 10 + (y[1] + y[2]) / 2 * 10) / 20)
    assert math.isnan(log_area(budget[1:], fid[1:], 0.0, 20.0))  # a curve that starts late does not cover [0, B]
    b = np.arange(0, 101, 10.0)
    assert oscillation(b, np.exp(5 - b / 50), 0.5) == pytest.approx(0.0, abs=1e-9)  # a steady trend is no oscillation
    zigzag = np.exp(3 + 0.2 * (-1.0) ** np.arange(len(b)))
    assert oscillation(b, zigzag, 0.5) > 0.15


def test_a_slow_starter_is_slower_and_a_fast_one_faster():
    rng = np.random.default_rng(1)
    h, runs = synthetic(rng, {"dcgan": {"rate": 150}, "ae_init": {"rate": 400}, "ae_hybrid": {"rate": 50}}, seeds=5)
    cl = claims(runs, h, {}, None, params_for(["dcgan", "ae_init", "ae_hybrid"]))
    assert verdict(cl, "ae_init", "faster").startswith("slower") and verdict(cl, "ae_hybrid", "faster").startswith("faster")
    assert cl.span == (0.0, 1000.0)


def test_a_collapsing_strategy_is_less_stable_by_its_failure_rate():
    rng = np.random.default_rng(2)
    h, runs = synthetic(rng, {"dcgan": {}, "ae_disc": {"fail": 1.0}, "vaegan": {}}, seeds=8)
    cl = claims(runs, h, {}, None, params_for(["dcgan", "ae_disc", "vaegan"]))
    assert verdict(cl, "ae_disc", "stable").startswith("less stable")
    assert verdict(cl, "vaegan", "stable").startswith("undecided at this n")  # 0 of 8 each: not yet surely within 0.25
    failed = cl.runs.groupby("strategy")["failed"].sum()
    assert failed["ae_disc"] == 8 and failed["dcgan"] == 0


def test_an_oscillating_strategy_oscillates_more_when_that_is_the_primary_measure():
    rng = np.random.default_rng(3)
    h, runs = synthetic(rng, {"dcgan": {}, "ae_manifold": {"wobble": 0.3}}, seeds=5)
    cl = claims(runs, h, {}, None, params_for(["dcgan", "ae_manifold"], primary={"stable": "fid_oscillation"}))
    assert verdict(cl, "ae_manifold", "stable").startswith("less stable")
    # declared failure_rate instead: oscillation is shown, but as secondary, never a verdict
    cl = claims(runs, h, {}, None, params_for(["dcgan", "ae_manifold"]))
    assert cl.test("ae_manifold", "fid_oscillation").verdict.startswith("secondary, not a verdict")


def test_better_is_tested_on_the_log_scale_and_kid_is_secondary():
    rng = np.random.default_rng(4)
    # a right-skewed worse strategy: FID around 3x the baseline's with a wide log spread
    h, runs = synthetic(rng, {"dcgan": {"final": 33.0, "spread": 0.08}, "ae_disc": {"final": 100.0, "spread": 0.5}}, 4)
    cl = claims(runs, h, {}, None, params_for(["dcgan", "ae_disc"]))
    fid = cl.test("ae_disc", "fid")
    assert fid.primary and fid.log and fid.verdict.startswith("worse")
    assert math.exp(fid.delta) == pytest.approx(np.exp(np.log(runs.fid[4:]).mean() - np.log(runs.fid[:4]).mean()))
    assert cl.test("ae_disc", "kid_mean").verdict.startswith("secondary")


def test_with_no_difference_each_primary_test_calls_one_at_most_at_the_nominal_rate():
    """300 simulated comparisons with 4 seeds a side and nothing different: better, faster and stable (here the
    oscillation) each give a verdict in at most α of them (plus binomial slack)."""
    rng = np.random.default_rng(5)
    calls = {"better": 0, "faster": 0, "stable": 0}
    repeats = 300
    params = params_for(["dcgan", "ae_init"], primary={"stable": "fid_oscillation"})  # ae_init: the same as dcgan
    for _ in range(repeats):
        h, runs = synthetic(rng, {"dcgan": {"wobble": 0.05}, "ae_init": {"wobble": 0.05}}, seeds=4)
        cl = claims(runs, h, {}, None, params)
        for claim in calls:
            t = cl.test("ae_init", cl.primary[claim])
            calls[claim] += t.p_adjusted < ALPHA
    slack = 2 * math.sqrt(ALPHA * (1 - ALPHA) / repeats)
    assert all(c / repeats <= ALPHA + slack for c in calls.values()), calls


def test_boschloo_on_failure_counts_keeps_its_level_under_the_null():
    """Both strategies fail with the same probability (0.3, 8 runs each): Boschloo's exact test rejects at most at
    α over 300 repeats (an exact test is conservative)."""
    rng = np.random.default_rng(6)
    rejections = 0
    for _ in range(300):
        table = pd.DataFrame({"strategy": ["dcgan"] * 8 + ["ae_init"] * 8, "failed": rng.random(16) < 0.3})
        (t,) = failure_tests(table, "dcgan", ["dcgan", "ae_init"])
        rejections += t.p_value < ALPHA
    assert rejections / 300 <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / 300)


def test_study_runs_count_in_the_failure_rate_but_setting_0_only_once():
    rng = np.random.default_rng(7)
    h, runs = synthetic(rng, {"dcgan": {}, "ae_disc": {"fail": 1.0}}, seeds=2)
    study = pd.DataFrame([{"strategy": s, "seed": seed, "setting": k, "diverged": False, "collapsed": s == "ae_disc"}
                          for s in ("dcgan", "ae_disc") for k in (0, 1, 2) for seed in (0, 1)])  # fmt: skip
    cl = claims(runs, h, {}, study, params_for(["dcgan", "ae_disc"]))
    t = cl.test("ae_disc", "failure_rate")
    assert (t.n, t.n_baseline) == (6, 6)  # 2 seeds + 2 drawn settings x 2 seeds; setting 0 is the seeds' own runs
    assert t.delta == pytest.approx(1.0)


def test_the_spread_test_is_an_f_test_on_log_values_and_keeps_its_level_at_two_runs_a_side():
    """Brown-Forsythe at 2 values a side was degenerate (p 0 whatever the spreads) and liberal at 4 (7%): the F test
    of the ratio of variances of log FID is exact for normal logs at any n >= 2."""
    from scipy import stats

    from aegan.report.claims import spread_tests

    runs = pd.DataFrame({"strategy": ["dcgan"] * 2 + ["ae_init"] * 2, "status": "finished",
                         "fid": [30.0, 31.0, 30.0, 60.0]})  # fmt: skip
    (t,) = spread_tests(runs, "dcgan", ALPHA)
    f = np.log([30.0, 60.0]).var(ddof=1) / np.log([30.0, 31.0]).var(ddof=1)
    assert t.p_value == pytest.approx(2 * stats.f(1, 1).sf(f)) and 0 < t.p_value < 1
    rng = np.random.default_rng(9)
    rejections = 0
    for _ in range(1000):
        fids = 30 * np.exp(rng.normal(0, 0.2, 4))
        runs = pd.DataFrame({"strategy": ["dcgan", "dcgan", "ae_init", "ae_init"], "status": "finished", "fid": fids})
        rejections += spread_tests(runs, "dcgan", ALPHA)[0].p_value < ALPHA
    assert rejections / 1000 <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / 1000)


def test_with_no_difference_the_secondary_tests_call_one_at_most_at_the_nominal_rate():
    """The secondary measures are tests too: KID (Welch), late oscillation (Welch on logs) and the spread over seeds
    (F test on log FID), 300 null repeats at 4 seeds a side, each below α plus binomial slack."""
    rng = np.random.default_rng(8)
    calls = {"kid_mean": 0, "fid_oscillation": 0, "fid_spread": 0}
    repeats = 300
    params = params_for(["dcgan", "ae_init"])
    for _ in range(repeats):
        h, runs = synthetic(rng, {"dcgan": {"wobble": 0.05}, "ae_init": {"wobble": 0.05}}, seeds=4)
        cl = claims(runs, h, {}, None, params)
        for measure in calls:
            calls[measure] += cl.test("ae_init", measure).p_adjusted < ALPHA
    slack = 2 * math.sqrt(ALPHA * (1 - ALPHA) / repeats)
    assert all(c / repeats <= ALPHA + slack for c in calls.values()), calls


def test_a_strategy_like_the_baseline_is_equivalent_and_one_20_percent_worse_is_not():
    """Many seeds and little spread: the same FID is "equivalent" within x1.1 (TOST); 20% worse is "worse", never
    "equivalent"; at 3 seeds with a wide spread the same strategy is "undecided" (neither)."""
    rng = np.random.default_rng(7)
    spec = {"dcgan": {"spread": 0.03}, "ae_init": {"spread": 0.03}, "ae_disc": {"final": 36.0, "spread": 0.03}}
    h, runs = synthetic(rng, spec, seeds=12)
    cl = claims(runs, h, {}, None, params_for(list(spec)))
    assert verdict(cl, "ae_init", "better").startswith("equivalent to `dcgan` within ×1.1")
    assert verdict(cl, "ae_disc", "better").startswith("worse")
    wide = {s: v | {"spread": 0.3} for s, v in spec.items()}
    h, runs = synthetic(np.random.default_rng(8), wide, seeds=3)
    cl = claims(runs, h, {}, None, params_for(list(wide)))
    assert verdict(cl, "ae_init", "better").startswith("undecided at this n")


def test_tost_is_schuirmanns_on_log_fid_and_the_margin_comes_from_params():
    from statsmodels.stats.weightstats import ttost_ind

    rng = np.random.default_rng(3)
    h, runs = synthetic(rng, {"dcgan": {}, "ae_init": {"final": 31.0}}, seeds=6)
    cl = claims(runs, h, {}, None, params_for(["dcgan", "ae_init"], equivalence={"fid": 1.2}))
    t = cl.test("ae_init", "fid")
    logs = {s: np.log(runs.loc[runs["strategy"] == s, "fid"].to_numpy()) for s in ("ae_init", "dcgan")}
    p, _, _ = ttost_ind(logs["ae_init"], logs["dcgan"], -math.log(1.2), math.log(1.2), usevar="unequal")
    assert t.margin == pytest.approx(math.log(1.2)) and t.p_equivalence == pytest.approx(p, rel=1e-9)


def test_equivalence_at_the_margin_is_called_at_most_at_the_nominal_rate():
    """The hardest case for "equivalent": the true ratio sits exactly on the margin (x1.1). Over 2,000 simulated
    repetitions at 6 seeds a side, the TOST behind "equivalent" rejects at most at alpha (plus Monte Carlo error)."""
    from aegan.report.claims import equivalence_p
    from aegan.report.comparison import compare_metric

    rng = np.random.default_rng(11)
    repeats, calls = 2000, 0
    for _ in range(repeats):
        values = {"dcgan": 30 * np.exp(rng.normal(0, 0.05, 6)), "ae_init": 33 * np.exp(rng.normal(0, 0.05, 6))}
        (t,) = compare_metric(values, "dcgan", "fid", 1 - ALPHA, log=True)
        t.margin = math.log(1.1)
        calls += equivalence_p(t, None) < ALPHA
    assert calls / repeats <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / repeats)
    assert calls / repeats > ALPHA / 3  # and it is not so conservative that it could never call one
