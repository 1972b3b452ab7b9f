"""`report`: turn every (strategy, seed) into the answer: tables, figures, a stability analysis.

Writes reports/report.md, a self-contained reports/report.html, PNG figures
under reports/figures/, reports/summary.json (nested per strategy, for
`dvc metrics show/diff`) and reports/curves/*.csv (for `dvc plots show`), and
logs them all to an MLflow run.
"""

from __future__ import annotations

import json

from aegan import paths
from aegan.report.tables import aggregate, collect_runs, read_json  # noqa: F401  (used by tests and callers)


def real_grid():
    """The held-out images grid the reference stage wrote; None when it is missing."""
    import numpy as np
    from PIL import Image

    if not paths.HELDOUT_GRID_FILE.is_file():
        return None
    with Image.open(paths.HELDOUT_GRID_FILE) as im:
        return np.asarray(im.convert("RGB"))


def log_final_metrics(runs) -> None:
    """Each (strategy, seed) MLflow run gets its final scores (evaluate stays free of MLflow: see stages/evaluate.py)."""
    import math
    import sys

    from aegan.tracking import Run

    for r in runs.itertuples():
        run_id = getattr(r, "mlflow_run_id", None)
        if not isinstance(run_id, str):
            continue
        try:
            run = Run.resume(run_id)
        except Exception as err:  # e.g. mlflow.db deleted since training: the report itself is still right
            print(f"MLflow run {run_id} of {r.strategy}-{r.seed} not found ({type(err).__name__}): final metrics not "
                  "logged there", file=sys.stderr)  # fmt: skip
            continue
        finals = {f"final_{m}": v for m, v in (r.all_metrics or {}).items()}
        run.log_metrics({k: float(v) for k, v in finals.items() if v is not None and math.isfinite(v)})
        run.set_tags({"feature_extractor": str(r.feature_extractor)})
        run.end("FINISHED" if r.status == "finished" else "FAILED")


def write_curves(curves: dict) -> None:
    """Per-strategy mean small-sample FID over seeds on the budget axis, one CSV per strategy, for `dvc plots show`."""
    import pandas as pd

    from aegan.atomic import atomic_path

    paths.CURVES_DIR.mkdir(parents=True, exist_ok=True)
    for s, curve in curves.items():
        curve = curve.rename(columns={"mean": "fid_small", "std": "fid_small_std"})
        with atomic_path(paths.CURVES_DIR / f"{s}.csv", suffix=".csv") as tmp:
            pd.DataFrame(curve, columns=["budget", "step", "fid_small", "fid_small_std"]).to_csv(tmp, index=False)


def make_figures(ctx: dict) -> dict:
    import numpy as np

    from aegan.report import figures as F
    from aegan.report.budget import charged_steps
    from aegan.report.compose import class_shares

    strategies, seeds, runs, histories = ctx["params"].strategies, ctx["params"].seeds, ctx["runs"], ctx["histories"]
    floor = ctx["reference"]["real_vs_real"].get("fid")
    out = paths.FIGURES_DIR
    ae_steps = max((charged_steps(runs, s) for s in strategies), default=0)
    figs = {
        "fid_curves": F.fid_curves(ctx["curves"], floor, ae_steps, out / "fid_curves.png"),
        "losses": F.losses(histories, strategies, seeds, out / "losses.png"),
        "final_fid": F.final_fid(runs, strategies, floor, out / "final_fid.png"),
        "samples": F.sample_grids(real_grid(),
                                  {(s, seed): paths.run_dir(s, seed) / "samples.png" for s in strategies for seed in seeds},
                                  strategies, seeds, out / "samples.png"),  # fmt: skip
    }
    ref_counts = ctx["reference"].get("heldout_class_counts")
    shares = class_shares(runs, strategies)
    if ref_counts and shares:
        ref = np.asarray(ref_counts, float)
        figs["class_coverage"] = F.class_coverage(shares, ref / ref.sum(), out / "class_coverage.png")
    began = F.began(histories, strategies, seeds, out / "began.png")
    if began is not None:
        figs["began"] = began
    return figs


