"""The group-sequential plan (aegan.report.sequential): boundaries, intervals, error rates by simulation, the replay.

Seeded throughout; the simulations repeat the whole procedure (every look, the replication off where it does
not matter) and allow 3 Monte Carlo standard errors over the nominal rate.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from aegan.report import sequential
from aegan.report.claims import spread_tests
from aegan.report.comparison import compare_metric
from aegan.report.sequential import Interval, Plan, boundaries, proportion_interval, replay, spent, verdict

MARGIN = math.log(1.1)
SIGMAS = {"base": 0.036, "s1": 0.12, "s2": 0.44, "s3": 0.067}  # like the committed runs' spreads of log FID
MARGIN_CASE = ({"s1": MARGIN, "s2": -MARGIN}, {"base": 0.05, "s1": 0.05, "s2": 0.08})  # true differences at the margin


def plan_for(strategies=("s1", "s2", "s3"), kind="mean", margin=MARGIN, **changes) -> Plan:
    fields = dict(baseline="base", strategies=tuple(strategies), measures={"better": ("fid", kind, margin)}, start=4,
                  batch=4, max_seeds=20, alpha=0.05, replicate=0)  # fmt: skip
    return Plan(**(fields | changes))


def normal_values(rng, shifts: dict[str, float], sigmas: dict[str, float], n: int = 24) -> dict:
    return {s: {"fid": list(shifts.get(s, 0.0) + sd * rng.standard_normal(n))} for s, sd in sigmas.items()}


def false_rate(plan: Plan, draw, wrong, repeats: int, seed: int) -> float:
    """Share of repeats of the whole procedure with at least one verdict `wrong` (family-wise)."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(repeats):
        outcome = replay(plan, draw(rng))
        assert outcome.done
        hits += any(v.word in wrong for v in outcome.verdicts.values())
    return hits / repeats


def tolerance(alpha: float, repeats: int) -> float:
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / repeats)


# ------------------------------------------------------------------ boundaries
def test_boundaries_match_published_obrien_fleming_type_values():
    # gsDesign sfLDOF / ldbounds, two-sided alpha 0.05 (0.025 a side), equally spaced looks
    assert boundaries((0.2, 0.4, 0.6, 0.8, 1.0), 0.05) == pytest.approx((4.877, 3.357, 2.680, 2.290, 2.031), abs=1e-3)
    assert boundaries((0.5, 1.0), 0.05) == pytest.approx((2.963, 1.969), abs=1e-3)
    assert boundaries((1.0,), 0.05) == pytest.approx((1.959964,), abs=1e-6)
    assert boundaries((1.0,), 0.01) == pytest.approx((2.575829,), abs=1e-6)


def test_boundaries_spend_alpha_as_planned_at_unequal_looks():
    """Checked against an independent computation: P(|Z_j| < c_j for every j <= k) = 1 - alpha(t_k) under H0,
    with corr(Z_i, Z_j) = sqrt(t_i / t_j) (scipy's multivariate normal integration)."""
    fractions = np.array([0.15, 0.45, 0.7, 1.0])
    c = np.array(boundaries(tuple(fractions), 0.01))
    for k in range(1, len(fractions) + 1):
        f = fractions[:k]
        cov = np.sqrt(np.minimum.outer(f, f) / np.maximum.outer(f, f))
        normal = stats.multivariate_normal(np.zeros(k), cov)
        inside = normal.cdf(c[:k], lower_limit=-c[:k], rng=np.random.default_rng(0))
        assert 1 - inside == pytest.approx(spent(f[-1], 0.01), rel=2e-3, abs=1e-7)
    assert boundaries(tuple(fractions[:2]), 0.01) == pytest.approx(tuple(c[:2]), abs=1e-8)  # earlier looks unchanged


@pytest.mark.parametrize("fractions", [(), (0.0, 1.0), (0.5, 0.5), (0.6, 0.3), (0.5, 1.2)])
def test_boundaries_refuse_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        boundaries(fractions, 0.05)


