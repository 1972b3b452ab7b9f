"""The report's judgements: the findings up front, the comparison with the baseline, the budget check.

Every sentence is computed from the tables (comparison.py, budget.py,
tables.py) and says plainly when n is too small; nothing here is written with
a particular outcome in mind.
"""

from __future__ import annotations

import math


from aegan.report.claims import CLAIMS, MEASURE_NAMES, claim_of, figure, kind_of, margin_words, speed_summary
from aegan.report.comparison import NAMES
from aegan.report.copying import copying_sentence
from aegan.report.decided_text import decided_table
from aegan.report.instrument import instrument_sentence
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


def _ratio(log_value: float) -> str:
    return "n/a" if not math.isfinite(log_value) else f"×{math.exp(log_value):.3g}"


def _effect(c) -> tuple[str, str, str, str]:
    """(estimate, interval, simultaneous interval, detectable) of a comparison in its own terms: ratios for logs."""
    if c.log:
        return (_ratio(c.delta), _interval(math.exp(c.ci_low), math.exp(c.ci_high)) if math.isfinite(c.ci_low) else "n/a",
                _interval(math.exp(c.adj_low), math.exp(c.adj_high)) if math.isfinite(c.adj_low) else "n/a",
                _ratio(c.detectable))  # fmt: skip
    return fmt(c.delta), _interval(c.ci_low, c.ci_high), _interval(c.adj_low, c.adj_high), fmt(c.detectable)


def baseline_section(doc: Document, inputs: ReportInputs) -> None:
    params, rp, comparisons = inputs.params, inputs.params.report, inputs.comparisons
    base = rp.baseline
    doc.add(Heading(f"Against the `{base}` baseline, at the matched budget"))
    if base not in params.strategies:
        doc.add(Paragraph(f"`{base}` (report.baseline) is not among the strategies run: add it to `strategies` "
                          "to compare against it."))  # fmt: skip
        return
    level = f"{rp.confidence:.0%}"
    rows = [[f"`{c.strategy}`", NAMES[c.metric] + (" (ratio)" if c.log else ""), f"{c.n} vs {c.n_baseline}",
             *(_effect(c)[:2]), _p(c.p_value), _p(c.p_adjusted), *(_effect(c)[2:]), c.verdict]
            for c in comparisons]  # fmt: skip
    ns = sorted({c.n for c in comparisons} | {c.n_baseline for c in comparisons})
    tested = sum(math.isfinite(c.p_value) for c in comparisons if c.metric == "fid")
    header = ["strategy", "metric", "seeds", f"vs `{base}`", f"{level} CI", "p (Welch)", "p (Holm)", "simultaneous CI",
              "detectable", "reading"]  # fmt: skip
    doc.add(Table(header, rows, note=(
        f"FID is compared on the log scale: the figure is the ratio of the geometric mean FID over training seeds to "
        f"`{base}`'s (below 1: lower FID), from Welch's t on log FID; FID is right-skewed and its differences "
        f"multiply. KID is compared as a difference of means on its own scale (it is an unbiased estimate that can "
        f"be 0 or below, so a ratio means nothing). The p-values are Holm-adjusted per metric across the strategies "
        f"tested ({tested}); the simultaneous interval is Bonferroni's ({level} for all of them together). "
        "Detectable: the smallest true difference (a ratio for FID) these seeds would detect with 80% power at the "
        f"adjusted level, given the observed spreads. Seeds per side: {', '.join(map(str, ns))}. Only the claim's "
        "primary measure (report.primary.better) gives a verdict; the other is secondary.")))  # fmt: skip


