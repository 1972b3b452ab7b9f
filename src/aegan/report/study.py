"""The study (params.yaml `study`, docs/study.md): every strategy under the same hyperparameter budget.

Read from reports/eval/study/<strategy>/s<k>-<seed>.json (each setting under
`study.seeds`) and reports/eval/study-best/<strategy>-<seed>.json (each
strategy's best setting trained again under `study.fresh_seeds`). Per
strategy: FID at the best setting on the fresh seeds (mean ± std; tested
against the baseline's best with Welch and Holm, comparison.py), the
distribution of the per-setting mean FID (median, IQR: the sensitivity to
the setting), its spread against the baseline's (F test on log FID, Holm), and
the share of runs that diverge or collapse (recall < report.collapse_recall_ratio
x precision, the main report's sign of collapse).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aegan import paths
from aegan.errors import UserError
from aegan.params import flatten
from aegan.provenance import why_stale
from aegan.report.claims import Spread, spread_tests
from aegan.report.comparison import Comparison, compare_with_baseline
from aegan.report.tables import collapsed, read_json

SETTING_PREFIX = "setting."  # run.json keys of the searched values (stages/study_train.py)


@dataclass(frozen=True, eq=False)
class Study:
    runs: pd.DataFrame  # one row per (strategy, setting, seed): status, fid, recall, precision, collapsed, values
    settings: pd.DataFrame  # one row per (strategy, setting): mean FID over its seeds (NaN unless all finished), failed
    best_runs: pd.DataFrame  # one row per (strategy, fresh seed): the best setting trained again
    table: pd.DataFrame  # one row per strategy: the study's main table
    comparisons: list[Comparison]  # the best setting on fresh seeds against the baseline's, FID and KID
    spreads: list[Spread]  # the spread of the per-setting mean FID against the baseline's


def _row(evaluation: dict, strategy: str, seed: int, collapse_ratio: float) -> dict:
    m = evaluation.get("metrics") or {}
    row = {"strategy": strategy, "seed": seed, "status": evaluation.get("status"),
           "setting": evaluation.get("study_setting"), "fid": m.get("fid"), "kid_mean": m.get("kid_mean"),
           "recall": m.get("recall"), "precision": m.get("precision")}  # fmt: skip
    row |= {k.removeprefix(SETTING_PREFIX): v for k, v in evaluation.items() if k.startswith(SETTING_PREFIX)}
    finished = row["status"] == "finished" and row["recall"] is not None and row["precision"] is not None
    row["collapsed"] = finished and collapsed(row["precision"], row["recall"], collapse_ratio)
    row["diverged"] = row["status"] == "diverged"
    return row


def check_current(evaluation: dict, path, current: dict, strategy: str, seed: int, run_dir) -> None:
    why = why_stale(evaluation, current, strategy, seed, run_dir)
    if why:
        raise UserError(f"{path} is stale: {why}; the report mixes no stale result in: re-run the study "
                        "(`aegan run` or `dvc repro`) and fix what stops those stages")  # fmt: skip


def read_study(params) -> Study | None:
    """The study's results, or None when params.yaml runs no study (study.settings empty)."""
    st, rp = params.study, params.report
    if not st.settings:
        return None
    current = flatten(params.model_dump(mode="json"))
    rows, best_rows = [], []
    for s in params.strategies:
        for k in [0, *st.settings]:  # 0: the strategy's own, the pipeline's own runs
            for seed in st.seeds:
                path = paths.study_eval_file(s, k, seed)
                evaluation = read_json(path)
                check_current(evaluation, path, current, s, seed, paths.study_run_dir(s, k, seed))
                rows.append(_row(evaluation, s, seed, rp.collapse_recall_ratio) | {"setting": k})
        for seed in st.fresh_seeds:
            path = paths.study_best_eval_file(s, seed)
            evaluation = read_json(path)
            check_current(evaluation, path, current, s, seed, paths.study_best_dir(s, seed))
            best_rows.append(_row(evaluation, s, seed, rp.collapse_recall_ratio))
    runs = pd.DataFrame(rows)
    for col in ("fid", "kid_mean", "recall", "precision"):
        runs[col] = pd.to_numeric(runs[col], errors="coerce")
    best_runs = pd.DataFrame(best_rows)
    for col in ("fid", "kid_mean", "recall", "precision"):
        best_runs[col] = pd.to_numeric(best_runs[col], errors="coerce")
    settings = per_setting(runs)
    baseline = rp.baseline
    has_base = baseline in params.strategies
    comparisons = compare_with_baseline(best_runs, baseline, rp.confidence) if has_base else []
    spreads = []
    if has_base:
        finished = settings.assign(status=np.where(settings["fid"].notna(), "finished", "failed"))
        spreads = spread_tests(finished, baseline, 1.0 - rp.confidence, unit="settings")
    return Study(runs, settings, best_runs, summary_table(runs, settings, best_runs), comparisons, spreads)


