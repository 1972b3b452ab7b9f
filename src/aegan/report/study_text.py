"""The study's section of the report and its lines in the Findings (report/study.py computes the figures)."""

from __future__ import annotations

import math
from pathlib import Path

from aegan.report.render import Document, Figure, Heading, Paragraph, Table
from aegan.report.study import Study, setting_values
from aegan.report.text import fmt


def _values(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in values.items())


def _p(p: float) -> str:
    return "–" if not math.isfinite(p) else f"{p:.2g}"


def study_section(doc: Document, study: Study | None, params, fig: Path | None) -> None:
    if study is None:
        return
    st, base = params.study, params.report.baseline
    n_settings = 1 + len(st.settings)
    doc.add(Heading("The study: every strategy under the same hyperparameter budget"))
    doc.add(Paragraph(
        f"Every strategy gets the same {n_settings} settings, each trained under seeds "
        f"{', '.join(map(str, st.seeds))}: setting 0 is the strategy's own (train.optimizer and its section: the "
        f"runs of the main table), settings {', '.join(map(str, st.settings))} take lr "
        f"({st.lr.low:g}–{st.lr.high:g}{', log scale' if st.lr.log else ''}) and beta1 ({st.beta1.low:g}–{st.beta1.high:g}), "
        "the same for every strategy at that id, and the strategy's own knobs from `study.<strategy>`, from points of "
        "a scrambled Sobol sequence, which fill each range evenly (Lucic et al. 2018: the same search budget for "
        "every model). Each strategy's best setting (lowest mean FID over the search seeds) is trained "
        f"again under fresh seeds {', '.join(map(str, st.fresh_seeds))}, so its figure is not the best of its own "
        "noise."))  # fmt: skip
    ranges = []
    for s in params.strategies:
        space = getattr(st, s, {}) or {}
        for knob, r in space.items():
            r = r if isinstance(r, dict) else r.model_dump()
            ranges.append(f"`{s}` {knob} {r['low']:g}–{r['high']:g}{' (log)' if r.get('log') else ''}")
    doc.add(Paragraph("The strategies' own knob ranges: " + ("; ".join(ranges) or "none") + "."))
    rows = []
    for r in study.table.to_dict("records"):
        best = r["best_setting"]
        values = _values(setting_values(study, r["strategy"], best)) if best is not None else "none finished"
        fresh = fmt(r["best_fresh_fid_mean"], r["best_fresh_fid_std"], n=r["best_fresh_n"])
        if r["best_fresh_n"] < r["best_fresh_runs"]:
            fresh += f" ({r['best_fresh_n']} of {r['best_fresh_runs']} finished)"
        iqr = "n/a" if not math.isfinite(r["median_fid"]) else f"{r['median_fid']:.3g} ({r['iqr_low']:.3g}–{r['iqr_high']:.3g})"
        clean = ", ".join(map(str, r["settings_clean"])) or "none"
        rows.append([f"`{r['strategy']}`", f"{best if best is not None else '–'}: {values}", fmt(r["best_search_fid"]),
                     fresh, fmt(r["best_fresh_recall"]), iqr, f"{r['settings_finished']} of {r['settings']}",
                     f"{r['diverged_runs']} of {r['runs']}", f"{r['collapsed_runs']} of {r['runs']}", clean])  # fmt: skip
    doc.add(Table(
        ["strategy", "best setting", "its FID (search)", "FID, fresh seeds", "recall, fresh", "FID over settings: median (IQR)",
         "settings finished", "runs diverged", "runs collapsed", "settings with no failure"], rows,
        note=("FID (search): the best setting's mean over the search seeds, biased low by the selection; FID, fresh "
              "seeds: the same setting trained again (mean ± std over fresh seeds), the figure to compare. FID over "
              "settings: the per-setting mean FID (every seed finished), its median and inter-quartile range. "
              f"Collapsed: recall < {params.report.collapse_recall_ratio:g} x precision.")))  # fmt: skip
    rows = []
    spreads = {t.strategy: t for t in study.spreads}
    for c in [c for c in study.comparisons if c.metric == "fid"]:
        t = spreads.get(c.strategy)
        rows.append([f"`{c.strategy}`", fmt(math.exp(c.delta)), _p(c.p_adjusted), c.verdict,
                     _p(t.p_adjusted) if t else "–", t.verdict if t else "–"])  # fmt: skip
    if rows:
        doc.add(Table(["strategy", f"FID ratio to `{base}` (fresh seeds)", "Holm p", "better?",
                       "Holm p (spread)", "spread over settings"], rows,
                      note=("Best settings on fresh seeds: Welch t on log FID (the ratio of geometric means), Holm "
                            "across strategies, as the main comparison. "
                            "Spread: the F test of the variance of the per-setting mean log FID against the baseline's: how much the "
                            "result depends on the setting.")))  # fmt: skip
    if fig is not None:
        doc.add(Figure(fig, f"figures/{fig.name}", "Per-setting mean FID of every strategy (box: median and IQR; "
                                                   "points: settings; lower is better)"))