# ------------------------------------------------------------------ one look is the fixed-n test
def test_one_look_mean_is_the_welch_interval_and_bonferroni_level():
    rng = np.random.default_rng(1)
    values = {s: rng.normal(0.3 if s == "s1" else 0.0, 0.1, 6) for s in ("base", "s1", "s2", "s3")}
    fixed = {c.strategy: c for c in compare_metric(values, "base", "fid", 0.95)}
    single = plan_for(start=6, max_seeds=6)
    outcome = replay(single, {s: {"fid": list(v)} for s, v in values.items()})
    assert outcome.looks[0].fraction == 1.0
    for s in single.strategies:
        v = outcome.verdicts[(s, "better")]
        assert (v.difference.low, v.difference.high) == pytest.approx((fixed[s].adj_low, fixed[s].adj_high), rel=1e-9)
    pair = {s: {"fid": list(values[s])} for s in ("base", "s1")}
    one = replay(plan_for(strategies=("s1",), start=6, max_seeds=6), pair)
    d = one.verdicts[("s1", "better")].difference
    assert (d.low, d.high) == pytest.approx((fixed["s1"].ci_low, fixed["s1"].ci_high), rel=1e-9)
    assert one.verdicts[("s1", "better")].word == "worse" and fixed["s1"].p_value < 0.05


def test_one_look_spread_decides_exactly_when_the_f_test_rejects():
    rng = np.random.default_rng(2)
    words = []
    for scale in np.linspace(0.5, 4.0, 24):
        base, other = rng.normal(4, 0.1, 8), rng.normal(4, 0.1 * scale, 8)
        runs = pd.DataFrame({"strategy": ["base"] * 8 + ["s1"] * 8, "status": "finished",
                             "fid": np.exp(np.concatenate([base, other]))})  # fmt: skip
        test = spread_tests(runs, "base", 0.05)[0]
        v = replay(plan_for(strategies=("s1",), kind="spread", margin=1.0, start=8, max_seeds=8),
                   {"base": {"fid": list(base)}, "s1": {"fid": list(other)}}).verdicts[("s1", "better")]  # fmt: skip
        assert (v.word in ("better", "worse")) == (test.p_value < 0.05)
        assert v.difference.estimate == pytest.approx(math.log(test.std / test.std_baseline))
        words.append(v.word)
    assert {"worse", "undecided"} <= set(words)  # both outcomes occurred: the check compared something


def test_one_look_proportion_is_newcombes_interval():
    from statsmodels.stats.proportion import confint_proportions_2indep

    failed = {"base": [0.0] * 9 + [1.0], "s1": [1.0] * 7 + [0.0] * 3}
    v = replay(plan_for(strategies=("s1",), kind="proportion", margin=0.25, start=10, max_seeds=10),
               {s: {"fid": x} for s, x in failed.items()}).verdicts[("s1", "better")]  # fmt: skip
    low, high = confint_proportions_2indep(7, 10, 1, 10, method="newcomb", compare="diff", alpha=0.05)
    assert (v.difference.estimate, v.difference.low, v.difference.high) == pytest.approx((0.6, low, high))
    assert v.word == "worse"
    for k, kb, level in [(0, 0, 0.95), (8, 0, 0.999), (3, 5, 0.5), (8, 6, 1 - 1e-8), (1, 2, 0.99)]:
        iv = proportion_interval(k, 8, kb, 6, level)
        expected = confint_proportions_2indep(k, 8, kb, 6, method="newcomb", compare="diff", alpha=1 - level)
        assert (iv.low, iv.high) == pytest.approx(expected, abs=1e-9)


# ------------------------------------------------------------------ the verdict rules
def test_verdict_words_and_within_margin():
    wide, narrow = Interval(0.0, -0.5, 0.5), Interval(0.0, -0.05, 0.05)
    assert verdict(Interval(-0.2, -0.3, -0.1), wide, 0.1).word == "better"
    assert verdict(Interval(0.2, 0.1, 0.3), wide, 0.1).word == "worse"
    assert verdict(wide, narrow, 0.1).word == "equivalent"
    assert verdict(wide, Interval(0.0, -0.1, 0.05), 0.1).word == "undecided"  # strictly inside the margin
    both = verdict(Interval(-0.03, -0.04, -0.01), narrow, 0.1)
    assert (both.word, both.within_margin) == ("better", True)
    assert verdict(Interval(0.0, math.nan, math.nan), Interval(0.0, math.nan, math.nan), 0.1).word == "undecided"


