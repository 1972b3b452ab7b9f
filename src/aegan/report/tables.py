"""The numbers of the report: per-run records, per-strategy tables, the baseline comparison, stability.

Everything here is plain pandas/scipy on the stage outputs (reports/eval/*.json,
models/runs/*/history.csv), so tests can fabricate those files with known
numbers and check every value. Means and stds are over training seeds
(docs/design.md, the protocol), never over evaluation resamples. A diverged run has no metrics:
it is counted, never averaged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from aegan import paths
from aegan.errors import UserError
from aegan.report.seeds import baseline_mean, seeds_needed
from aegan.report.seeds import summary_entries as seeds_summary

METRICS = ["fid", "kid_mean", "is_mean", "precision", "recall"]
LOWER_IS_BETTER = {"fid": True, "kid_mean": True, "is_mean": False, "precision": False, "recall": False}
COSTS = ["train_seconds", "images_per_second"]
MODE_MEASURES = ["modes_captured", "mode_kl"]  # stacked digits only (aegan.modes); NaN for other data
LOSSES = ["loss_g", "loss_d"]  # every strategy logs these two (base.Strategy contract)


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: not found: run the stage that writes it first (`dvc repro`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path}: not valid JSON: re-run the stage that writes it") from None


# ------------------------------------------------------------------ per run
NOT_COLUMNS = ("metrics", "params", "scored")  # metrics become columns of their own; provenance: aegan.provenance


def collect_runs(strategies: list[str], seeds: list[int]) -> pd.DataFrame:
    """One row per (strategy, seed) from reports/eval/: status, metrics, costs, class counts."""
    rows = []
    for s in strategies:
        for seed in seeds:
            r = read_json(paths.eval_file(s, seed))
            metrics = r.get("metrics") or {}
            row = {k: v for k, v in r.items() if k not in NOT_COLUMNS} | {m: metrics.get(m) for m in METRICS}
            row["all_metrics"] = metrics  # kid_std, is_std, f_score too: logged to MLflow as they are
            rows.append(row)
    runs = pd.DataFrame(rows)
    for optional in ("class_counts", "diverged_at", "wall_seconds", "train_wall_seconds", "mlflow_run_id", "mlflow_model_uri", "ae_steps_charged",
                     "budget", "num_samples", "num_reference", "seconds_at_eval",
                     "copying", "fid_train", *MODE_MEASURES):  # older outputs lack some; MODE_MEASURES: not stacked
        if optional not in runs:
            runs[optional] = None
    # fid_train: FID against a training subset (aegan.copying)
    for m in METRICS + COSTS + ["fid_train"] + MODE_MEASURES:
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


def mean(values: pd.Series) -> float:
    """Mean of the finite values; NaN when there is none."""
    return float(values[np.isfinite(values)].mean())


def std(values: pd.Series) -> float:
    """Sample std (ddof 1) of the finite values; NaN for fewer than two (one seed has no spread to estimate)."""
    v = values[np.isfinite(values)]
    return float(v.std(ddof=1)) if len(v) > 1 else math.nan


def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample std and n of the finite values (`mean`, `std`)."""
    v = pd.Series(values, dtype=float)
    return mean(v), std(v), int(np.isfinite(v).sum())


# ------------------------------------------------------------------ main table
def aggregate(runs: pd.DataFrame, ae_seconds: dict[int, float]) -> pd.DataFrame:
    """One row per strategy: mean/std/n of each metric and cost over the finished seeds; diverged runs counted.

    Costs: a strategy that uses the AE is charged the pretraining of its seed's AE, in generator-side updates
    (`ae_steps_charged`, part of its budget) and in wall seconds (`ae_seconds`: {seed: seconds}).
    Each group is reduced by `mean` and `std` (Series.mean and .std), not by groupby's built-in mean and std:
    those sum in another order (compensated, Welford) and can differ from them in the last bit.
    """
    strategy, finished = runs["strategy"], runs["status"] == "finished"
    by = runs.groupby(strategy, sort=False)
    table = pd.DataFrame({"n": finished.groupby(strategy, sort=False).sum(), "runs": by.size(),
                          "diverged": (runs["status"] == "diverged").groupby(strategy, sort=False).sum()})  # fmt: skip
    scores = runs[finished].groupby(strategy, sort=False)[METRICS + ["images_per_second"]].agg([mean, std])
    table = table.join(_flat(scores))  # NaN for a strategy with no finished seed
    # time and throughput are costs of every run, diverged ones included: they were paid for
    table = table.join(_flat(by[["train_seconds"]].agg([mean, std])))
    table["generator_parameters"] = by["generator_parameters"].first(skipna=False).astype(int)
    table["uses_ae"] = by["uses_ae"].first(skipna=False).astype(bool)
    charged = runs["seed"].astype(int).map(lambda seed: ae_seconds.get(seed, math.nan)).astype(float)
    table["ae_seconds_charged"] = charged.groupby(strategy, sort=False).agg(mean).where(table["uses_ae"], 0.0)
    table["total_seconds"] = table["train_seconds_mean"] + table["ae_seconds_charged"]
    # a diverged run stopped early: the budget is that of the finished ones (of all its runs where none finished)
    planned = finished | ~finished.groupby(strategy, sort=False).transform("any")
    budget = pd.DataFrame({c: pd.to_numeric(runs[c], errors="coerce") if c in runs else math.nan
                           for c in ("steps", "ae_steps_charged", "budget")}, index=runs.index)  # fmt: skip
    table = table.join(budget[planned].groupby(strategy, sort=False).agg(pd.Series.mean))
    return table.rename_axis("strategy").reset_index()


