"""The report's judgements: the findings up front, the comparison with the baseline, the budget check.

Every sentence is computed from the tables (comparison.py, budget.py,
tables.py) and says plainly when n is too small; nothing here is written with
a particular outcome in mind.
"""

from __future__ import annotations

import math

import numpy as np

from aegan.report.claims import SPEED_NAMES, TARGET_FACTOR
from aegan.report.comparison import NAMES
from aegan.report.inputs import ReportInputs
from aegan.report.render import Bullets, Document, Heading, Paragraph, Table
from aegan.report.seeds import SEEDS, TARGET_SHARE, baseline_mean, seeds_needed
from aegan.report.study_text import study_findings
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


def claims_section(doc: Document, inputs: ReportInputs) -> None:
    """Faster and more stable, as tested statements against the baseline (claims.py)."""
    base, rp = inputs.params.report.baseline, inputs.params.report
    doc.add(Heading(f"Faster and more stable, tested against `{base}`"))
    sp = inputs.speed
    if sp is None:
        doc.add(Paragraph(f"`{base}` has no small-sample FID curve (train.eval_every: 0, or it was not run): speed is "
                          "not tested."))  # fmt: skip
    else:
        rows = []
        for c in sp.comparisons:
            values = sp.runs.loc[sp.runs["strategy"] == c.strategy, c.metric].to_numpy(float)
            reached = f"{int((~np.isnan(values)).sum())} of {len(values)}" if c.metric == "budget_to_target" else ""
            rows.append([f"`{c.strategy}`", SPEED_NAMES[c.metric], f"{c.n} vs {c.n_baseline}", reached, fmt(c.delta),
                         _interval(c.ci_low, c.ci_high), _p(c.p_value), _p(c.p_adjusted), fmt(c.detectable), c.verdict])
        header = ["strategy", "measure", "seeds", "reached", f"− {base}", f"{rp.confidence:.0%} CI", "p (Welch)",
                  "p (Holm)", "detectable Δ", "reading"]  # fmt: skip
        doc.add(Table(header, rows, note=(
            f"Faster. Budget to target: the first evaluation (every {sp.eval_every} own steps: its resolution) at "
            f"which a run's small-sample FID is at or below {sp.target:.3g}, {TARGET_FACTOR:g}x `{base}`'s final "
            "small-sample FID (mean over its seeds); budget counts generator-side updates, AE pretraining "
            f"included. Mean log FID over budget: the area under log small-sample FID from budget {sp.span[0]:.0f} "
            f"(the first at which every strategy has a curve: an AE strategy trains after its charged pretraining) to "
            f"{sp.span[1]:.0f}, divided by that span. Lower is faster for "
            "both; Welch t over training seeds, Holm per measure across strategies.")))  # fmt: skip
    if inputs.spreads:
        rows = [[f"`{t.strategy}`", f"{t.n} vs {t.n_baseline}", fmt(t.std), fmt(t.std_baseline), _p(t.p_value),
                 _p(t.p_adjusted), t.verdict] for t in inputs.spreads]  # fmt: skip
        doc.add(Table(["strategy", "seeds", "FID std", f"`{base}` FID std", "p (Brown-Forsythe)", "p (Holm)",
                       "reading"], rows, note=(
            "More stable. The spread of the final FID over training seeds against the baseline's: Brown-Forsythe "
            "test (Levene's with the median), Holm across strategies. Few seeds give it little power: a "
            "\"no clear difference\" here rules out only large differences in spread.")))  # fmt: skip


SEEDS_HEADING = "How many seeds"


def _needed(n: int | None) -> str:
    return f"more than {SEEDS[-1]}" if n is None else str(n)


