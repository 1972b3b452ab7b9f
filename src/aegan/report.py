"""`report`: aggregate every (strategy, seed) into reports/summary.json and reports/report.md.

summary.json is nested per strategy ({strategy: {metric: {mean, std, n}}}) for
`dvc metrics show/diff`; the FID curves go to reports/curves/ for `dvc plots`.
Means and stds are over training seeds (DESIGN 3), never over eval resamples.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from aegan import paths
from aegan.atomic import atomic_path, write_json, write_text
from aegan.errors import UserError

METRICS = ["fid", "kid_mean", "is_mean", "precision", "recall"]
LOWER_IS_BETTER = {"fid": True, "kid_mean": True, "is_mean": False, "precision": False, "recall": False}
COSTS = ["train_seconds", "images_per_second"]


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: not found: run the stage that writes it first (`dvc repro`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path}: not valid JSON: re-run the stage that writes it") from None


def collect_runs(strategies: list[str], seeds: list[int]) -> pd.DataFrame:
    rows = []
    for s in strategies:
        for seed in seeds:
            r = _read_json(paths.eval_file(s, seed))
            rows.append({k: v for k, v in r.items() if k != "metrics"} | {m: r["metrics"].get(m) for m in METRICS})
    return pd.DataFrame(rows)


def aggregate(runs: pd.DataFrame, ae_seconds: float) -> pd.DataFrame:
    """One row per strategy: mean/std/n over the seeds that finished; diverged runs counted."""
    out = []
    for strategy, g in runs.groupby("strategy", sort=False):
        ok = g[g["status"] == "finished"]
        row: dict = {"strategy": strategy, "n": len(ok), "diverged": int((g["status"] == "diverged").sum())}
        for m in METRICS + COSTS:
            vals = pd.to_numeric(ok[m], errors="coerce").dropna()
            row[f"{m}_mean"] = float(vals.mean()) if len(vals) else math.nan
            row[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else (0.0 if len(vals) == 1 else math.nan)
        row["generator_parameters"] = int(g["generator_parameters"].iloc[0])
        row["ae_seconds_charged"] = ae_seconds if bool(g["uses_ae"].iloc[0]) else 0.0
        row["total_seconds"] = row["train_seconds_mean"] + row["ae_seconds_charged"]
        out.append(row)
    return pd.DataFrame(out)


def summary_json(table: pd.DataFrame, reference: dict) -> dict:
    summary: dict = {}
    for _, r in table.iterrows():
        summary[r["strategy"]] = {
            m: {"mean": r[f"{m}_mean"], "std": r[f"{m}_std"], "n": int(r["n"])} for m in METRICS
        } | {"diverged": int(r["diverged"]), "train_seconds": r["train_seconds_mean"]}
    summary["reference"] = {
        "real_vs_real": {m: reference["real_vs_real"].get(m) for m in METRICS},
        "untrained_generator": {m: reference["untrained_generator"].get(m) for m in METRICS},
    }
    return summary


def fmt(mean: float, std: float | None = None, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}g}"
    return f"{mean:.{digits}g} ± {std:.2g}"


def data_labels(card: dict) -> str:
    if not card.get("labels"):
        return "no labels (scorer: rotation pretext task)"
    counts = card.get("class_counts", {})
    return f"{len(counts)} classes ({', '.join(f'{k}: {v}' for k, v in counts.items())})"


def markdown(table: pd.DataFrame, reference: dict, card: dict, scorer: dict, ae: dict, title: str, n_seeds: int) -> str:
    fe = reference.get("feature_extractor", "")
    fid_name = "FID (scorer features)" if "scorer" in fe else "FID (Inception)"
    head = ["strategy", "n", fid_name, "KID", "IS", "precision", "recall", "train s", "img/s", "G params", "AE s charged"]
    lines = [
        f"# {title}",
        "",
        f"Data: `{card['source']}`, {card['num_train']} train / {card['num_heldout']} held-out images of shape "
        f"{tuple(card['shape'])}, {data_labels(card)}, content sha256 `{card['sha256'][:12]}`.",
        "",
        f"Scorer: {scorer['task']} task, held-out accuracy {scorer['heldout_accuracy']:.3f} (`{fe}`). "
        f"AE pretraining: {ae['train_seconds']:.1f} s, held-out MSE {ae['heldout_mse']:.4f}.",
        "",
        f"Mean ± std over training seeds (n of {n_seeds}); {reference['num_samples']} generated samples against "
        f"{reference['num_samples']} held-out images. Scorer-feature numbers are not comparable with published "
        "Inception FID.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for _, r in table.iterrows():
        cells = [r["strategy"], f"{int(r['n'])}" + (f" ({int(r['diverged'])} diverged)" if r["diverged"] else "")]
        cells += [fmt(r[f"{m}_mean"], r[f"{m}_std"]) for m in METRICS]
        cells += [f"{r['train_seconds_mean']:.1f}", f"{r['images_per_second_mean']:.0f}", f"{r['generator_parameters']:,}",
                  f"{r['ae_seconds_charged']:.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    for name, key in (("real vs real (floor)", "real_vs_real"), ("untrained generator", "untrained_generator")):
        ref = reference[key]
        cells = [f"*{name}*", "", *[fmt(ref.get(m)) for m in METRICS], "", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_curves(strategies: list[str], seeds: list[int]) -> None:
    """Per-strategy mean small-sample FID over seeds, one CSV per strategy, for `dvc plots`."""
    paths.CURVES_DIR.mkdir(parents=True, exist_ok=True)
    for s in strategies:
        frames = []
        for seed in seeds:
            h = paths.run_dir(s, seed) / "history.csv"
            if h.is_file():
                df = pd.read_csv(h)
                if "fid_small" in df:
                    frames.append(df[["step", "fid_small"]].dropna().assign(seed=seed))
        curve = (
            pd.concat(frames).groupby("step", as_index=False)["fid_small"].agg(["mean", "std"]).rename(
                columns={"mean": "fid_small", "std": "fid_small_std"})
            if frames else pd.DataFrame({"step": [], "fid_small": [], "fid_small_std": []})
        )  # fmt: skip
        with atomic_path(paths.CURVES_DIR / f"{s}.csv", suffix=".csv") as tmp:
            curve.to_csv(tmp, index=False)


def run_report(params) -> dict:
    from aegan.tracking import Run

    strategies, seeds = params.strategies, params.seeds
    runs = collect_runs(strategies, seeds)
    reference = _read_json(paths.REFERENCE_FILE)
    card, scorer, ae = _read_json(paths.DATA_CARD_FILE), _read_json(paths.SCORER_INFO_FILE), _read_json(paths.AE_INFO_FILE)
    table = aggregate(runs, ae["train_seconds"])
    summary = summary_json(table, reference)
    write_curves(strategies, seeds)
    write_text(paths.REPORT_FILE, markdown(table, reference, card, scorer, ae, params.report.title, len(seeds)))
    write_json(paths.SUMMARY_FILE, summary)
    run = Run.start("report", {"stage": "report"})
    run.log_artifact(paths.REPORT_FILE)
    run.log_artifact(paths.SUMMARY_FILE)
    run.end()
    return summary
