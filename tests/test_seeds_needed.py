"""How many seeds a question needs (report/seeds.py): the detectable FID difference at n seeds per side, on
synthetic spreads where the answer is known, and its section and summary.json figures in a fabricated report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

import fabricate as F
from aegan.atomic import finite_or_none
from aegan.report.comparison import compare_metric
from aegan.report.seeds import SEEDS, detectable, seeds_needed, summary_entries, welch_df


def with_std(n: int, std: float, mean: float) -> np.ndarray:
    """n values with exactly this mean and sample std."""
    z = np.arange(n, dtype=float)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + std * z


def rows_of(values: dict, confidence: float = 0.95, baseline: str = "dcgan"):
    comparisons = compare_metric(values, baseline, "fid", confidence)
    target, rows = seeds_needed(comparisons, baseline, float(values[baseline].mean()))
    return comparisons, target, {r.strategy: r for r in rows}


def test_welch_df_at_n_is_scipys():
    for n, sa, sb in ((3, 2.0, 10.0), (5, 4.0, 4.0), (10, 1.0, 7.0), (20, 3.0, 0.5)):
        ref = stats.ttest_ind(with_std(n, sa, 30.0), with_std(n, sb, 60.0), equal_var=False)
        assert welch_df(sa, sb, n) == pytest.approx(ref.df)
    assert welch_df(0.0, 5.0, 8) == pytest.approx(7.0)  # one side without spread: n - 1


def test_detectable_shrinks_like_one_over_sqrt_n():
    sa, sb = 3.0, 5.0
    _, _, rows = rows_of({"dcgan": with_std(3, sb, 60.0), "a": with_std(3, sa, 55.0)})
    d = rows["a"].detectable
    assert list(d) == list(SEEDS)
    assert all(d[small] > d[large] for small, large in zip(SEEDS, SEEDS[1:]))
    # exactly: the t quantiles at Welch's df times sqrt((sa^2 + sb^2) / n)
    for n in SEEDS:
        df = welch_df(sa, sb, n)
        q = stats.t.ppf(1 - 0.05 / 2, df) + stats.t.ppf(0.8, df)
        assert d[n] == pytest.approx(q * math.sqrt((sa**2 + sb**2) / n))
    # for large n the quantiles barely move: the ratio is that of 1 / sqrt(n), to within a few percent
    for small, large in ((10, 20), (15, 20)):
        assert d[large] / d[small] == pytest.approx(math.sqrt(small / large), rel=0.04)
    # d x sqrt(n) falls towards its normal limit (z .975 + z .8) sqrt(sa^2 + sb^2) and is within 6% of it at 20
    scaled = [d[n] * math.sqrt(n) for n in SEEDS]
    limit = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * math.sqrt(sa**2 + sb**2)
    assert all(a > b > limit for a, b in zip(scaled, scaled[1:])) and scaled[-1] < 1.06 * limit
    # and four times the seeds halve it, give or take the quantiles (which shrink too: more than halve)
    assert 0.4 < d[20] / d[5] < 0.5


@pytest.mark.parametrize("n, confidence", [(3, 0.95), (5, 0.95), (5, 0.9), (10, 0.99)])
def test_at_the_runs_n_it_is_compare_metrics_detectable(n, confidence):
    """Three strategies tested (m = 3): the Holm family sets the level, as in compare_metric."""
    rng = np.random.default_rng(n)
    values = {"dcgan": 60 + rng.normal(0, 8, n), "a": 40 + rng.normal(0, 2, n), "b": 58 + rng.normal(0, 12, n),
              "c": 70 + rng.normal(0, 5, n)}  # fmt: skip
    comparisons, _, rows = rows_of(values, confidence)
    assert {c.family for c in comparisons} == {3}
    for c in comparisons:
        assert math.isfinite(c.detectable)
        assert rows[c.strategy].detectable[n] == pytest.approx(c.detectable, rel=1e-9)
    # the family matters: with m = 1 the same spreads give a smaller figure, which compare_metric agrees with
    (alone,) = compare_metric({"dcgan": values["dcgan"], "a": values["a"]}, "dcgan", "fid", confidence)
    assert alone.detectable < rows["a"].detectable[n]
    assert detectable(alone.std, alone.std_baseline, n, 1 - confidence, 1) == pytest.approx(alone.detectable)


def test_n_for_10_percent_is_the_first_n_whose_detectable_is_at_most_the_target():
    # dcgan's mean 100: the target is 10; stds 6 on both sides, one strategy tested (m = 1)
    _, target, rows = rows_of({"dcgan": with_std(3, 6.0, 100.0), "a": with_std(3, 6.0, 90.0)})
    assert target == pytest.approx(10.0)
    d, found = rows["a"].detectable, rows["a"].n_for_target
    assert found is not None and found in SEEDS
    assert d[found] <= target and all(d[n] > target for n in SEEDS if n < found)
    # known answer: Welch's df at n is 2 (n - 1) with equal stds; n = 6: (t(.975, 10) 2.228 + t(.8, 10) 0.879)
    # x 6 sqrt(2/6) = 10.76 > 10; n = 8: (2.145 + 0.868) x 6 sqrt(2/8) = 9.04 <= 10
    assert found == 8
    # a wide spread: no n in the table is enough
    _, _, wide = rows_of({"dcgan": with_std(3, 40.0, 100.0), "a": with_std(3, 40.0, 90.0)})
    assert wide["a"].n_for_target is None and wide["a"].detectable[20] > 10.0


def test_a_strategy_with_one_seed_or_no_spread_gets_no_figures():
    _, _, rows = rows_of({"dcgan": with_std(3, 5.0, 60.0), "one": np.array([40.0]), "a": with_std(3, 2.0, 50.0)})
    assert rows["one"].detectable == {} and rows["one"].n_for_target is None
    assert rows["one"].why.startswith("n too small: 1 finished seed(s) against 3 for dcgan")
    assert rows["a"].detectable and not rows["a"].why
    _, _, flat = rows_of({"dcgan": np.array([7.0, 7.0, 7.0]), "a": np.array([5.0, 5.0, 5.0])})
    assert flat["a"].detectable == {} and flat["a"].why.startswith("no spread over seeds")
    # the baseline with one seed: nothing for anyone
    _, _, lone = rows_of({"dcgan": np.array([60.0]), "a": with_std(3, 2.0, 50.0)})
    assert lone["a"].detectable == {} and "1 for dcgan" in lone["a"].why


def test_summary_entries_are_json_safe_with_string_keys():
    _, target, rows = rows_of({"dcgan": with_std(3, 5.0, 60.0), "one": np.array([40.0]), "a": with_std(3, 2.0, 50.0)})
    entries = summary_entries(float("nan"), list(rows.values()))  # a NaN target too: written as null
    back = json.loads(json.dumps(finite_or_none(entries), allow_nan=False))["seeds_needed"]
    assert back["a"]["detectable_fid"].keys() == {str(n) for n in SEEDS} and back["target_10pct"] is None
    assert back["one"] == {"n": 1, "n_baseline": 3, "detectable_fid": {}, "n_for_10pct": None}
    assert summary_entries(6.0, []) == {}  # nothing compared (the baseline not run): no key


# ------------------------------------------------------------------ in the report, from fabricated runs
@pytest.fixture(scope="module")
def report(tmp_path_factory):
    repo = tmp_path_factory.mktemp("seeds_report")
    mp = pytest.MonkeyPatch()
    try:
        F.reported(repo, mp)
    finally:
        mp.undo()
    summary = json.loads((repo / "reports/summary.json").read_text())
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    return summary, metrics, (repo / "reports/report.md").read_text()


def section(md: str, heading: str) -> str:
    return md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_report_has_the_section_after_the_claims_and_the_figures_in_summary_json(report):
    """Fabricated FID: dcgan 50, 60, 70 (mean 60: target 6), ae_init 30, 32, 34, ae_disc one finished seed."""
    summary, metrics, md = report
    headings = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    at = headings.index("How many seeds")  # after the claims (a study's section may come between), before Stability
    assert headings.index("The three claims, measure by measure, against `dcgan`") < at < headings.index("Stability")
    body = section(md, "How many seeds")
    assert "assumes they stay as observed" in body and "80% power" in body

    needed = summary["seeds_needed"]  # FID is compared as logs: a 10% difference is a ratio of 1.1
    assert set(needed) == {"ae_init", "ae_disc", "target_10pct"} and needed["target_10pct"] == pytest.approx(math.log(1.1))
    got = needed["ae_init"]
    assert got["n"] == 3 and got["n_baseline"] == 3
    assert set(got["detectable_fid"]) == {str(n) for n in SEEDS}
    assert got["detectable_fid"]["3"] == pytest.approx(summary["ae_init"]["log_fid_minus_dcgan"]["detectable"])
    sd_a, sd_b = np.log(F.FID["ae_init"]).std(ddof=1), np.log(F.FID["dcgan"]).std(ddof=1)
    expected = {n: detectable(sd_a, sd_b, n, 0.05, 1) for n in SEEDS}  # m = 1 (ae_disc untested)
    assert got["detectable_fid"] == {str(n): pytest.approx(v) for n, v in expected.items()}
    n_for = next((n for n in SEEDS if expected[n] <= math.log(1.1)), None)
    assert got["n_for_10pct"] == n_for
    assert needed["ae_disc"] == {"n": 1, "n_baseline": 3, "detectable_fid": {}, "n_for_10pct": None}
    assert set(metrics) == set(F.STRATEGIES)  # metrics.json: still one entry per strategy

    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")]
            for line in body.splitlines() if line.startswith("| `")}  # fmt: skip
    assert rows["`ae_init`"] == ["`ae_init`", "3 vs 3", *[f"×{math.exp(expected[n]):.3g}" for n in SEEDS],
                                 str(n_for) if n_for else "more than 20"]  # fmt: skip
    assert rows["`ae_disc`"][2:-1] == ["n/a"] * len(SEEDS)
    assert rows["`ae_disc`"][-1].startswith("n too small: 1 finished seed(s) against 3 for dcgan")
    assert "n for a ratio ×1.1" in body
    findings = section(md, "Findings")
    needed_n = str(n_for) if n_for else "more than 20"
    assert (f"To see a FID ratio of ×1.1 to `dcgan`'s (10% either way) would take {needed_n} seeds per side for "
            "`ae_init` (at this run's spreads; table: How many seeds); not computable (too few finished seeds, or no "
            "spread): `ae_disc`.") in findings  # fmt: skip
