"""The seeds' three claims as tested statements, each strategy against the baseline (docs/design.md, the protocol).

Each claim has one primary measure, declared before the run (params.yaml `report.primary`). Only the primary
measure gives the claim's verdict (the claims table, the Findings), Holm-adjusted across the strategies tested
on it (one family per claim). Every other measure is secondary: its figures and tests are shown, never a verdict.
Lower is better on every measure.

better   fid: final FID at the matched budget, on the log scale: Welch t on log FID, so exp(difference) is the
         ratio of geometric means to the baseline's, with its interval (FID is right-skewed, differences multiply).
         kid_mean: KID's difference on its own scale (an unbiased MMD² estimate that can be 0 or below: no ratio).
faster   log_fid_area: the mean of log small-sample FID over the whole budget [0, B] (trapezoids between the
         evaluations; AE pretraining steps a strategy is charged are scored as the generator it would have had
         then, stages/train.py), Welch t: exp(difference) is the ratio of the curves' geometric means.
         Secondary: the budget, and the wall seconds (AE pretraining included), to reach each of
         `report.speed_targets` x the baseline's final small-sample FID.
stable   failure_rate: the share of runs that diverge or collapse (recall < report.collapse_recall_ratio x
         precision), over every run of the strategy: its seeds, and the study's drawn settings where the study
         ran; Boschloo's exact test of the two proportions (two-sided).
         fid_oscillation: per run, the std of log small-sample FID around its straight-line trend over the last
         `report.tail_fraction` of the budget (late oscillation, not a trend); Welch t on its log.
         fid_spread: the spread of the final log FID over seeds, the F test of the variance ratio (exact when log
         FID is normal; Brown-Forsythe was tried and kept neither level at 3-5 seeds a side: 0%, 7%, 0.5%).
         mode_kl (stacked digits only, aegan.modes): KL of the generated mode distribution to uniform over the
         1,000 modes, per run; Welch t on its log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aegan.report.budget import charged_steps
from aegan.report.comparison import Comparison, compare_metric, holm
from aegan.report.tables import collapsed

CLAIMS = {  # claim -> (its measures, the words of a favourable and an unfavourable verdict)
    "better": (("fid", "kid_mean"), ("better", "worse")),
    "faster": (("log_fid_area",), ("faster", "slower")),
    "stable": (("failure_rate", "fid_oscillation", "fid_spread", "mode_kl"), ("more stable", "less stable")),
}
MEASURE_NAMES = {
    "fid": "FID (log scale)", "kid_mean": "KID (×1)", "log_fid_area": "mean log FID over the budget",
    "failure_rate": "share of runs that collapse or diverge", "fid_oscillation": "late FID oscillation (log scale)",
    "fid_spread": "FID spread over seeds", "mode_kl": "KL of the modes to uniform (stacked digits, log scale)",
}  # fmt: skip
RATIO_MEASURES = {"fid", "log_fid_area", "fid_oscillation", "fid_spread", "mode_kl"}  # differences of logs: ratios


MIN_KL = 1e-4  # a mode KL below this (about every mode equally often) counts as this much on the log scale


def claim_of(measure: str) -> str:
    return next(c for c, (measures, _) in CLAIMS.items() if measure in measures)


@dataclass
class Curve:
    budget: np.ndarray  # generator-side updates, AE pretraining charged: starts at 0
    fid: np.ndarray  # small-sample FID
    seconds: np.ndarray  # training seconds at each point, AE pretraining included (NaN where not recorded)


@dataclass
class Claims:
    runs: pd.DataFrame  # one row per run: strategy, seed, source (seeds | study), failed, log_fid_area, ...
    tests: list[Comparison]  # every measure, each strategy against the baseline; `primary` marks the verdicts
    primary: dict[str, str]  # claim -> its declared primary measure
    targets: dict[float, float]  # speed target factor -> small-sample FID
    span: tuple[float, float]  # budget range of the area
    eval_every: int
    baseline: str
    alpha: float
    curves: dict[tuple[str, int], Curve]  # each finished run's curve on the budget and the seconds axes

    def test(self, strategy: str, measure: str) -> Comparison | None:
        return next((t for t in self.tests if t.strategy == strategy and t.metric == measure), None)


# ------------------------------------------------------------------ per-run measures
def run_curves(histories: dict, runs: pd.DataFrame, ae: dict[int, dict]) -> dict[tuple[str, int], Curve]:
    """(strategy, seed) -> its small-sample FID curve on the budget axis, of every finished run that logged one.

    Own steps are the history's; negative steps are the charged AE pretraining (stages/train.py). Seconds: the
    AE's training seconds at its snapshot over the charged part, then the AE's total plus the run's own."""
    out = {}
    for r in runs[runs["status"] == "finished"].itertuples():
        h = histories.get((r.strategy, int(r.seed)))
        if h is None or "fid_small" not in h:
            continue
        curve = h[["step", "fid_small"]].dropna()
        if curve.empty:
            continue
        charged = charged_steps(runs, r.strategy)
        steps = curve["step"].to_numpy(int)
        info = ae.get(int(r.seed), {}) if charged else {}
        own_seconds = r.seconds_at_eval if isinstance(getattr(r, "seconds_at_eval", None), dict) else {}
        snapshot = info.get("snapshot_seconds") or {}
        ae_total = float(info.get("train_seconds", math.nan)) if charged else 0.0
        seconds = [float(snapshot.get(str(s + charged), math.nan)) if s < 0 else
                   ae_total + float(own_seconds.get(str(s), math.nan)) for s in steps]  # fmt: skip
        out[(r.strategy, int(r.seed))] = Curve(steps + charged, curve["fid_small"].to_numpy(float), np.array(seconds))
    return out


