"""The numbers of the report: per-run records, per-strategy tables, the baseline comparison, stability.

Everything here is plain pandas/scipy on the stage outputs (reports/eval/*.json,
models/runs/*/history.csv), so tests can fabricate those files with known
numbers and check every value. Means and stds are over training seeds
(DESIGN 3), never over evaluation resamples. A diverged run has no metrics:
it is counted, never averaged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aegan import paths
from aegan.errors import UserError

METRICS = ["fid", "kid_mean", "is_mean", "precision", "recall"]
LOWER_IS_BETTER = {"fid": True, "kid_mean": True, "is_mean": False, "precision": False, "recall": False}
COSTS = ["train_seconds", "images_per_second"]
LOSSES = ["loss_g", "loss_d"]  # every strategy logs these two (base.Strategy contract)


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: not found: run the stage that writes it first (`dvc repro`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path}: not valid JSON: re-run the stage that writes it") from None


# ------------------------------------------------------------------ per run
def collect_runs(strategies: list[str], seeds: list[int]) -> pd.DataFrame:
    """One row per (strategy, seed) from reports/eval/: status, metrics, costs, class counts."""
    rows = []
    for s in strategies:
        for seed in seeds:
            r = read_json(paths.eval_file(s, seed))
            metrics = r.get("metrics") or {}
            row = {k: v for k, v in r.items() if k != "metrics"} | {m: metrics.get(m) for m in METRICS}
            row["all_metrics"] = metrics  # kid_std, is_std, f_score too: logged to MLflow as they are
            rows.append(row)
    runs = pd.DataFrame(rows)
    for optional in ("class_counts", "diverged_at", "wall_seconds", "train_wall_seconds", "mlflow_run_id", "ae_steps_charged",
                     "budget", "num_samples", "num_reference"):  # older outputs lack some
        if optional not in runs:
            runs[optional] = None
    for m in METRICS + COSTS:
        runs[m] = pd.to_numeric(runs[m], errors="coerce")
    return runs


def read_history(strategy: str, seed: int) -> pd.DataFrame:
    """A run's logged losses and FID curve; non-finite values (a diverging run) become NaN."""
    path = paths.run_dir(strategy, seed) / "history.csv"
    if not path.is_file():
        return pd.DataFrame({"step": []})
    df = pd.read_csv(path)
    return df.replace([np.inf, -np.inf], np.nan)


def collect_histories(strategies: list[str], seeds: list[int]) -> dict[tuple[str, int], pd.DataFrame]:
    return {(s, seed): read_history(s, seed) for s in strategies for seed in seeds}


def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample std (ddof 1; NaN for a single value: no spread can be estimated) and n of the finite values."""
    v = pd.Series(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if n > 1 else math.nan, n


# ------------------------------------------------------------------ main table
def aggregate(runs: pd.DataFrame, ae_seconds: dict[int, float]) -> pd.DataFrame:
    """One row per strategy: mean/std/n of each metric and cost over the finished seeds; diverged runs counted.

    Costs: a strategy that uses the AE is charged the pretraining of its seed's AE, in generator-side updates
    (`ae_steps_charged`, part of its budget) and in wall seconds (`ae_seconds`: {seed: seconds}).
    """
    out = []
    for strategy, g in runs.groupby("strategy", sort=False):
        ok = g[g["status"] == "finished"]
        row: dict = {"strategy": strategy, "n": len(ok), "runs": len(g), "diverged": int((g["status"] == "diverged").sum())}
        for m in METRICS + ["images_per_second"]:
            row[f"{m}_mean"], row[f"{m}_std"], _ = mean_std(ok[m])
        # time and throughput are costs of every run, diverged ones included: they were paid for
        row["train_seconds_mean"], row["train_seconds_std"], _ = mean_std(g["train_seconds"])
        row["generator_parameters"] = int(g["generator_parameters"].iloc[0])
        row["uses_ae"] = bool(g["uses_ae"].iloc[0])
        charged = [ae_seconds.get(int(seed), math.nan) if row["uses_ae"] else 0.0 for seed in g["seed"]]
        row["ae_seconds_charged"] = mean_std(charged)[0] if row["uses_ae"] else 0.0
        row["total_seconds"] = row["train_seconds_mean"] + row["ae_seconds_charged"]
        planned = ok if len(ok) else g  # a diverged run stopped early: the budget is that of the finished ones
        for col in ("steps", "ae_steps_charged", "budget"):
            row[col] = float(pd.to_numeric(planned[col], errors="coerce").mean()) if col in g else math.nan
        out.append(row)
    return pd.DataFrame(out)


def best_strategies(table: pd.DataFrame) -> dict[str, set[str]]:
    """Per metric, the strategies whose mean is the best (ties share the mark); none when no finite mean."""
    best: dict[str, set[str]] = {}
    for m in METRICS:
        col = table[f"{m}_mean"]
        finite = col[np.isfinite(col)]
        if finite.empty:
            best[m] = set()
            continue
        target = finite.min() if LOWER_IS_BETTER[m] else finite.max()
        best[m] = set(table.loc[col == target, "strategy"])
    return best


# ------------------------------------------------------------------ stability
def tail(history: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """The rows logged in the last `fraction` of the run's steps."""
    if history.empty or "step" not in history:
        return history
    last = history["step"].max()
    return history[history["step"] > last * (1.0 - fraction)]