def test_nan_runs_are_left_out_of_the_measure():
    values = {"base": {"fid": [0.0, 0.1, -0.1, 0.05, math.nan]}, "s1": {"fid": [1.0, 1.1, math.nan, 0.9, 1.05]}}
    v = replay(plan_for(strategies=("s1",), start=5, max_seeds=5), values).verdicts[("s1", "better")]
    assert v.difference.estimate == pytest.approx(1.0125 - 0.0125)
    assert v.word == "worse"


# ------------------------------------------------------------------ error rates, by simulation
def test_null_keeps_the_family_wise_error_rate():
    plan, repeats = plan_for(), 1500
    rate = false_rate(plan, lambda rng: normal_values(rng, {}, SIGMAS), {"better", "worse"}, repeats, seed=3)
    assert rate <= tolerance(plan.alpha, repeats)


def test_the_checks_catch_looks_without_spending(monkeypatch):
    """The same checks fail when every look is tested at the fixed-n level: repeated looks inflate both rates."""
    monkeypatch.setattr(sequential, "boundaries", lambda fractions, alpha: boundaries((1.0,), alpha) * len(fractions))
    plan, repeats = plan_for(), 1500
    rate = false_rate(plan, lambda rng: normal_values(rng, {}, SIGMAS), {"better", "worse"}, repeats, seed=3)
    assert rate > tolerance(plan.alpha, repeats)
    at_margin = false_rate(plan_for(strategies=("s1", "s2")), lambda rng: normal_values(rng, *MARGIN_CASE),
                           {"equivalent"}, repeats, seed=4)  # fmt: skip
    assert at_margin > tolerance(plan.alpha, repeats)


def test_difference_at_the_margin_is_rarely_called_equivalent():
    plan, repeats = plan_for(strategies=("s1", "s2")), 1500
    at_margin = false_rate(plan, lambda rng: normal_values(rng, *MARGIN_CASE), {"equivalent"}, repeats, seed=4)
    assert at_margin <= tolerance(plan.alpha, repeats)
    none = false_rate(plan, lambda rng: normal_values(rng, {}, MARGIN_CASE[1]), {"equivalent"}, 200, seed=5)
    assert none > 0.5  # with no true difference, equivalence is found: the check above is not vacuous


def test_failure_rates_alike_are_rarely_called_different():
    plan, repeats = plan_for(kind="proportion", margin=0.25), 300

    def draw(rng):
        return {s: {"fid": list((rng.random(20) < 0.1).astype(float))} for s in SIGMAS}

    assert false_rate(plan, draw, {"better", "worse"}, repeats, seed=6) <= tolerance(plan.alpha, repeats)


def test_a_big_difference_is_found_early():
    rng = np.random.default_rng(7)
    plan = plan_for()
    for _ in range(50):
        shifts = {"s1": math.log(1.5), "s2": math.log(4.0), "s3": math.log(0.8)}
        outcome = replay(plan, normal_values(rng, shifts, SIGMAS))
        words = {s: v.word for (s, _), v in outcome.verdicts.items()}
        assert words == {"s1": "worse", "s2": "worse", "s3": "better"}
        assert outcome.looks[-1].n["base"] < plan.max_seeds


