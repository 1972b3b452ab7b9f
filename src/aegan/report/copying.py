"""Copying is not generalising: the report's section, Findings sentence and summary entries on data copying.

Each finished run's evaluation holds (stages/evaluate.py, aegan.copying) the median nearest-neighbour distances
of its samples to a training subset of the held-out split's size and to the held-out split, the held-out
images' own distance to that training subset, Meehan et al.'s C_T test in the scorer's features and in pixels,
and FID against that training subset. Here a strategy's seeds are combined (`judge`: Stouffer's Z for
runs that share the held-out images, Holm across every strategy and both spaces, alpha = 1 - report.confidence)
and a strategy whose samples sit measurably closer to its training images than held-out images do is flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aegan.copying import MIN_GENERATED, MIN_HELDOUT, normal_cdf
from aegan.report.comparison import holm
from aegan.report.inputs import ReportInputs
from aegan.report.render import Document, Heading, Paragraph, Table
from aegan.report.text import fmt

SPACES = ("features", "pixels")
DISTANCES = ("nn_train", "heldout_nn_train", "ratio", "nn_train_subset", "nn_heldout")
HEADING = "Copying or generalising"


# ------------------------------------------------------------------ a strategy, over its runs
def run_correlation(a: list[list], b: list[list]) -> float:
    """Null correlation of two runs' Z (their `cells`), generated independently but tested against the same
    held-out images and partition.

    In a cell with n held-out images and m_a, m_b generated samples, the two U statistics share the held-out
    points: Cov(U_a, U_b) = n m_a m_b / 12, so corr(Z_U,a, Z_U,b) = sqrt(m_a m_b / ((m_a + n + 1)(m_b + n + 1)));
    across cells they are independent. With w = P_n(pi) over the cells each run used,

        corr(Z_a, Z_b) = sum_{pi in both} w^2 rho_pi / sqrt(sum_{pi in a} w^2 * sum_{pi in b} w^2).

    Runs on different partitions or held-out sets (their held-out counts differ), or without cell detail: 1, the
    largest possible, which keeps the combined test valid (conservative).
    """
    if not a or not b or [c[0] for c in a] != [c[0] for c in b]:
        return 1.0
    both = sum(ca[0] ** 2 * math.sqrt(ca[1] * cb[1] / ((ca[1] + ca[0] + 1) * (cb[1] + cb[0] + 1)))
               for ca, cb in zip(a, b) if ca[2] is not None and cb[2] is not None)  # fmt: skip
    sa, sb = (sum(c[0] ** 2 for c in cells if c[2] is not None) for cells in (a, b))
    return both / math.sqrt(sa * sb) if sa > 0 and sb > 0 else 1.0


def combine_runs(runs: list[dict]) -> tuple[float, float]:
    """Stouffer's Z over a strategy's runs ({"z", "cells"} each) and its one-sided p = Phi(Z).

    The runs share the held-out images, so their Z are positively correlated under the null (about m / (m + n)
    per cell: 0.8 with 2000 samples against 449 held-out images); plain Stouffer, sum z / sqrt(r), would then
    flag fair strategies far more often than alpha. The generalised form (Strube 1985) divides by the null
    standard deviation of the sum instead:

        Z = sum_i z_i / sqrt(sum_i sum_j rho_ij),   rho_ii = 1, rho_ij = `run_correlation`.
    """
    runs = [r for r in runs if r.get("z") is not None and math.isfinite(r["z"])]
    if not runs:
        return math.nan, math.nan
    total = sum(1.0 if i == j else run_correlation(a.get("cells"), b.get("cells"))
                for i, a in enumerate(runs) for j, b in enumerate(runs))  # fmt: skip
    z = sum(r["z"] for r in runs) / math.sqrt(total)
    return z, normal_cdf(z)


@dataclass(frozen=True)
class Verdict:
    """One strategy in one feature space: its runs' combined C_T test, Holm-adjusted across the family."""

    strategy: str
    space: str  # "features" or "pixels"
    runs: int  # runs with a finite Z
    z_mean: float  # mean of the runs' Z
    z: float  # combined (`combine_runs`)
    p: float  # one-sided, Phi(z)
    p_holm: float  # Holm across every (strategy, space) tested
    flagged: bool  # p_holm < alpha: samples measurably closer to the training images than held-out images are