def loss_oscillation(history: pd.DataFrame, column: str, fraction: float) -> tuple[float, float]:
    """Std of a loss over the end of training, absolute and relative to its mean magnitude."""
    if column not in history:
        return math.nan, math.nan
    v = tail(history, fraction)[column].dropna()
    if len(v) < 2:
        return math.nan, math.nan
    std, scale = float(v.std(ddof=1)), float(v.abs().mean())
    return std, std / scale if scale > 0 else math.nan


def coverage(counts, reference_counts, min_share: float) -> tuple[int, float]:
    """Classes covered by the samples and KL(reference || samples) of the class distributions.

    A class is covered when its share of the samples is at least `min_share` times its share of the
    reference (held-out) images. The KL grows when the samples miss classes the reference has
    (a smoothed estimate: one pseudo-count per class so a missing class gives a large finite value).
    """
    from scipy.stats import entropy

    c = np.asarray(counts, dtype=float)
    r = np.asarray(reference_counts, dtype=float)
    p_s, p_r = c / c.sum(), r / r.sum()
    covered = int(((p_s >= min_share * p_r) & (p_r > 0)).sum())
    return covered, float(entropy(p_r, c + 1))


def stability(runs: pd.DataFrame, histories: dict, reference: dict, rp) -> pd.DataFrame:
    """Per strategy: FID spread over seeds, loss oscillation at the end, divergences, mode-collapse signs, BEGAN's M.

    Divergences are counted over all runs; every other measure is over the finished ones (as the main table).
    """
    ref_counts = reference.get("heldout_class_counts")
    out = []
    for strategy, g in runs.groupby("strategy", sort=False):
        ok = g[g["status"] == "finished"]
        fid = ok["fid"].dropna()
        row: dict = {"strategy": strategy, "n": len(ok), "runs": len(g)}
        row["fid_std"] = float(fid.std(ddof=1)) if len(fid) > 1 else math.nan
        row["fid_min"], row["fid_max"] = (float(fid.min()), float(fid.max())) if len(fid) else (math.nan, math.nan)
        diverged = g[g["status"] == "diverged"]
        row["diverged"] = len(diverged)
        row["diverged_at"] = [int(s) for s in diverged["diverged_at"].dropna()] if "diverged_at" in g else []
        for loss in LOSSES:
            osc = [loss_oscillation(histories.get((strategy, int(seed)), pd.DataFrame()), loss, rp.tail_fraction)
                   for seed in ok["seed"]]  # fmt: skip
            row[f"{loss}_tail_std"] = mean_std([o[0] for o in osc])[0]
            row[f"{loss}_tail_rel"] = mean_std([o[1] for o in osc])[0]
        covered, kls = [], []
        if ref_counts is not None and "class_counts" in ok:
            for counts in ok["class_counts"]:
                if isinstance(counts, list) and sum(counts) > 0:
                    c, kl = coverage(counts, ref_counts, rp.coverage_min_share)
                    covered.append(c)
                    kls.append(kl)
        row["classes"] = len(ref_counts) if ref_counts is not None else 0
        row["classes_covered_mean"], row["classes_covered_std"], _ = mean_std(covered)
        row["class_kl_mean"], _, _ = mean_std(kls)
        pr = ok[["precision", "recall"]].dropna()
        row["collapse_flags"] = int((pr["recall"] < rp.collapse_recall_ratio * pr["precision"]).sum())
        for column, key in (("convergence_M", "began_m"), ("k_t", "began_k")):  # BEGAN's M and k_t, first -> last
            first, last = [], []
            for seed in ok["seed"]:
                h = histories.get((strategy, int(seed)), pd.DataFrame())
                if column in h and h[column].notna().any():
                    v = h[column].dropna()
                    first.append(float(v.iloc[0]))
                    last.append(float(v.iloc[-1]))
            row[f"{key}_first"], row[f"{key}_last"] = mean_std(first)[0], mean_std(last)[0]
        # BEGAN's equilibrium: E[L(G(z))] / E[L(x)] over the end of training, which k_t steers towards gamma
        ratios = []
        for seed in ok["seed"]:
            end = tail(histories.get((strategy, int(seed)), pd.DataFrame()), rp.tail_fraction)
            if {"energy_real", "energy_fake"} <= set(end) and end["energy_real"].notna().any():
                ratios.append(float(end["energy_fake"].mean() / end["energy_real"].mean()))
        row["began_energy_ratio"] = mean_std(ratios)[0]
        out.append(row)
    return pd.DataFrame(out)