def seeds_section(doc: Document, inputs: ReportInputs) -> None:
    """The smallest FID difference against the baseline that n seeds per side could detect, at this run's
    spreads (seeds.py), and how many seeds a difference of 10% of the baseline's mean FID needs."""
    base, rp = inputs.params.report.baseline, inputs.params.report
    doc.add(Heading(SEEDS_HEADING))
    target, rows = seeds_needed(inputs.comparisons, base, baseline_mean(inputs.table, base))
    if not rows:
        doc.add(Paragraph(f"`{base}` (report.baseline) was not run, or no other strategy was: there is nothing to "
                          "compare, so no spread to scale from."))  # fmt: skip
        return
    m = next(c.family for c in inputs.comparisons if c.metric == "fid")
    doc.add(Paragraph(
        f"How many training seeds a question needs: the smallest true FID difference from `{base}` that n seeds "
        f"per side would detect with 80% power, tested as above (Welch t, Holm-adjusted over the m = {m} strategies "
        f"tested, α = {1.0 - rp.confidence:g}). It is computed from this run's spreads (the std of the final FID "
        f"over finished seeds, of each strategy and of `{base}`) and assumes they stay as observed: with few seeds "
        "an observed std is itself rough, so read the table as a guide, not an exact count."))  # fmt: skip
    table_rows = []
    for r in rows:
        cells = [f"`{r.strategy}`", f"{r.n} vs {r.n_baseline}"]
        if r.detectable:
            table_rows.append(cells + [fmt(r.detectable[n]) for n in SEEDS] + [_needed(r.n_for_target)])
        else:
            table_rows.append(cells + ["n/a"] * len(SEEDS) + [r.why])
    header = ["strategy", "seeds now", *(f"n = {n}" for n in SEEDS),
              f"n for Δ {fmt(target)} ({TARGET_SHARE:.0%} of `{base}`)"]  # fmt: skip
    doc.add(Table(header, table_rows, note=(
        "Each cell: (t quantile at 1 − α/(2m) + t quantile at 0.8) × √((s² + s_base²) / n), with n seeds per side, "
        "s and s_base the observed stds and the t quantiles at Welch's degrees of freedom for that n; at this "
        "run's n it is the detectable Δ of the comparison with the baseline. Last column: the smallest n in the "
        f"table whose detectable difference is at most {fmt(target)}, {TARGET_SHARE:.0%} of `{base}`'s mean FID.")))  # fmt: skip


def seeds_sentence(inputs: ReportInputs) -> str | None:
    """The findings' line on how many seeds a 10% FID difference would take, by strategy; None with nothing compared."""
    base = inputs.params.report.baseline
    target, rows = seeds_needed(inputs.comparisons, base, baseline_mean(inputs.table, base))
    if not rows:
        return None
    untested = [r.strategy for r in rows if not r.detectable]
    if len(untested) == len(rows):
        return (f"How many seeds a FID difference needs cannot be told from this run: no strategy has a spread over "
                f"seeds to scale from (table: {SEEDS_HEADING}).")  # fmt: skip
    groups: dict[str, list[str]] = {}
    for r in sorted((r for r in rows if r.detectable), key=lambda r: r.n_for_target or math.inf):
        groups.setdefault(_needed(r.n_for_target), []).append(r.strategy)
    by = "; ".join(f"{n} seeds per side for {_listing(names)}" for n, names in groups.items())
    text = (f"To see a FID difference of {fmt(target)} ({TARGET_SHARE:.0%} of `{base}`'s mean) would take {by} (at "
            f"this run's spreads; table: {SEEDS_HEADING})")  # fmt: skip
    if untested:
        text += f"; not computable (too few finished seeds, or no spread): {_listing(untested)}"
    return text + "."


def claim_sentences(inputs: ReportInputs, alpha: float) -> list[str]:
    """The findings' lines on *faster* and *more stable*: which strategies the tests separate from the baseline."""
    base, out = inputs.params.report.baseline, []
    if inputs.speed is not None:
        for metric, name in SPEED_NAMES.items():
            cs = [c for c in inputs.speed.comparisons if c.metric == metric]
            if not cs:
                continue
            sig = [c for c in cs if math.isfinite(c.p_adjusted) and c.p_adjusted < alpha]
            faster = [c.strategy for c in sig if c.delta < 0]
            slower = [c.strategy for c in sig if c.delta > 0]
            other = [c.strategy for c in cs if c.strategy not in faster + slower]
            how = (f"target {inputs.speed.target:.3g}" if metric == "budget_to_target" else
                   f"budget {inputs.speed.span[0]:.0f}–{inputs.speed.span[1]:.0f}")  # fmt: skip
            out.append(f"Faster ({name}, {how}, resolution {inputs.speed.eval_every} steps) than `{base}`: "
                       f"{_listing(faster)}; slower: {_listing(slower)}; no clear difference or not testable at this "
                       f"n: {_listing(other)}.")  # fmt: skip
    if inputs.spreads:
        sig = [t for t in inputs.spreads if math.isfinite(t.p_adjusted) and t.p_adjusted < alpha]
        more = [t.strategy for t in sig if t.std < t.std_baseline]
        less = [t.strategy for t in sig if t.std > t.std_baseline]
        other = [t.strategy for t in inputs.spreads if t.strategy not in more + less]
        out.append(f"More stable (narrower FID spread over seeds, Brown-Forsythe) than `{base}`: {_listing(more)}; "
                   f"less stable: {_listing(less)}; no clear difference at this n: {_listing(other)}.")  # fmt: skip
    return out