def study_findings(study: Study | None, params) -> list[str]:
    """The Findings' sentences from the study: better at the best setting, sensitivity, collapse per strategy."""
    if study is None:
        return []
    base, alpha = params.report.baseline, 1.0 - params.report.confidence
    n = 1 + len(params.study.settings)
    out = []
    better = [c for c in study.comparisons if c.metric == "fid"]
    wins = [c.strategy for c in better if math.isfinite(c.p_adjusted) and c.p_adjusted < alpha and c.delta < 0]
    losses = [c.strategy for c in better if math.isfinite(c.p_adjusted) and c.p_adjusted < alpha and c.delta > 0]
    out.append(f"Study ({n} settings per strategy, best re-trained on {len(params.study.fresh_seeds)} fresh seeds): "
               f"better than `{base}` at its best setting: {', '.join(f'`{s}`' for s in wins) or 'none'}; worse: "
               f"{', '.join(f'`{s}`' for s in losses) or 'none'}; the rest show no clear difference at this n.")  # fmt: skip
    sens = [t for t in study.spreads if math.isfinite(t.p_adjusted) and t.p_adjusted < alpha]
    if sens:
        out.append("Spread over settings against `" + base + "`: " + "; ".join(f"`{t.strategy}` {t.verdict}" for t in sens) + ".")
    else:
        out.append(f"No strategy's FID depends on the setting more or less than `{base}`'s at this number of settings "
                   "(F test of the variance of log FID over settings, Holm).")  # fmt: skip
    clean = [r["strategy"] for r in study.table.to_dict("records") if r["diverged_runs"] + r["collapsed_runs"] == 0]
    if clean:
        out.append(f"No study run of {', '.join(f'`{s}`' for s in clean)} diverged or collapsed.")
    for r in study.table.to_dict("records"):
        failed = r["diverged_runs"] + r["collapsed_runs"]
        if failed == 0:
            continue
        clean = r["settings_clean"]
        where = (f"setting {clean[0]} avoids it on every seed" if len(clean) == 1 else
                 f"settings {', '.join(map(str, clean))} avoid it on every seed" if clean
                 else "no setting of the study avoids it")  # fmt: skip
        fresh = study.best_runs[study.best_runs["strategy"] == r["strategy"]]
        again = ""
        if len(fresh) and r["best_setting"] is not None:
            lost = int((fresh["diverged"] | fresh["collapsed"]).sum())
            again = (f"; its best setting ({r['best_setting']}), trained again on fresh seeds, "
                     f"{'failed in ' + str(lost) if lost else 'failed in none'} of {len(fresh)} runs")  # fmt: skip
        out.append(f"`{r['strategy']}` diverged in {r['diverged_runs']} and collapsed in {r['collapsed_runs']} of "
                   f"{r['runs']} study runs: {where}{again}.")  # fmt: skip
    return out


def study_figure(study: Study | None, out: Path) -> Path | None:
    """Box plot of the per-setting mean FID per strategy, every setting a point."""
    if study is None or study.settings["fid"].notna().sum() == 0:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = list(study.table["strategy"])
    data = [study.settings.loc[study.settings["strategy"] == s, "fid"].dropna().to_numpy() for s in strategies]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(strategies)), 3.6))
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(strategies) + 1), strategies, rotation=20)
    for i, d in enumerate(data, start=1):
        ax.scatter([i] * len(d), d, s=14, alpha=0.7, zorder=3)
    ax.set_yscale("log")
    ax.set_ylabel("mean FID of a setting (log)")
    ax.set_title("FID over the study's settings")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