# ------------------------------------------------------------------ the replay
def test_replay_is_resumable_and_ignores_values_it_does_not_need():
    rng = np.random.default_rng(8)
    plan = plan_for(replicate=4)
    full = normal_values(rng, {"s1": math.log(1.3), "s3": 0.01}, SIGMAS, n=60)
    everything = replay(plan, full)
    assert everything.done and everything.replication
    json.dumps(everything.to_dict(), allow_nan=False)  # plain JSON: NaN and inf bounds become null
    on_disk = {s: {"fid": v["fid"][: plan.start]} for s, v in full.items()}
    rounds = 0
    while not (outcome := replay(plan, on_disk)).done:
        assert outcome.needs and all(len(on_disk[s]["fid"]) < k for s, k in outcome.needs.items())
        for s, k in outcome.needs.items():  # train what it asks for; seeds it will not read stay NaN
            have = on_disk[s]["fid"]
            have += [math.nan] * (min(outcome.missing[s]) - len(have))
            have += [full[s]["fid"][i] for i in range(len(have), k)]
        rounds += 1
    assert rounds >= 2
    assert outcome.to_dict() == everything.to_dict()
    assert any(math.isnan(x) for v in on_disk.values() for x in v["fid"])  # a strategy stopped early: gaps stayed
    extra = {s: {"fid": v["fid"] + list(rng.normal(5, 1, 10))} for s, v in on_disk.items()}
    assert replay(plan, extra).to_dict() == everything.to_dict()


def test_replication_words():
    plan = plan_for(strategies=("s1", "s2"), replicate=4, max_seeds=8)
    base, worse = [0.0, 0.01, -0.01, 0.02], [1.0, 1.01, 0.99, 1.02]  # decided at the first look: seeds 0-3
    values = {"base": {"fid": base + [0.0, 0.01, -0.01, 0.02]},
              "s1": {"fid": worse + [1.0, 1.02, 0.98, 1.01]},  # worse again on seeds 4-7
              "s2": {"fid": worse + [-1.0, -1.02, -0.98, -1.01]}}  # fmt: skip  # better on seeds 4-7
    outcome = replay(plan, values)
    assert {s: (v.word, v.look) for (s, _), v in outcome.verdicts.items()} == {"s1": ("worse", 1), "s2": ("worse", 1)}
    words = {s: r.word for (s, _), r in outcome.replication.items()}
    assert words == {"s1": "replicated", "s2": "contradicted"}
    assert outcome.replication[("s1", "better")].n == 4 and outcome.replication[("s1", "better")].p < 0.05
    values["s2"]["fid"][4:] = [1.0, -1.0, 0.5, -0.4]
    assert replay(plan, values).replication[("s2", "better")].word == "not replicated"


def test_replication_needs_fresh_seeds_after_the_last_look():
    plan = plan_for(strategies=("s1",), replicate=3, max_seeds=8)
    values = {"base": {"fid": [0.0, 0.01, -0.01, 0.02]}, "s1": {"fid": [1.0, 1.01, 0.99, 1.02]}}
    outcome = replay(plan, values)
    assert outcome.verdicts[("s1", "better")].word == "worse" and outcome.looks[-1].n["base"] == 4
    assert outcome.needs == {"base": 7, "s1": 7} and not outcome.done
    assert outcome.missing == {"base": (4, 5, 6), "s1": (4, 5, 6)}


def test_undecided_at_the_cap_keeps_its_figures():
    rng = np.random.default_rng(9)
    plan = plan_for(strategies=("s1",), replicate=4, max_seeds=8)
    outcome = replay(plan, {"base": {"fid": list(rng.normal(0, 1, 8))}, "s1": {"fid": list(rng.normal(0, 1, 8))}})
    v = outcome.verdicts[("s1", "better")]
    assert (v.word, v.capped, v.n, outcome.done, outcome.replication) == ("undecided", True, 8, True, {})
    assert v.difference.low < 0 < v.difference.high and [look.n["s1"] for look in outcome.looks] == [4, 8]


# ------------------------------------------------------------------ bad plans
@pytest.mark.parametrize("field, change", [
    ("start", {"start": 1}),
    ("batch", {"batch": 0}),
    ("max_seeds", {"max_seeds": 3}),
    ("margin", {"margin": 0.0}),
    ("margin", {"margin": -0.1}),
    ("kind", {"kind": "median"}),
    ("alpha", {"alpha": 0.0}),
    ("strategies", {"strategies": ("base", "s1")}),
    ("replicate", {"replicate": 1}),
])  # fmt: skip
def test_bad_plans_are_refused_naming_the_field(field, change):
    kind, margin = change.pop("kind", "mean"), change.pop("margin", MARGIN)
    with pytest.raises(ValueError, match=field) as error:
        plan_for(kind=kind, margin=margin, **change)
    assert "\n" not in str(error.value)