def claims_section(doc: Document, inputs: ReportInputs) -> None:
    """Every measure of the three claims against the baseline, the primary ones marked (claims.py)."""
    base, cl = inputs.params.report.baseline, inputs.claims
    doc.add(Heading(f"The three claims, measure by measure, against `{base}`"))
    if cl is None:
        doc.add(Paragraph(f"`{base}` (report.baseline) was not run: nothing is tested."))
        return
    rows = [[CLAIM_WORDS[claim_of(t.metric)], MEASURE_NAMES[t.metric] + (" **(primary)**" if t.primary else ""),
             f"`{t.strategy}`", f"{t.n} vs {t.n_baseline}", figure(t), _p(t.p_value), _p(t.p_adjusted), t.verdict]
            for claim in CLAIMS for t in cl.tests if claim_of(t.metric) == claim]  # fmt: skip
    doc.add(Table(["claim", "measure", "strategy", "runs", "figure", "p", "p (Holm)", "reading"], rows, note=(
        "Primary measures were declared before the run (params.yaml report.primary); only they give a verdict, "
        f"Holm-adjusted across the strategies tested on them (one family per claim, α = {cl.alpha:g}). A ratio is "
        f"the strategy's geometric mean over runs divided by `{base}`'s, with its interval. "
        + MEASURE_NOTE.format(eval_every=cl.eval_every, span=f"{cl.span[0]:.0f}–{cl.span[1]:.0f}",
                              tail=inputs.params.report.tail_fraction,
                              ratio=inputs.params.report.collapse_recall_ratio))))  # fmt: skip
    failures = cl.runs.groupby("strategy", sort=False).agg(runs=("failed", "size"), failed=("failed", "sum"),
                                                            collapsed=("collapsed", "sum"), diverged=("diverged", "sum"))
    sources = cl.runs.groupby("strategy", sort=False)["source"].agg(lambda v: ", ".join(sorted(set(v), key=str)))
    doc.add(Table(["strategy", "runs", "failed", "collapsed", "diverged", "runs from"],
                  [[f"`{s}`", str(int(r.runs)), str(int(r.failed)), str(int(r.collapsed)), str(int(r.diverged)), sources[s]]
                   for s, r in failures.iterrows()],  # fmt: skip
                  note="Every run of each strategy: its training seeds, and the study's drawn settings where the study ran."))
    if cl.targets:
        speed = speed_summary(cl)
        rows = []
        for s, entry in speed.items():
            row = [f"`{s}`"]
            for factor in cl.targets:
                b, t = entry[f"budget_to_{factor:g}x"], entry[f"seconds_to_{factor:g}x"]
                row.append("never" if b["mean"] is None else
                           f"{b['mean']:.0f} ({b['reached']} of {b['runs']}); {fmt(t['mean'])} s")  # fmt: skip
            rows.append(row)
        header = ["strategy"] + [f"to {f:g}x = {v:.3g}" for f, v in cl.targets.items()]
        doc.add(Table(header, rows, note=(
            f"Secondary speed measures, not verdicts: the mean budget (generator-side updates, AE pretraining "
            f"charged) at which a run's small-sample FID first reaches each target, a multiple of `{base}`'s final "
            f"small-sample FID (runs that reached it of all runs), and the same in training seconds (AE pretraining "
            f"included; machine-dependent). Resolution: an evaluation every {cl.eval_every} steps.")))  # fmt: skip
    disagreements = speed_disagreements(cl)
    if disagreements:
        doc.add(Bullets(disagreements))


CLAIM_WORDS = {"better": "better", "faster": "faster", "stable": "more stable"}
MEASURE_NOTE = (
    "FID (log scale): final FID at the matched budget. KID: difference of means. Mean log FID over the budget: the "
    "area under log small-sample FID over budget {span} divided by its length, every strategy scored from budget 0 "
    "(charged AE pretraining steps as the generator the strategy would have had then: the decoder with its prior, "
    "or its untrained generator); an evaluation every {eval_every} steps. Share of runs that collapse or diverge: "
    "collapsed is recall < {ratio:g} x precision, diverged a loss beyond train.divergence_bound; Boschloo's exact "
    "test. Late FID oscillation: per run, the std of log small-sample FID around its straight-line trend over the "
    "last {tail:.0%} of the budget; Welch's t on its log. FID spread over seeds: the std of log FID, F test of the "
    "variance ratio.")