def reached_at(axis: np.ndarray, fid: np.ndarray, target: float) -> float:
    """The first point of `axis` at which the curve is at or below `target`; NaN: never."""
    reached = np.nonzero(fid <= target)[0]
    return float(axis[reached[0]]) if len(reached) else math.nan


def log_area(budget: np.ndarray, fid: np.ndarray, start: float, end: float) -> float:
    """Mean of log FID over [start, end]: trapezoids between the evaluations, log FID linearly interpolated at
    the two ends; NaN where the curve does not cover the span."""
    if end <= start or not (np.all(fid > 0) and budget[0] <= start and budget[-1] >= end):
        return math.nan
    x = np.unique(np.concatenate([[start, end], budget[(budget > start) & (budget < end)]]))
    y = np.interp(x, budget, np.log(fid))
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (end - start))


def oscillation(budget: np.ndarray, fid: np.ndarray, fraction: float) -> float:
    """Std of log FID around its least-squares line over the last `fraction` of the curve's budget (ddof 2: the
    line's two parameters); NaN with fewer than 4 points there. A steady trend is not oscillation."""
    late = budget > budget[-1] - fraction * (budget[-1] - budget[0])
    if late.sum() < 4 or not np.all(fid[late] > 0):
        return math.nan
    x, y = budget[late], np.log(fid[late])
    residual = y - np.polyval(np.polyfit(x, y, 1), x)
    return float(np.sqrt(np.sum(residual**2) / (len(x) - 2)))


def failed(row, collapse_ratio: float) -> tuple[bool, bool]:
    """(diverged, collapsed) of one run: collapsed is the report's criterion, recall < ratio x precision."""
    finished = row["status"] == "finished"
    return row["status"] == "diverged", finished and collapsed(row.get("precision"), row.get("recall"), collapse_ratio)


def per_run(runs: pd.DataFrame, curves: dict, study_runs: pd.DataFrame | None, rp, span: tuple[float, float],
            targets: dict[float, float]) -> pd.DataFrame:  # fmt: skip
    """One row per run: the failure flags, and for the pipeline's own runs the curve measures."""
    rows = []
    for _, r in runs.iterrows():
        diverged, collapsed = failed(r, rp.collapse_recall_ratio)
        row = {"strategy": r["strategy"], "seed": int(r["seed"]), "source": "seeds", "diverged": diverged,
               "collapsed": collapsed, "failed": diverged or collapsed, "fid": r.get("fid")}  # fmt: skip
        c = curves.get((r["strategy"], int(r["seed"])))
        row["curve"] = c is not None
        row["log_fid_area"] = log_area(c.budget, c.fid, *span) if c else math.nan
        row["fid_oscillation"] = oscillation(c.budget, c.fid, rp.tail_fraction) if c else math.nan
        for factor, target in targets.items():
            row[f"budget_to_{factor:g}x"] = reached_at(c.budget, c.fid, target) if c else math.nan
            row[f"seconds_to_{factor:g}x"] = reached_at(c.seconds, c.fid, target) if c else math.nan
        rows.append(row)
    if study_runs is not None:  # the study's drawn settings; setting 0 is the pipeline's own runs, counted above
        for _, r in study_runs[study_runs["setting"] != 0].iterrows():
            rows.append({"strategy": r["strategy"], "seed": int(r["seed"]), "source": f"study setting {int(r['setting'])}",
                         "diverged": bool(r["diverged"]), "collapsed": bool(r["collapsed"]),
                         "failed": bool(r["diverged"] or r["collapsed"])})  # fmt: skip
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ tests
def failure_tests(table: pd.DataFrame, baseline: str, strategies: list[str]) -> list[Comparison]:
    """Each strategy's share of failed runs against the baseline's: Boschloo's exact test (two-sided)."""
    from scipy import stats

    def counts(s: str) -> tuple[int, int]:
        g = table[table["strategy"] == s]
        return int(g["failed"].sum()), len(g)

    kb, nb = counts(baseline)
    out = []
    for s in strategies:
        if s == baseline:
            continue
        k, n = counts(s)
        c = Comparison(s, "failure_rate", n, nb, k / n - kb / nb if n and nb else math.nan, events=(k, kb))
        if n and nb:
            # no failure, or only failures, on both sides: the proportions cannot differ in this sample
            same = (k == 0 and kb == 0) or (k == n and kb == nb)
            p = 1.0 if same else float(stats.boschloo_exact([[k, n - k], [kb, nb - kb]], alternative="two-sided").pvalue)
            c.p_value = min(1.0, p) if math.isfinite(p) else 1.0
        out.append(c)
    return out


