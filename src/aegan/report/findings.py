"""The report's judgements: the findings up front, the comparison with the baseline, the budget check.

Every sentence is computed from the tables (comparison.py, budget.py,
tables.py) and says plainly when n is too small; nothing here is written with
a particular outcome in mind.
"""

from __future__ import annotations

import math

from aegan.report.comparison import NAMES
from aegan.report.inputs import ReportInputs
from aegan.report.render import Bullets, Document, Heading, Paragraph, Table
from aegan.report.text import fid_name, fmt


def _listing(names: list[str]) -> str:
    return ", ".join(f"`{s}`" for s in names) or "none"


def _interval(low: float, high: float) -> str:
    return "n/a" if not math.isfinite(low) else f"[{low:.3g}, {high:.3g}]"


def _p(p: float) -> str:
    return "undefined" if not math.isfinite(p) else f"{p:.2g}"


def baseline_section(doc: Document, inputs: ReportInputs) -> None:
    params, rp, comparisons = inputs.params, inputs.params.report, inputs.comparisons
    base = rp.baseline
    doc.add(Heading(f"Against the `{base}` baseline, at the matched budget"))
    if base not in params.strategies:
        doc.add(Paragraph(f"`{base}` (report.baseline) is not among the strategies run: add it to `strategies` "
                          "to compare against it."))  # fmt: skip
        return
    level = f"{rp.confidence:.0%}"
    rows = [[f"`{c.strategy}`", NAMES[c.metric], f"{c.n} vs {c.n_baseline}", fmt(c.delta), _interval(c.ci_low, c.ci_high),
             _p(c.p_value), _p(c.p_adjusted), _interval(c.adj_low, c.adj_high), fmt(c.detectable), c.verdict]
            for c in comparisons]  # fmt: skip
    ns = sorted({c.n for c in comparisons} | {c.n_baseline for c in comparisons})
    tested = sum(math.isfinite(c.p_value) for c in comparisons if c.metric == "fid")
    header = ["strategy", "metric", "seeds", f"− {base}", f"{level} CI", "p (Welch)", "p (Holm)", "simultaneous CI",
              "detectable Δ", "reading"]  # fmt: skip
    doc.add(Table(header, rows, note=(
        f"Difference of means over training seeds (negative: lower FID/KID than `{base}`, better), Welch t interval "
        f"and p (unequal variances). The p-values are Holm-adjusted per metric across the strategies tested ({tested}); the "
        f"simultaneous interval is Bonferroni's ({level} for all of them together). Detectable Δ: the smallest true "
        "difference these seeds would detect with 80% power at the adjusted level, given the observed spreads. Seeds "
        f"per side: {', '.join(map(str, ns))}; a difference the test cannot separate from 0 is no clear difference, "
        "not a win.")))  # fmt: skip


def budget_section(doc: Document, inputs: ReportInputs) -> None:
    base = inputs.params.report.baseline
    doc.add(Heading("Budget"))
    ran = base in inputs.params.strategies
    doc.add(Bullets([plateau_sentence(base, inputs.plateau, ran), *ranking_sentences(inputs.rankings)]))


def plateau_sentence(base: str, pl, ran: bool = True) -> str:
    if not ran:
        return (f"Whether `{base}`'s small-sample FID has flattened cannot be told: `{base}` (report.baseline) was not "
                "run; add it to strategies, or set report.baseline to a strategy that was.")  # fmt: skip
    if pl.flat is None:
        return f"Whether `{base}`'s small-sample FID has flattened cannot be told: too few evaluations (train.eval_every)."
    where = (f"mean {pl.last:.3g} over the last quarter of the budget against {pl.previous:.3g} over the quarter before "
             f"({pl.change:.0%} change; criterion ≤ {pl.tolerance:.0%})")  # fmt: skip
    if pl.flat:
        return f"`{base}`'s small-sample FID has flattened by the end of the budget: {where}."
    return (f"`{base}`'s small-sample FID has **not** flattened by the end of the budget: {where}. The ranking may "
            "still change with more training: raise train.budget.")  # fmt: skip