def speed_disagreements(cl) -> list[str]:
    """Where the primary speed measure and a budget-to-target disagree in direction, and why they can."""
    speed, base = speed_summary(cl), cl.baseline
    out = []
    for t in (t for t in cl.tests if t.metric == "log_fid_area" and math.isfinite(t.delta)):
        mine, theirs = speed.get(t.strategy, {}), speed.get(base, {})
        for factor in cl.targets:
            a, b = mine.get(f"budget_to_{factor:g}x", {}), theirs.get(f"budget_to_{factor:g}x", {})
            if a.get("mean") is None and b.get("mean") is None:
                continue
            later = a.get("mean") is None or (b.get("mean") is not None and a["mean"] > b["mean"])
            if (t.delta < 0) == later:
                out.append(
                    f"`{t.strategy}` has a {'lower' if t.delta < 0 else 'higher'} mean log FID over the budget than "
                    f"`{base}` but reaches {factor:g}x `{base}`'s final FID {'later' if later else 'sooner'}"
                    f"{' (or never)' if a.get('mean') is None else ''}: the area weighs the whole curve, the target "
                    f"only its first crossing, so a curve that starts low but ends higher (or the reverse) "
                    f"splits them. The budget curves (figure) show where they cross.")  # fmt: skip
                break
    return out


SEEDS_HEADING = "How many seeds"


def _needed(n: int | None) -> str:
    return f"more than {SEEDS[-1]}" if n is None else str(n)


def seeds_section(doc: Document, inputs: ReportInputs) -> None:
    """The smallest FID ratio to the baseline that n seeds per side could detect, at this run's spreads
    (seeds.py), and how many seeds a FID ratio of 1.1 needs."""
    base, rp = inputs.params.report.baseline, inputs.params.report
    doc.add(Heading(SEEDS_HEADING))
    target, rows = seeds_needed(inputs.comparisons, base, baseline_mean(inputs.table, base))
    if not rows:
        doc.add(Paragraph(f"`{base}` (report.baseline) was not run, or no other strategy was: there is nothing to "
                          "compare, so no spread to scale from."))  # fmt: skip
        return
    m = next(c.family for c in inputs.comparisons if c.metric == "fid")
    doc.add(Paragraph(
        f"How many training seeds a question needs: the smallest true FID ratio to `{base}` (either way) that n seeds "
        f"per side would detect with 80% power, tested as above (Welch t on log FID, Holm-adjusted over the m = {m} "
        f"strategies tested, α = {1.0 - rp.confidence:g}). It is computed from this run's spreads (the std of the "
        f"final log FID over finished seeds, of each strategy and of `{base}`) and assumes they stay as observed: with few seeds "
        "an observed std is itself rough, so read the table as a guide, not an exact count."))  # fmt: skip
    table_rows = []
    for r in rows:
        cells = [f"`{r.strategy}`", f"{r.n} vs {r.n_baseline}"]
        if r.detectable:
            table_rows.append(cells + [_ratio(r.detectable[n]) for n in SEEDS] + [_needed(r.n_for_target)])
        else:
            table_rows.append(cells + ["n/a"] * len(SEEDS) + [r.why])
    header = ["strategy", "seeds now", *(f"n = {n}" for n in SEEDS),
              f"n for a ratio {_ratio(target)}"]  # fmt: skip
    doc.add(Table(header, table_rows, note=(
        "Each cell: exp of (t quantile at 1 − α/(2m) + t quantile at 0.8) × √((s² + s_base²) / n), with n seeds per "
        "side, s and s_base the observed stds of log FID and the t quantiles at Welch's degrees of freedom for that "
        "n; at this run's n it is the detectable ratio of the comparison with the baseline. Last column: the "
        f"smallest n in the table whose detectable ratio is at most {_ratio(target)} ({TARGET_SHARE:.0%} either way).")))  # fmt: skip


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
    text = (f"To see a FID ratio of {_ratio(target)} to `{base}`'s ({TARGET_SHARE:.0%} either way) would take {by} "
            f"(at this run's spreads; table: {SEEDS_HEADING})")  # fmt: skip
    if untested:
        text += f"; not computable (too few finished seeds, or no spread): {_listing(untested)}"
    return text + "."