def spread_comparisons(spreads: list[Spread]) -> list[Comparison]:
    """The spread of final log FID over seeds as comparisons: delta the log of the std ratio, p the F test's."""
    out = []
    for t in spreads:
        ratio = t.std / t.std_baseline if t.std_baseline and math.isfinite(t.std) and math.isfinite(t.std_baseline) else math.nan
        delta = math.log(ratio) if ratio and math.isfinite(ratio) and ratio > 0 else math.nan
        out.append(Comparison(t.strategy, "fid_spread", t.n, t.n_baseline, delta, p_value=t.p_value, verdict=t.verdict))
    return out


def claims(runs: pd.DataFrame, histories: dict, ae: dict[int, dict], study_runs: pd.DataFrame | None, params) -> Claims | None:
    """Every measure of the three claims, each strategy against the baseline; None when the baseline was not run."""
    rp, base, strategies = params.report, params.report.baseline, list(params.strategies)
    if base not in strategies:
        return None
    alpha = 1.0 - rp.confidence
    curves = run_curves(histories, runs, ae)
    finals = [c.fid[-1] for (s, _), c in curves.items() if s == base]
    targets = {f: f * float(np.mean(finals)) for f in rp.speed_targets} if finals else {}
    end = min((c.budget[-1] for c in curves.values()), default=math.nan)
    span = (0.0, float(end))
    table = per_run(runs, curves, study_runs, rp, span, targets)
    own = table[table["source"] == "seeds"]
    finished = runs[runs["status"] == "finished"]
    tests: list[Comparison] = []
    for measure in ("fid", "kid_mean"):
        values = {s: finished.loc[finished["strategy"] == s, measure].dropna().to_numpy(float) for s in strategies}
        tests += compare_metric(values, base, measure, rp.confidence, log=measure == "fid")
    for measure in ("log_fid_area", "fid_oscillation"):
        values = {s: own.loc[own["strategy"] == s, measure].dropna().to_numpy(float) for s in strategies}
        if measure == "fid_oscillation":  # compared on the log scale: a ratio of oscillation amplitudes
            values = {s: np.log(np.maximum(v, 1e-12)) for s, v in values.items()}
        tests += compare_metric(values, base, measure, rp.confidence)
    if "mode_kl" in finished and finished["mode_kl"].notna().any():  # the known-mode benchmark (stacked digits)
        values = {s: np.log(np.maximum(finished.loc[finished["strategy"] == s, "mode_kl"].dropna().to_numpy(float),
                                       MIN_KL)) for s in strategies}  # fmt: skip
        tests += compare_metric(values, base, "mode_kl", rp.confidence)
    tests += failure_tests(table, base, strategies)
    spreads = spread_tests(runs, base, alpha)
    tests += spread_comparisons(spreads)
    primary = rp.primary.model_dump()
    kid_base = finished.loc[finished["strategy"] == base, "kid_mean"].dropna().to_numpy(float)
    margins = equivalence_margins(rp.equivalence.model_dump(), float(np.mean(kid_base)) if len(kid_base) else math.nan)
    spread_of = {t.strategy: t for t in spreads}
    for t in tests:
        t.primary = primary[claim_of(t.metric)] == t.metric
        t.margin = margins[t.metric]
        t.p_equivalence = equivalence_p(t, spread_of.get(t.strategy))
    for measure in {t.metric for t in tests}:
        family = [t for t in tests if t.metric == measure]
        for t, p_adj, p_eq in zip(family, holm([t.p_value for t in family]), holm([t.p_equivalence for t in family])):
            t.p_adjusted, t.family = p_adj, sum(math.isfinite(x.p_value) for x in family)
            t.p_equivalence_adjusted = p_eq
            t.verdict = reading(t, base, alpha)
    return Claims(table, tests, primary, targets, span, params.train.eval_every, base, alpha, curves)