def reference_coverage(reference: dict, min_share: float) -> dict[str, tuple[int, float] | None]:
    """Class coverage of the floor (real images) and of the untrained generator, for scale."""
    ref_counts = reference.get("heldout_class_counts")
    out: dict[str, tuple[int, float] | None] = {}
    for key in ("real_vs_real", "untrained_generator"):
        counts = (reference.get("class_counts") or {}).get(key)
        out[key] = coverage(counts, ref_counts, min_share) if ref_counts is not None and counts else None
    return out


# ------------------------------------------------------------------ curves (mean over seeds)
def mean_curve(histories: dict, strategy: str, seeds: list[int], column: str) -> pd.DataFrame:
    """step, mean, std (over seeds) of one logged column; empty when no seed logged it."""
    frames = [h[["step", column]].dropna() for seed in seeds
              if column in (h := histories.get((strategy, seed), pd.DataFrame()))]  # fmt: skip
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame({"step": [], "mean": [], "std": []})
    curve = pd.concat(frames).groupby("step")[column].agg(["mean", "std"]).reset_index()
    return curve


# ------------------------------------------------------------------ summary.json
def summary_json(table: pd.DataFrame, comparisons: list, stab: pd.DataFrame, reference: dict, baseline: str) -> dict:
    """Nested per strategy for `dvc metrics show/diff`: {strategy: {metric: {mean, std, n}}, ...}."""
    by_cmp = {(c.strategy, c.metric): c for c in comparisons}
    by_stab = {r["strategy"]: r for _, r in stab.iterrows()}
    summary: dict = {}
    for _, r in table.iterrows():
        s = r["strategy"]
        entry = {m: {"mean": r[f"{m}_mean"], "std": r[f"{m}_std"], "n": int(r["n"])} for m in METRICS}
        entry |= {"diverged": int(r["diverged"]), "train_seconds": r["train_seconds_mean"],
                  "total_seconds": r["total_seconds"]}  # fmt: skip
        st = by_stab.get(s)
        if st is not None:
            entry["stability"] = {
                "fid_std": st["fid_std"], "loss_g_tail_std": st["loss_g_tail_std"],
                "loss_d_tail_std": st["loss_d_tail_std"], "classes_covered": st["classes_covered_mean"],
                "collapse_flags": int(st["collapse_flags"]),
            }  # fmt: skip
        entry["budget"] = {"steps": r["steps"], "ae_steps_charged": r["ae_steps_charged"], "total": r["budget"]}
        for metric in ("fid", "kid_mean"):
            c = by_cmp.get((s, metric))
            if c is not None:
                entry[f"{metric}_minus_{baseline}"] = {
                    "mean": c.delta, "ci_low": c.ci_low, "ci_high": c.ci_high, "p": c.p_value,
                    "p_holm": c.p_adjusted, "adj_ci_low": c.adj_low, "adj_ci_high": c.adj_high,
                    "detectable": c.detectable,
                }  # fmt: skip
        summary[s] = entry
    summary["reference"] = {
        "real_vs_real": {m: reference["real_vs_real"].get(m) for m in METRICS},
        "untrained_generator": {m: reference["untrained_generator"].get(m) for m in METRICS},
    }
    return summary