def claim_sentences(inputs: ReportInputs) -> list[str]:
    """The Findings' lines on the claims: the declared primary measures, and what the secondary ones are."""
    cl = inputs.claims
    if cl is None:
        return []
    declared = "; ".join(f"{CLAIM_WORDS[c]}: {MEASURE_NAMES[m]}" for c, m in cl.primary.items())
    out = [f"Primary measures, declared before the run (report.primary): {declared}. Every other measure is shown in "
           "\"The three claims, measure by measure\" as secondary, never as a verdict."]  # fmt: skip
    failures = cl.runs.groupby("strategy", sort=False)["failed"].agg(["sum", "size"])
    out.append("Runs that collapsed or diverged: " + ", ".join(f"`{s}` {int(r['sum'])} of {int(r['size'])}"
                                                               for s, r in failures.iterrows()) + ".")  # fmt: skip
    out += speed_disagreements(cl)
    return out


def _cell(t, alpha: float, provisional: bool) -> str:
    """One cell of the claims table: the primary measure's answer at this n, with the figure that decides it."""
    if t is None or not math.isfinite(t.p_value):
        return "not testable (too few finished runs, no spread, or no curve)"
    favourable, unfavourable = CLAIMS[claim_of(t.metric)][1]
    mark = " *(provisional)*" if provisional else ""
    kind = kind_of(t, alpha)
    if kind in ("favourable", "unfavourable"):
        return f"**{favourable if kind == 'favourable' else unfavourable}**{mark} ({figure(t)}, Holm p {t.p_adjusted:.2g})"
    if kind == "equivalent":
        return (f"**equivalent**{mark} ({figure(t)}, within {margin_words(t)}, TOST Holm p "
                f"{t.p_equivalence_adjusted:.2g})")  # fmt: skip
    tost = f"{t.p_equivalence_adjusted:.2g}" if math.isfinite(t.p_equivalence_adjusted) else "n/a"
    return (f"undecided at {t.n} vs {t.n_baseline}{mark} ({figure(t)}; Holm p {t.p_adjusted:.2g}, not within "
            f"{margin_words(t)}: TOST Holm p {tost})")  # fmt: skip


def claims_table(inputs: ReportInputs, alpha: float) -> Table | None:
    """The seeds' three claims, each strategy against the baseline, each by its declared primary measure, with the
    figure that decides it; every verdict marked provisional when the baseline has not flattened."""
    base, study, cl = inputs.params.report.baseline, inputs.study, inputs.claims
    if cl is None:
        return None
    provisional = inputs.plateau.flat is False
    strategies = [s for s in inputs.params.strategies if s != base]
    rows = [[f"`{s}`", *(_cell(cl.test(s, cl.primary[c]), alpha, provisional) for c in CLAIMS)] for s in strategies]
    if study is not None:
        rows = [row + study_claims(study, s, alpha) for row, s in zip(rows, strategies)]
    header = ["strategy", f"better than `{base}`?", "faster?", "more stable?"]
    note = (f"Each strategy against `{base}` by the primary measure declared for each claim (report.primary: "
            + "; ".join(f"{CLAIM_WORDS[c]}: {MEASURE_NAMES[m]}" for c, m in cl.primary.items())
            + f"), Holm-adjusted across strategies per claim at α = {alpha:g}. A ratio is the strategy's geometric "
            f"mean over seeds divided by `{base}`'s. Three kinds of verdict: different (better or worse); "
            f"**equivalent**, when two one-sided tests (TOST) put the difference surely inside the margin declared "
            f"before the run (report.equivalence); or **undecided** at this n, neither. `aegan decide` adds seeds "
            "until each is decided.")  # fmt: skip
    if provisional:
        pl, budget = inputs.plateau, inputs.params.train.budget
        note = (f"**Provisional:** `{base}`'s small-sample FID had not flattened by the end of the budget "
                f"({pl.change:.0%} change over the last quarter; criterion ≤ {pl.tolerance:.0%}), so every verdict "
                f"may change with more training: try train.budget {2 * budget} or more. ") + note  # fmt: skip
    if study is not None:
        header += ["better at its best setting? (study)", "more stable over settings? (study)"]
        note += (" The study's columns: the best setting of each, trained again on fresh seeds, against the "
                 "baseline's (FID on the log scale); the spread of the per-setting mean FID against the baseline's.")
    return Table(header, rows, note=note)