def judge(tests: dict[tuple[str, str], list[dict]], alpha: float) -> list[Verdict]:
    """Per (strategy, space): its runs' tests ({"z", "cells"} each) combined (`combine_runs`), one-sided p, Holm
    across the family of every (strategy, space) with a finite p; flagged when the adjusted p < alpha. The family
    error rate (some fair strategy flagged in some space) is then at most alpha."""
    keys = list(tests)
    combined = [combine_runs(tests[k]) for k in keys]
    adjusted = holm([p for _, p in combined])
    out = []
    for (strategy, space), (z, p), p_adj in zip(keys, combined, adjusted):
        zs = [r["z"] for r in tests[(strategy, space)] if r.get("z") is not None and math.isfinite(r["z"])]
        out.append(Verdict(strategy, space, len(zs), float(np.mean(zs)) if zs else math.nan, z, p, p_adj,
                           bool(math.isfinite(p_adj) and p_adj < alpha)))  # fmt: skip
    return out


def _finished(inputs: ReportInputs):
    """The finished runs whose evaluation holds a copying entry (older evaluations have none)."""
    runs = inputs.runs
    if "copying" not in runs:
        return runs.iloc[0:0]
    return runs[(runs["status"] == "finished") & runs["copying"].map(lambda c: isinstance(c, dict))]


def tests(inputs: ReportInputs) -> dict[tuple[str, str], list[dict]]:
    """(strategy, space) -> each finished run's C_T test in that space (a space a run skipped is left out)."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in _finished(inputs).itertuples():
        for space in SPACES:
            entry = r.copying.get(space) or {}
            if entry.get("z") is not None:
                out.setdefault((r.strategy, space), []).append(entry)
    return out


def verdicts(inputs: ReportInputs) -> list[Verdict]:
    """Every (strategy, space) judged on its seeds together, Holm across them all (`judge`)."""
    return judge(tests(inputs), 1.0 - inputs.params.report.confidence)


def flagged(inputs: ReportInputs) -> dict[str, list[Verdict]]:
    """strategy -> its flagged verdicts (the spaces where its samples sit measurably closer to training images)."""
    out: dict[str, list[Verdict]] = {}
    for v in verdicts(inputs):
        if v.flagged:
            out.setdefault(v.strategy, []).append(v)
    return out


def medians(inputs: ReportInputs, strategy: str, space: str) -> dict[str, float]:
    """Mean over the strategy's finished seeds of each median NN distance (and ratio) in one space."""
    runs = _finished(inputs)
    entries = [c.get(space) or {} for c in runs.loc[runs["strategy"] == strategy, "copying"]]
    return {k: _mean([e.get(k) for e in entries]) for k in DISTANCES}


def _mean(values) -> float:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    return float(v.mean()) if len(v) else math.nan


def _pair(d: dict[str, float], a: str, b: str) -> str:
    return "n/a" if not (math.isfinite(d[a]) and math.isfinite(d[b])) else f"{d[a]:.3g} / {d[b]:.3g}"


def _p(p: float) -> str:
    return "n/a" if not math.isfinite(p) else f"{p:.2g}"


def copying_section(doc: Document, inputs: ReportInputs) -> None:
    """A table per strategy: NN distances, their ratio, C_T in both spaces (Holm p), FID vs held-out beside FID vs
    train, and the flag; a note saying what each measure is."""
    doc.add(Heading(HEADING))
    runs, alpha = _finished(inputs), 1.0 - inputs.params.report.confidence
    if runs.empty:
        doc.add(Paragraph("No finished run's evaluation holds the copying measures (evaluations made before they "
                          "existed): re-run the evaluate stages (`dvc repro`) to see them."))  # fmt: skip
        return
    by = {(v.strategy, v.space): v for v in verdicts(inputs)}
    rows = []
    for strategy in inputs.params.strategies:
        mine = runs[runs["strategy"] == strategy]
        if mine.empty:
            continue
        cells = [f"`{strategy}`", str(len(mine))]
        for space in SPACES:
            d = medians(inputs, strategy, space)
            cells += [_pair(d, "nn_train", "heldout_nn_train"), fmt(d["ratio"]),
                      _pair(d, "nn_train_subset", "nn_heldout")]
        for space in SPACES:
            v = by.get((strategy, space))
            cells += ["n/a", "n/a"] if v is None else [fmt(v.z_mean), _p(v.p_holm)]
        cells += [fmt(_mean(mine["fid"])), fmt(_mean(mine["fid_train"]))]
        spaces = [v.space for v in by.values() if v.strategy == strategy and v.flagged]
        cells.append(f"**copying** ({', '.join(spaces)})" if spaces else "no")
        rows.append(cells)
    header = ["strategy", "seeds"]
    for space in SPACES:
        header += [f"{space}: G→T / H→T", f"ratio ({space})", f"{space}: G→T′ / G→H"]
    header += ["C_T Z (features)", "p Holm (features)", "C_T Z (pixels)", "p Holm (pixels)", "FID vs held-out",
               "FID vs train′", "flag"]  # fmt: skip
    doc.add(Table(header, rows, note=copying_note(inputs, alpha)))
    skipped = sorted({c["features"]["skipped"] for c in runs["copying"] if "skipped" in (c.get("features") or {})})
    if skipped:
        doc.add(Paragraph(f"Scorer features not compared: {'; '.join(skipped)}."))