def _flat(stats: pd.DataFrame) -> pd.DataFrame:
    """Columns (metric, statistic) as `metric_statistic`: ("fid", "mean") -> "fid_mean"."""
    return stats.set_axis([f"{col}_{stat}" for col, stat in stats.columns], axis=1)


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


def class_shares(runs: pd.DataFrame, strategies: list[str]) -> dict[str, np.ndarray]:
    """Mean share of samples per class over a strategy's finished seeds (for the coverage figure)."""
    out = {}
    for s in strategies:
        counts = [np.asarray(c, float) for c in runs.loc[(runs["strategy"] == s) & (runs["status"] == "finished"),
                                                          "class_counts"] if isinstance(c, list) and sum(c) > 0]  # fmt: skip
        if counts:
            out[s] = np.mean([c / c.sum() for c in counts], axis=0)
    return out


# ------------------------------------------------------------------ stability
def collapsed(precision, recall, ratio: float) -> bool:
    """The report's sign of mode collapse, one criterion everywhere: recall < ratio x precision (both known)."""
    known = all(isinstance(v, (int, float)) and math.isfinite(v) for v in (precision, recall))
    return bool(known and recall < ratio * precision)


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
    spread, scale = float(v.std(ddof=1)), float(v.abs().mean())
    return spread, spread / scale if scale > 0 else math.nan


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
        for m in MODE_MEASURES:  # stacked digits: of the 1,000 known modes (aegan.modes); NaN for other data
            row[f"{m}_mean"], row[f"{m}_std"], _ = mean_std(ok.get(m, []))
        pr = ok[["precision", "recall"]].dropna()
        row["collapse_flags"] = sum(collapsed(p, r, rp.collapse_recall_ratio) for p, r in zip(pr["precision"], pr["recall"]))
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
            entry["stability"] |= mode_summary(st)
        entry["budget"] = {"steps": r["steps"], "ae_steps_charged": r["ae_steps_charged"], "total": r["budget"]}
        for metric in ("fid", "kid_mean"):
            c = by_cmp.get((s, metric))
            if c is not None:  # FID is compared as logs (comparison.LOG_SCALE): its difference is a log ratio
                entry[f"log_{metric}_minus_{baseline}" if c.log else f"{metric}_minus_{baseline}"] = {
                    "mean": c.delta, "ci_low": c.ci_low, "ci_high": c.ci_high, "p": c.p_value,
                    "p_holm": c.p_adjusted, "adj_ci_low": c.adj_low, "adj_ci_high": c.adj_high,
                    "detectable": c.detectable,
                }  # fmt: skip
        summary[s] = entry
    target, rows = seeds_needed(comparisons, baseline, baseline_mean(table, baseline))
    summary |= seeds_summary(target, rows)  # how many seeds a difference of 10% would need (seeds.py)
    summary["reference"] = {
        "real_vs_real": {m: reference["real_vs_real"].get(m) for m in METRICS},
        "untrained_generator": {m: reference["untrained_generator"].get(m) for m in METRICS},
    }
    if reference.get("heldout_modes"):  # stacked digits: real held-out images, the ceiling of the mode measures
        summary["reference"]["heldout_modes"] = reference["heldout_modes"]
    return summary


def mode_summary(stab_row) -> dict:
    """{modes_captured: {mean, std}, mode_kl: {mean, std}} where the runs counted modes (stacked digits), else {}."""
    if not all(np.isfinite(stab_row.get(f"{m}_mean", math.nan)) for m in MODE_MEASURES):
        return {}
    return {m: {"mean": stab_row[f"{m}_mean"], "std": stab_row[f"{m}_std"]} for m in MODE_MEASURES}