def parameter_differences(params) -> list[tuple]:
    """Every parameter that differs from its default: the stage sections from params.yaml, each strategy's
    from what its runs recorded (run.json), so the report needs no strategy code."""
    from aegan.params import differences_from_defaults, flatten

    diffs = differences_from_defaults(params)
    for s in params.strategies:
        if not isinstance(getattr(params, s, None), dict):
            continue  # validated with params.yaml: already compared
        infos = [paths.run_dir(s, seed) / "run.json" for seed in params.seeds]
        info = next((json.loads(p.read_text()) for p in infos if p.is_file()), {})
        ran, defaults = flatten(info.get("strategy_params") or {}, s), flatten(info.get("strategy_defaults") or {}, s)
        diffs += [(k, ran.get(k), defaults.get(k)) for k in sorted(set(ran) | set(defaults)) if ran.get(k) != defaults.get(k)]
    return sorted(diffs, key=lambda d: d[0])


def run_report(params) -> dict:
    import math

    from aegan import wall_seconds
    from aegan.atomic import write_json, write_text
    from aegan.report import tables as T
    from aegan.report.budget import budget_curve, plateau, rankings
    from aegan.report.comparison import compare_with_baseline
    from aegan.report.compose import build_document, commit_line, stage_seconds
    from aegan.report.render import to_html, to_markdown
    from aegan.tracking import Run

    strategies, seeds, rp = params.strategies, params.seeds, params.report
    runs = T.collect_runs(strategies, seeds)
    reference = read_json(paths.REFERENCE_FILE)
    card, scorer = read_json(paths.DATA_CARD_FILE), read_json(paths.SCORER_INFO_FILE)
    ae = {seed: read_json(paths.ae_info_file(seed)) for seed in seeds}  # one AE per training seed
    histories = T.collect_histories(strategies, seeds)
    table = T.aggregate(runs, {seed: info["train_seconds"] for seed, info in ae.items()})
    comparisons = compare_with_baseline(runs, rp.baseline, rp.confidence) if rp.baseline in strategies else []
    stab = T.stability(runs, histories, reference, rp)
    curves = {s: budget_curve(histories, runs, s, seeds, "fid_small") for s in strategies}
    ctx = {
        "params": params, "runs": runs, "histories": histories, "table": table, "comparisons": comparisons,
        "stability": stab, "reference": reference, "card": card, "scorer": scorer, "ae": ae, "curves": curves,
        "plateau": plateau(curves.get(rp.baseline, curves[strategies[0]]), rp.plateau_tolerance),
        "rankings": rankings(histories, runs, strategies, seeds),
        "differences": parameter_differences(params), "commit": commit_line(),
    }  # fmt: skip
    # stale figures of strategies no longer run must not linger next to the new ones
    for old in paths.FIGURES_DIR.glob("*.png") if paths.FIGURES_DIR.is_dir() else []:
        old.unlink()
    figs = make_figures(ctx)
    write_curves(curves)
    summary = T.summary_json(table, comparisons, stab, reference, rp.baseline)
    total, known, expected = stage_seconds(card, scorer, ae, reference, runs)
    ctx["wall"] = (total + wall_seconds(), known + 1, expected + 1)  # this stage too, up to now
    doc = build_document(ctx, figs)
    write_text(paths.REPORT_FILE, to_markdown(doc))
    write_text(paths.REPORT_HTML_FILE, to_html(doc))
    write_json(paths.SUMMARY_FILE, summary)

    run = Run.start("report", {"stage": "report", "baseline": rp.baseline})
    run.log_metrics({f"{s}.fid_mean": v for s, v in zip(table["strategy"], table["fid_mean"]) if math.isfinite(v)})
    for path in (paths.REPORT_FILE, paths.REPORT_HTML_FILE, paths.SUMMARY_FILE):
        run.log_artifact(path)
    for path in figs.values():
        run.log_artifact(path, "figures")
    run.end()
    log_final_metrics(runs)
    return summary