def equivalence_margins(declared: dict[str, float], kid_baseline: float) -> dict[str, float]:
    """report.equivalence on each measure's own scale: the log of a ratio, a share of the baseline's mean KID, or a
    difference of shares."""
    out = {m: math.log(v) for m, v in declared.items() if m in RATIO_MEASURES}
    return out | {"kid_mean": declared["kid_mean"] * abs(kid_baseline), "failure_rate": declared["failure_rate"]}


def equivalence_p(t: Comparison, spread: "Spread | None") -> float:
    """TOST: the larger of the two one-sided p-values of |true difference| >= margin (NaN when not testable).
    Welch t for means, the score test for two proportions, the F test of the variance ratio for the spread."""
    from scipy import stats
    from statsmodels.stats.proportion import tost_proportions_2indep

    m = t.margin
    if not math.isfinite(m) or not math.isfinite(t.delta):
        return math.nan
    if t.events is not None:
        (k, kb), n, nb = t.events, t.n, t.n_baseline
        if not (n and nb):
            return math.nan
        return float(tost_proportions_2indep(k, n, kb, nb, -m, m, method="score").pvalue)
    if t.metric == "fid_spread":
        if spread is None or not math.isfinite(spread.p_value):
            return math.nan
        f, dist = math.exp(2 * t.delta), stats.f(spread.n - 1, spread.n_baseline - 1)  # variance ratio of the logs
        return float(max(dist.cdf(f / math.exp(2 * m)), dist.sf(f * math.exp(2 * m))))
    from aegan.report.comparison import tost_mean

    return tost_mean(t.delta, t.se, t.df, m)


def kind_of(t: Comparison, alpha: float) -> str:
    """The verdict's kind at this n: "favourable" / "unfavourable" (different), "equivalent" (surely within the
    margin), "undecided" (neither), or "untested"."""
    if not math.isfinite(t.p_value):
        return "untested"
    if math.isfinite(t.p_adjusted) and t.p_adjusted < alpha:
        return "favourable" if t.delta < 0 else "unfavourable"
    if math.isfinite(t.p_equivalence_adjusted) and t.p_equivalence_adjusted < alpha:
        return "equivalent"
    return "undecided"


def margin_words(t: Comparison) -> str:
    if t.events is not None:
        return f"±{t.margin:.2g} in the share of failed runs"
    if t.metric in RATIO_MEASURES:
        return f"×{math.exp(t.margin):.3g} either way"
    return f"±{t.margin:.3g}"


def reading(t: Comparison, base: str, alpha: float) -> str:
    """The words of one test: a verdict for a primary measure, a secondary figure's direction otherwise."""
    if not math.isfinite(t.p_value):
        return t.verdict or "not testable: too few finished runs, no spread, or no curve"
    favourable, unfavourable = CLAIMS[claim_of(t.metric)][1]
    significant = math.isfinite(t.p_adjusted) and t.p_adjusted < alpha
    if not t.primary:
        direction = "lower" if t.delta < 0 else "higher"
        return (f"secondary, not a verdict: {direction} than `{base}` (Holm p {t.p_adjusted:.2g})" if significant else
                f"secondary, not a verdict: no clear difference from `{base}` (Holm p {t.p_adjusted:.2g})")  # fmt: skip
    kind = kind_of(t, alpha)
    if significant:
        return f"{favourable if t.delta < 0 else unfavourable} than `{base}` (Holm-adjusted p < {alpha:g})"
    if kind == "equivalent":
        return f"equivalent to `{base}` within {margin_words(t)} (TOST, Holm p {t.p_equivalence_adjusted:.2g})"
    return (f"undecided at this n: neither different from `{base}` (Holm p {t.p_adjusted:.2g}) nor surely within "
            f"{margin_words(t)} (TOST Holm p {_p(t.p_equivalence_adjusted)})")  # fmt: skip