def ranking_sentences(rk: dict) -> list[str]:
    if not rk["matched"]:
        return []
    matched = [s for s, _ in rk["matched"]]
    own = [s for s, v in rk["own_steps"] if math.isfinite(v)]
    out = [f"Ranking by small-sample FID at the matched budget: {_listing(matched)}.",
           f"At equal own steps ({rk['own_step']} each, the AE's pretraining not counted: the head-start view): "
           f"{_listing(own)}."]  # fmt: skip
    out.append("The two rankings agree." if matched == own else
               "The rankings differ: part of what the head-start view credits to fusing is the pretraining budget.")
    return out


def findings(doc: Document, inputs: ReportInputs) -> None:
    """Short sentences derived from the tables, so a reader gets the answer before the details."""
    table, comparisons, stab = inputs.table, inputs.comparisons, inputs.stability
    base, alpha = inputs.params.report.baseline, 1.0 - inputs.params.report.confidence
    items = []
    fid = table[["strategy", "fid_mean", "fid_std", "n"]].dropna(subset=["fid_mean"]).sort_values("fid_mean")
    if len(fid):
        ranking = ", ".join(f"`{r.strategy}` {fmt(r.fid_mean, r.fid_std, n=int(r.n))}" for r in fid.itertuples())
        items.append(f"Ranking by mean {fid_name(inputs.reference.get('feature_extractor', ''))} at the matched budget, "
                     f"lower is better: {ranking}.")  # fmt: skip
    for metric, name in NAMES.items():
        cs = [c for c in comparisons if c.metric == metric]
        if not cs:
            continue
        better = [c.strategy for c in cs if math.isfinite(c.p_adjusted) and c.p_adjusted < alpha and c.delta < 0]
        worse = [c.strategy for c in cs if math.isfinite(c.p_adjusted) and c.p_adjusted < alpha and c.delta > 0]
        untested = [c.strategy for c in cs if not math.isfinite(c.p_value)]
        unclear = [c.strategy for c in cs if c.strategy not in better + worse + untested]
        text = (f"{name} against `{base}` (Holm-adjusted, α = {alpha:g}): better: {_listing(better)}; worse: "
                f"{_listing(worse)}; no clear difference at this n: {_listing(unclear)}")  # fmt: skip
        if untested:
            text += f"; not testable (too few finished seeds, or no spread): {_listing(untested)}"
        detectable = sorted(c.detectable for c in cs if math.isfinite(c.detectable))
        if detectable:
            bound = f"{detectable[0]:.3g}" if len(detectable) == 1 else f"{detectable[0]:.3g}–{detectable[-1]:.3g} (by strategy)"
            text += f". With these seeds a true {name} difference below {bound} would likely go unseen"
        items.append(text + ".")
    items.append(plateau_sentence(base, inputs.plateau))
    rk = inputs.rankings
    if rk["matched"]:
        same = [s for s, _ in rk["matched"]] == [s for s, v in rk["own_steps"] if math.isfinite(v)]
        items.append(f"Head start: the small-sample FID ranking at the matched budget {'agrees' if same else 'differs'} "
                     f"with the ranking at equal own steps ({rk['own_step']} each, the AE's pretraining not counted); "
                     "see Budget.")  # fmt: skip
    diverged = stab[stab["diverged"] > 0]
    items.append("Diverged runs: " + (", ".join(f"`{r.strategy}` {r.diverged} of {r.runs}" for r in diverged.itertuples())
                                      or "none") + ".")  # fmt: skip
    flagged = stab[stab["collapse_flags"] > 0]
    if len(flagged):
        items.append("Signs of mode collapse (recall far below precision): "
                     + ", ".join(f"`{r.strategy}` ({r.collapse_flags} of {r.n} runs)" for r in flagged.itertuples()) + ".")
    doc.add(Heading("Findings"), Bullets(items))