def study_claims(study, strategy: str, alpha: float) -> list[str]:
    """The study's answers for one strategy: better at the best setting (fresh seeds), stabler over settings."""
    c = next((c for c in study.comparisons if c.metric == "fid" and c.strategy == strategy), None)
    t = next((t for t in study.spreads if t.strategy == strategy), None)
    if c is None or not math.isfinite(c.p_value):
        better = "not testable"
    elif c.p_adjusted < alpha:
        better = f"**{'better' if c.delta < 0 else 'worse'}** (FID ratio {math.exp(c.delta):.3g}, Holm p {c.p_adjusted:.2g})"
    else:
        better = f"no clear difference at this n (FID ratio {math.exp(c.delta):.3g}, Holm p {c.p_adjusted:.2g})"
    ratio = t.std / t.std_baseline if t and math.isfinite(t.std) and t.std_baseline else math.nan
    if t is None or not math.isfinite(t.p_value):
        stable = "not testable"
    elif t.p_adjusted < alpha:
        stable = (f"**{'more stable' if t.std < t.std_baseline else 'less stable'}** (FID std over settings "
                  f"{ratio:.3g}x, Holm p {t.p_adjusted:.2g})")  # fmt: skip
    else:
        stable = f"no clear difference at this n (FID std over settings {ratio:.3g}x, Holm p {t.p_adjusted:.2g})"
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
    table = inputs.table
    base, alpha = inputs.params.report.baseline, 1.0 - inputs.params.report.confidence
    items = []
    fid = table[["strategy", "fid_mean", "fid_std", "n"]].dropna(subset=["fid_mean"]).sort_values("fid_mean")
    if len(fid):
        ranking = ", ".join(f"`{r.strategy}` {fmt(r.fid_mean, r.fid_std, n=int(r.n))}" for r in fid.itertuples())
        items.append(f"Ranking by mean {fid_name(inputs.reference.get('feature_extractor', ''))} at the matched budget, "
                     f"lower is better: {ranking}.")  # fmt: skip
    items += claim_sentences(inputs)
    items.append(copying_sentence(inputs))
    if (instrument := instrument_sentence(inputs)) is not None:
        items.append(instrument)
    if (needed := seeds_sentence(inputs)) is not None:
        items.append(needed)
    items += study_findings(inputs.study, inputs.params)
    items.append(plateau_sentence(base, inputs.plateau))
    rk = inputs.rankings
    if rk["matched"]:
        same = [s for s, _ in rk["matched"]] == [s for s, v in rk["own_steps"] if math.isfinite(v)]
        items.append(f"Head start: the small-sample FID ranking at the matched budget {'agrees' if same else 'differs'} "
                     f"with the ranking at equal own steps ({rk['own_step']} each, the AE's pretraining not counted); "
                     "see Budget.")  # fmt: skip
    doc.add(Heading("Findings"))
    if (claims := claims_table(inputs, alpha)) is not None:
        doc.add(Paragraph("The three claims (does fusing an AE make training better, faster, more stable?), at the "
                          f"pipeline's own {len(inputs.params.seeds)} seeds:"), claims)
    if inputs.decided is not None:
        doc.add(Paragraph("The same claims decided by adding seeds where they were open (`aegan decide`):"),
                decided_table(inputs.decided, base))
    doc.add(Bullets(items))
