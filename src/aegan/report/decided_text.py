"""The decided verdicts in the report: a table in the Findings and a section with every look (report/decided.py
replays the procedure; report/sequential.py says why it keeps its error rates)."""

from __future__ import annotations

import math

from aegan.report.claims import CLAIMS, MEASURE_NAMES, RATIO_MEASURES
from aegan.report.render import Bullets, Document, Heading, Paragraph, Table

HEADING = "Decided verdicts (`aegan decide`)"


def _figure(measure: str, iv) -> str:
    """An interval on the measure's own terms: a ratio for log measures, a difference otherwise."""
    if iv is None or not math.isfinite(iv.estimate):
        return "n/a"
    if measure in RATIO_MEASURES:
        bounds = f" [{math.exp(iv.low):.3g}, {math.exp(iv.high):.3g}]" if math.isfinite(iv.low) else ""
        return f"ratio {math.exp(iv.estimate):.3g}{bounds}"
    bounds = f" [{iv.low:.3g}, {iv.high:.3g}]" if math.isfinite(iv.low) else ""
    return f"Δ {iv.estimate:.3g}{bounds}"


def _margin(measure: str, margin: float) -> str:
    return f"×{math.exp(margin):.3g} either way" if measure in RATIO_MEASURES else f"±{margin:.3g}"


def word_of(claim: str, word: str) -> str:
    favourable, unfavourable = CLAIMS[claim][1]
    return {"better": favourable, "worse": unfavourable}.get(word, word)


def cell(outcome, strategy: str, claim: str) -> str:
    """One strategy's decided answer to one claim, the seeds it needed, and whether fresh seeds agreed."""
    v = outcome.verdicts[(strategy, claim)]
    measure = outcome.plan.measures[claim][0]
    if v.look is None:
        return "not judged yet"
    iv = v.equivalence if v.word == "equivalent" else v.difference
    text = f"**{word_of(claim, v.word)}**" if v.word != "undecided" else "undecided"
    where = f"{v.n} vs {v.n_baseline} seeds"
    if v.word == "undecided":
        where += " (the cap)" if v.capped else " so far"
    text += f" at {where} ({_figure(measure, iv)})"
    rep = outcome.replication.get((strategy, claim))
    if rep is not None:
        text += f"; fresh seeds: **{rep.word}** (n {rep.n}, Holm p {rep.p:.2g})"
    elif v.word != "undecided" and outcome.plan.replicate:
        text += "; replication pending"
    return text


def decided_table(outcome, base: str) -> Table:
    plan = outcome.plan
    header = ["strategy", *(f"{'better than `' + base + '`' if c == 'better' else 'faster' if c == 'faster' else 'more stable'}? (decided)"
                            for c in plan.measures)]  # fmt: skip
    rows = [[f"`{s}`", *(cell(outcome, s, c) for c in plan.measures)] for s in plan.strategies]
    state = "" if outcome.done else (" **Not finished:** the runs the next step needs are not all on disk yet "
                                     f"({', '.join(f'`{s}` {n} seeds' for s, n in outcome.needs.items())}): run "
                                     "`aegan decide` again.")  # fmt: skip
    note = (f"Seeds added in batches of {plan.batch} (from {plan.start}, at most {plan.max_seeds} per side) to each "
            "strategy still undecided and to the baseline, under a group-sequential rule (O'Brien-Fleming-type "
            "alpha spending, repeated confidence intervals, Bonferroni across strategies): at most "
            f"α = {plan.alpha:g} false verdicts per claim over every look. Each decided verdict is then tested again on "
            f"{plan.replicate} fresh seeds per side. Intervals: the repeated confidence interval that decided it "
            f"(see \"{HEADING}\").{state}")  # fmt: skip
    return Table(header, rows, note=note)


def decided_section(doc: Document, outcome) -> None:
    plan = outcome.plan
    doc.add(Heading(HEADING))
    margins = "; ".join(f"{claim}: {MEASURE_NAMES[m]}, margin {_margin(m, margin)}"
                        for claim, (m, _, margin) in plan.measures.items())  # fmt: skip
    doc.add(Paragraph(
        f"Every strategy and `{plan.baseline}` started with the pipeline's {plan.start} seeds. At each look every "
        "claim still open was judged by its primary measure on the first n seeds of the strategy and of the "
        "baseline: better or worse when the repeated confidence interval of the difference excludes 0, "
        "equivalent when a second one (two one-sided tests) lies inside the margin, else undecided; a verdict, "
        f"once reached, is kept. Strategies with a claim still open, and `{plan.baseline}`, got {plan.batch} more "
        f"seeds, up to {plan.max_seeds} a side. The critical values come from Lan and DeMets' O'Brien-Fleming-type "
        "spending of α over the share n / cap of the planned seeds, so repeated looks do not inflate the error "
        f"rate; α = {plan.alpha:g} per claim, split equally over the {len(plan.strategies)} strategies (Bonferroni). "
        f"Primary measures and margins (report.primary, report.equivalence): {margins}."))  # fmt: skip
    rows = []
    for look in outcome.looks:
        decided = [f"`{s}` {word_of(c, j.word)}" + (f" ({c})" if j.word == "equivalent" else "")
                   for (s, c), j in look.judgements.items() if j.word != "undecided"]  # fmt: skip
        judged = sorted({s for s, _ in look.judgements})
        rows.append([str(look.index), str(look.n[plan.baseline]), f"{look.fraction:.2f}", f"{look.boundary:.2f}",
                     f"{look.equivalence_boundary:.2f}", ", ".join(f"`{s}`" for s in judged),
                     "; ".join(decided) or "none"])  # fmt: skip
    doc.add(Table(["look", "seeds per side", "share of the cap", "z (direction)", "z (equivalence)", "judged",
                   "decided at this look"], rows, note=(
        "z: the critical value of the look's repeated confidence intervals (a fixed-n 95% interval has 1.96); "
        "early looks spend little of α, so only a large difference is decided there.")))  # fmt: skip
    if outcome.replication:
        reps = [f"`{s}` {c} ({word_of(c, r.verdict)}): {r.word}, {_figure(plan.measures[c][0], r.interval)} on "
                f"{r.n} fresh seeds per side (Holm p {r.p:.2g})" for (s, c), r in outcome.replication.items()]
        doc.add(Paragraph("The replication (one look at a fixed n, one-sided in the verdict's direction, TOST for "
                          "\"equivalent\"; Holm across the replicated comparisons of each claim):"), Bullets(reps))
    elif not outcome.done:
        doc.add(Paragraph("The replication has not run yet: `aegan decide` has not finished."))