def _p(p: float) -> str:
    return f"{p:.2g}" if math.isfinite(p) else "n/a"


def figure(t: Comparison) -> str:
    """The figure that decides a test, in the measure's own terms."""
    if not math.isfinite(t.delta):
        return "n/a"
    if t.events is not None:
        return f"failed {t.events[0]} of {t.n} vs {t.events[1]} of {t.n_baseline}"
    if t.metric in RATIO_MEASURES:
        ci = f" [{math.exp(t.ci_low):.3g}, {math.exp(t.ci_high):.3g}]" if math.isfinite(t.ci_low) else ""
        return f"ratio {math.exp(t.delta):.3g}{ci}"
    return f"Δ {t.delta:.3g}"


# ------------------------------------------------------------------ spread (also the study's, over settings)
@dataclass
class Spread:
    strategy: str
    n: int
    n_baseline: int
    std: float
    std_baseline: float
    p_value: float = math.nan  # the F test of the variance ratio of log values
    p_adjusted: float = math.nan  # Holm across strategies
    verdict: str = ""


def spread_tests(runs: pd.DataFrame, baseline: str, alpha: float, metric: str = "fid", unit: str = "seeds") -> list[Spread]:
    """Each strategy's spread over `unit` (its rows: seeds, or a study's settings) of log `metric` against the
    baseline's: the two-sided F test of the ratio of variances (exact when the logs are normal), Holm. `std` is
    the std of the logs (about the coefficient of variation)."""
    from scipy import stats

    finished = runs[runs["status"] == "finished"]
    values = {s: np.log(np.maximum(finished.loc[finished["strategy"] == s, metric].dropna().to_numpy(float), 1e-300))
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
        elif np.ptp(a) == 0 or np.ptp(base) == 0:
            t.verdict = "undefined: no spread on one side"
        else:
            f = float(a.var(ddof=1) / base.var(ddof=1))
            dist = stats.f(len(a) - 1, len(base) - 1)
            t.p_value = float(min(1.0, 2 * min(dist.cdf(f), dist.sf(f))))
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


# ------------------------------------------------------------------ summary.json
def speed_summary(cl: Claims) -> dict[str, dict]:
    """Per strategy: the secondary speed figures (mean budget and seconds to each target over the runs that
    reached it, and how many did)."""
    out: dict[str, dict] = {}
    own = cl.runs[(cl.runs["source"] == "seeds") & cl.runs["curve"].fillna(False).astype(bool)]
    for s, g in own.groupby("strategy", sort=False):
        entry = out.setdefault(s, {})
        for factor in cl.targets:
            for axis in ("budget", "seconds"):
                v = g[f"{axis}_to_{factor:g}x"].to_numpy(float)
                ok = v[np.isfinite(v)]
                entry[f"{axis}_to_{factor:g}x"] = {"mean": float(ok.mean()) if len(ok) else None, "reached": int(len(ok)),
                                                  "runs": int(len(v))}  # fmt: skip
    return out


def summary_entries(cl: Claims | None) -> dict:
    """What summary.json adds: per strategy each test against the baseline, the failure counts, the speed
    figures; under "claims" the declared primary measures, targets and span."""
    if cl is None:
        return {}
    out: dict = {s: {"claims": {}} for s in cl.runs["strategy"].drop_duplicates()}
    for t in cl.tests:
        out[t.strategy]["claims"][t.metric] = {
            "primary": t.primary, "delta": t.delta, "ratio": math.exp(t.delta) if t.metric in RATIO_MEASURES and
            math.isfinite(t.delta) else None, "ci_low": t.ci_low, "ci_high": t.ci_high, "p": t.p_value,
            "p_holm": t.p_adjusted, "margin": t.margin, "p_equivalence_holm": t.p_equivalence_adjusted,
            "kind": kind_of(t, cl.alpha), "n": t.n, "n_baseline": t.n_baseline}  # fmt: skip
    for s, g in cl.runs.groupby("strategy", sort=False):
        out[s]["claims"]["runs_failed"] = {"failed": int(g["failed"].sum()), "runs": int(len(g)),
                                           "diverged": int(g["diverged"].sum()), "collapsed": int(g["collapsed"].sum())}
    for s, entry in speed_summary(cl).items():
        out[s]["claims"] |= entry
    out["claims"] = {"primary": cl.primary, "targets_fid_small": {f"{f:g}x": v for f, v in cl.targets.items()},
                     "area_budget_span": list(cl.span), "eval_every": cl.eval_every}  # fmt: skip
    return out