def copying_note(inputs: ReportInputs, alpha: float) -> str:
    """What each column measures, in a sentence a reader can check."""
    runs = _finished(inputs)
    first = runs["copying"].iloc[0]
    m = sum(1 for v in verdicts(inputs) if math.isfinite(v.p))
    return (
        f"Mean over finished seeds. G→T / H→T: median Euclidean distance from each of the {first.get('samples')} "
        "generated samples (G), and from each held-out image (H), to its nearest training image (T, the whole "
        "training split): how close a sample sits to the training set, beside how close an unseen image of the "
        "same distribution does; in the scorer's features and in pixels (scaled to [-1, 1]). Ratio: G→T over "
        "H→T; below 1, the samples sit closer to the training images than unseen images do. G→T′ / G→H: the "
        f"samples' median distance to a training subset T′ ({first.get('train_subset')} images drawn with seed "
        f"{first.get('seed')}) and to the held-out split ({first.get('heldout')} images), sets of one size (the "
        "distance to a set shrinks as it grows), equal for a fair generator. C_T Z: Meehan, Chaudhuri & "
        "Dasgupta's (2020) data-copying test: k-means cells on the training split; in each cell a Mann-Whitney U of "
        "the samples' distance to their nearest training image against the held-out images', Z-scored; summed "
        f"weighted by the cell's share of the held-out images over cells with at least {MIN_GENERATED} samples and "
        f"{MIN_HELDOUT} held-out images, and normalised to be N(0, 1) when samples are as far from the training set "
        "as held-out images are; negative: closer (copying), positive: farther (underfitting). p Holm: the seeds "
        "combined by "
        "Stouffer's Z (allowing for the correlation of runs scored against the same held-out images), one-sided, "
        f"Holm-adjusted across the {m} tests of every strategy and both spaces. Flag: adjusted p < α = {alpha:g}. "
        "FID vs train′: FID of the same samples against T′, beside the FID against the held-out split (the main "
        "table's), both against sets of one size; clearly below it is another sign of memorised training images."
    )  # fmt: skip


def copying_sentence(inputs: ReportInputs) -> str:
    """The Findings' line on copying: which strategies are flagged, or that none is, and by which test."""
    alpha = 1.0 - inputs.params.report.confidence
    if _finished(inputs).empty:
        return ("Copying: not measured (the evaluations predate the data-copying test): re-run the evaluate stages "
                "to see whether any strategy copies its training images.")  # fmt: skip
    how = (f"Meehan et al.'s C_T test on nearest-training-image distances in scorer features and pixels, seeds "
           f"combined, Holm-adjusted, α = {alpha:g}; see {HEADING}")  # fmt: skip
    bad = flagged(inputs)
    if not bad:
        return (f"Copying: no strategy's samples sit measurably closer to their training images than held-out images "
                f"do ({how}).")  # fmt: skip
    listed = ", ".join(f"`{s}` ({'; '.join(f'{v.space}: mean Z {v.z_mean:.2g}, Holm p {_p(v.p_holm)}' for v in vs)})"
                       for s, vs in bad.items())  # fmt: skip
    return (f"Copying: the samples of {listed} sit measurably closer to their training images than held-out images "
            f"do ({how}): part of their FID reflects memorised training images, not generalisation.")  # fmt: skip


def summary_entries(inputs: ReportInputs) -> dict[str, dict]:
    """summary.json's copying figures, per strategy: {strategy: {"copying": {space: {...}, "fid_train", "flagged"}}}."""
    runs = _finished(inputs)
    by = {(v.strategy, v.space): v for v in verdicts(inputs)}
    out: dict[str, dict] = {}
    for strategy in runs["strategy"].unique():
        entry: dict = {}
        for space in SPACES:
            entry[space] = medians(inputs, strategy, space)
            v = by.get((strategy, space))
            if v is not None:
                entry[space] |= {"z_mean": v.z_mean, "z": v.z, "p": v.p, "p_holm": v.p_holm, "flagged": v.flagged}
        entry["fid_train"] = _mean(runs.loc[runs["strategy"] == strategy, "fid_train"])
        entry["flagged"] = any(v.flagged for v in by.values() if v.strategy == strategy)
        out[str(strategy)] = {"copying": entry}
    return out