def per_setting(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (strategy, setting): mean FID over its seeds (NaN unless every seed finished), the searched
    values, and whether any of its runs diverged or collapsed."""
    values = [c for c in runs.columns if c not in ("strategy", "seed", "status", "setting", "fid", "kid_mean", "recall",
                                                    "precision", "collapsed", "diverged")]  # fmt: skip
    out = []
    for (s, k), g in runs.groupby(["strategy", "setting"], sort=False):
        finished = (g["status"] == "finished").all() and g["fid"].notna().all()
        row = {"strategy": s, "setting": int(k), "fid": float(g["fid"].mean()) if finished else math.nan,
               "fid_std": float(g["fid"].std(ddof=1)) if finished and len(g) > 1 else math.nan,
               "recall": float(g["recall"].mean()), "n": len(g),
               "diverged": int(g["diverged"].sum()), "collapsed": int(g["collapsed"].sum())}  # fmt: skip
        row["failed"] = bool(row["diverged"] or row["collapsed"])
        row |= {v: g[v].iloc[0] for v in values if g[v].notna().any()}
        out.append(row)
    return pd.DataFrame(out)


def summary_table(runs: pd.DataFrame, settings: pd.DataFrame, best_runs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: the best setting and its figures on fresh seeds, the distribution over settings, failures."""
    out = []
    for s, g in settings.groupby("strategy", sort=False):
        r, b = runs[runs["strategy"] == s], best_runs[best_runs["strategy"] == s]
        finite = g["fid"].dropna()
        fresh = b.loc[b["status"] == "finished", "fid"].dropna()
        best = int(g.loc[g["fid"].idxmin(), "setting"]) if len(finite) else None
        out.append({
            "strategy": s, "settings": len(g), "best_setting": best,
            "best_search_fid": float(finite.min()) if len(finite) else math.nan,
            "best_fresh_fid_mean": float(fresh.mean()) if len(fresh) else math.nan,
            "best_fresh_fid_std": float(fresh.std(ddof=1)) if len(fresh) > 1 else math.nan,
            "best_fresh_n": int(len(fresh)), "best_fresh_runs": int(len(b)),
            "best_fresh_recall": float(b["recall"].mean()) if b["recall"].notna().any() else math.nan,
            "median_fid": float(finite.median()) if len(finite) else math.nan,
            "iqr_low": float(finite.quantile(0.25)) if len(finite) else math.nan,
            "iqr_high": float(finite.quantile(0.75)) if len(finite) else math.nan,
            "settings_finished": int(len(finite)),
            "runs": int(len(r)), "diverged_runs": int(r["diverged"].sum()), "collapsed_runs": int(r["collapsed"].sum()),
            "settings_failed": int(g["failed"].sum()),
            "settings_clean": [int(k) for k in g.loc[~g["failed"] & g["fid"].notna(), "setting"]],
        })  # fmt: skip
    return pd.DataFrame(out)


def setting_values(study: Study, strategy: str, setting: int) -> dict[str, float]:
    """The searched values of one setting (lr, beta1 and the strategy's knobs)."""
    row = study.settings[(study.settings["strategy"] == strategy) & (study.settings["setting"] == setting)]
    skip = {"strategy", "setting", "fid", "fid_std", "recall", "n", "diverged", "collapsed", "failed"}
    return {k: float(v) for k, v in row.iloc[0].items() if k not in skip and isinstance(v, float) and math.isfinite(v)}


def summary_entries(study: Study | None, baseline: str) -> dict:
    """summary.json's "study": per strategy the table's figures, each setting's mean FID, the tests."""
    if study is None:
        return {}
    out: dict = {}
    for r in study.table.to_dict("records"):
        entry = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items() if k != "strategy"}
        g = study.settings[study.settings["strategy"] == r["strategy"]]
        entry["setting_fid"] = {str(int(k)): (None if not math.isfinite(v) else float(v)) for k, v in zip(g["setting"], g["fid"])}
        if r["best_setting"] is not None:
            entry["best_values"] = setting_values(study, r["strategy"], r["best_setting"])
        out[r["strategy"]] = entry
    for c in study.comparisons:
        if math.isfinite(c.p_value):
            out[c.strategy][f"best_{'log_' if c.log else ''}{c.metric}_minus_{baseline}"] = {
                "mean": c.delta, "ci_low": c.ci_low, "ci_high": c.ci_high, "p": c.p_value, "p_holm": c.p_adjusted,
                "detectable": c.detectable}  # fmt: skip
    for t in study.spreads:
        if math.isfinite(t.p_value):
            out[t.strategy][f"setting_spread_vs_{baseline}"] = {"p": t.p_value, "p_holm": t.p_adjusted}
    return {"study": json.loads(json.dumps(out, default=float))}