def _reading(adjusted: float, raw: float, alpha: float, favourable: bool, yes: str, no: str, figure: str) -> str:
    """One cell of the claims table: the answer at this n, with the figure that decides it."""
    if math.isfinite(adjusted) and adjusted < alpha:
        return f"**{yes if favourable else no}** ({figure}, Holm p {adjusted:.2g})"
    if math.isfinite(raw):
        return f"no clear difference at this n ({figure}, Holm p {adjusted:.2g})"
    return "not testable (too few finished seeds, no spread, or never reached)"


def claims_table(inputs: ReportInputs, alpha: float) -> Table | None:
    """The seeds' three claims, each strategy against the baseline: better (FID at the matched budget), faster
    (mean log small-sample FID over the budget), more stable (spread of FID over seeds), with the deciding figure."""
    base, study = inputs.params.report.baseline, inputs.study
    fid = {c.strategy: c for c in inputs.comparisons if c.metric == "fid"}
    if not fid:
        return None
    area = {c.strategy: c for c in inputs.speed.comparisons if c.metric == "log_fid_area"} if inputs.speed else {}
    spread = {t.strategy: t for t in inputs.spreads}
    rows = []
    for s, c in fid.items():
        row = [f"`{s}`", _reading(c.p_adjusted, c.p_value, alpha, c.delta < 0, "better", "worse", f"ΔFID {c.delta:.3g}")]
        a = area.get(s)
        row.append(_reading(a.p_adjusted, a.p_value, alpha, a.delta < 0, "faster", "slower",
                            f"Δ mean log FID {a.delta:.3g}") if a else "not testable (no small-sample FID curve)")
        t = spread.get(s)
        ratio = t.std / t.std_baseline if t and math.isfinite(t.std) and t.std_baseline else math.nan
        row.append(_reading(t.p_adjusted, t.p_value, alpha, t.std < t.std_baseline, "more stable", "less stable",
                            f"FID std {ratio:.3g}x") if t else "not testable")  # fmt: skip
        if study is not None:
            row += study_claims(study, s, alpha)
        rows.append(row)
    header = ["strategy", f"better than `{base}`?", "faster?", "more stable?"]
    note = (f"Each strategy against `{base}` at this n, Holm-adjusted across strategies at α = {alpha:g}. Better: final "
            "FID at the matched budget (Against the baseline). Faster: mean log small-sample FID over the budget (Faster "
            "and more stable, tested; it also gives the budget to a target). More stable: spread of the final FID over "
            "seeds, Brown-Forsythe. \"No clear difference\" is not \"the same\": the detectable differences are given "
            "in those sections.")  # fmt: skip
    if study is not None:
        header += ["better at its best setting? (study)", "more stable over settings? (study)"]
        note += (" The study's columns: the best setting of each, trained again on fresh seeds, against the "
                 "baseline's; the spread of the per-setting mean FID against the baseline's (The study).")  # fmt: skip
    return Table(header, rows, note=note)


def study_claims(study, strategy: str, alpha: float) -> list[str]:
    """The study's answers for one strategy: better at the best setting (fresh seeds), stabler over settings."""
    c = next((c for c in study.comparisons if c.metric == "fid" and c.strategy == strategy), None)
    t = next((t for t in study.spreads if t.strategy == strategy), None)
    better = _reading(c.p_adjusted, c.p_value, alpha, c.delta < 0, "better", "worse", f"ΔFID {c.delta:.3g}") \
        if c and math.isfinite(c.p_value) else "not testable"  # fmt: skip
    ratio = t.std / t.std_baseline if t and math.isfinite(t.std) and t.std_baseline else math.nan
    stable = _reading(t.p_adjusted, t.p_value, alpha, t.std < t.std_baseline, "more stable", "less stable",
                      f"FID std over settings {ratio:.3g}x") if t and math.isfinite(t.p_value) else "not testable"  # fmt: skip
    return [better, stable]


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
    if (needed := seeds_sentence(inputs)) is not None:
        items.append(needed)
    items += study_findings(inputs.study, inputs.params)
    items += claim_sentences(inputs, alpha)
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
    doc.add(Heading("Findings"))
    if (claims := claims_table(inputs, alpha)) is not None:
        doc.add(Paragraph("The three claims (does fusing an AE make training better, faster, more stable?):"), claims)
    doc.add(Bullets(items))
