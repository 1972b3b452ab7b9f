"""Stage `report`: turn every (strategy, seed) into the answer: tables, figures, a stability analysis.

Writes reports/report.md, a self-contained reports/report.html, PNG figures
under reports/figures/, reports/summary.json (every figure, nested per
strategy), reports/metrics.json (the headline figures per strategy: DVC's
metrics, narrow enough for `dvc exp show`) and reports/fid_curves.csv (every
strategy's curve in one file: one `dvc plots show` plot), and
logs them all to an MLflow run, with the comparison as a table artifact (aggregate
metrics would be charts next to every run's own). It adds each (strategy, seed)
MLflow run's final scores to that finished run, leaving its status and duration
those of training (evaluate stays free of MLflow: see stages/evaluate.py), and
registers the winning strategy's best-seed generator in the registered model
`aegan-generator` (a new version only for bytes not registered yet), alias
`candidate`, its description saying whether the comparison decided it
(report/winner.py); `aegan promote` moves `best`. The building blocks are in
aegan.report.
"""

from __future__ import annotations

import hashlib
import math
import sys

import pandas as pd

from aegan import paths, wall_seconds
from aegan.atomic import atomic_path, file_set, write_json, write_text
from aegan.report.claims import summary_entries
from aegan.report.compose import build_document
from aegan.report.copying import summary_entries as copying_entries
from aegan.report.figures import draw_all
from aegan.report.inputs import WallTime, read_inputs
from aegan.report.render import to_html, to_markdown
from aegan.report.study import summary_entries as study_entries
from aegan.report.tables import summary_json
from aegan.report.winner import Winner, choose
from aegan.stage_params import load
from aegan.generator_model import log_generator
from aegan.tracking import REGISTERED_MODEL, Run, check_tracking, register_model, runs_in_store



def main(params_file) -> dict:
    return run_report(load(params_file, "report"))


REPORT_SET = ("report.md", "report.html", "summary.json", "metrics.json", "figures", "fid_curves.csv")  # replaced as one


def run_report(params) -> dict:
    rp = params.report
    inputs = read_inputs(params)  # refuses stale or missing evaluations before anything is written
    check_tracking()  # a store that cannot be written fails now, not after the report is replaced
    total, known, expected = inputs.stage_seconds()
    wall = WallTime(total + wall_seconds(), known + 1, expected + 1)  # this stage too, up to now
    summary = summary_json(inputs.table, inputs.comparisons, inputs.stability, inputs.reference, rp.baseline)
    for key, extra in summary_entries(inputs.claims).items():
        summary[key] = {**summary.get(key, {}), **extra}
    summary |= study_entries(inputs.study, rp.baseline)
    if inputs.decided is not None:  # `aegan decide`: every look, verdict and replication (report/decided.py)
        summary["decided"] = inputs.decided.to_dict()
    for key, extra in copying_entries(inputs).items():  # copying or generalising, per strategy (report/copying.py)
        summary[key] = {**summary.get(key, {}), **extra}
    winner = choose(inputs.runs, rp.primary.better, rp.confidence)
    pick = best_seed(inputs.runs, winner.strategy) if winner is not None else None
    if winner is not None:  # which strategy, whether the comparison decided it, and its generator (`aegan promote`)
        summary["winner"] = winner.to_dict() | ({"seed": int(pick["seed"]), "generator_sha256": pick["sha256"]} if pick is not None else {})
    held = runs_in_store(r for r in inputs.runs.get("mlflow_run_id", []) if isinstance(r, str))
    # all or none: the report's files replace the previous ones only once MLflow has taken the report run and the
    # registration too (a full disk or an error leaves the previous report; figures of strategies no longer run go)
    with file_set(paths.REPORTS_DIR, REPORT_SET) as staging:
        figs = draw_all(inputs, staging / "figures")
        write_curves(inputs.curves, staging / "fid_curves.csv")
        doc = build_document(inputs, figs, wall)
        write_text(staging / "report.md", to_markdown(doc))
        write_text(staging / "report.html", to_html(doc))
        write_json(staging / "summary.json", summary)
        write_json(staging / "metrics.json", headline_metrics(summary))

        run = Run.start("report", {"stage": "report", "baseline": rp.baseline})
        run.log_table(comparison_table(inputs.table), "comparison.json")
        for path in (paths.REPORT_FILE, paths.REPORT_HTML_FILE, paths.SUMMARY_FILE):
            run.log_artifact(staging / path.name)
        for path in figs.values():
            run.log_artifact(path, "figures")
        log_final_metrics(inputs.runs, held)
        if pick is not None:
            run.set_tags(register_winner(winner, pick, inputs, run.run_id, held))
        run.end()
    return summary


def comparison_table(table: pd.DataFrame) -> pd.DataFrame:
    """The main table's per-strategy figures (means and spreads over seeds), for MLflow's table view."""
    columns = [c for c in table.columns if c == "strategy" or c.endswith(("_mean", "_std")) or c in ("n", "diverged")]
    return table[columns].rename(columns={"kid_mean_mean": "kid_mean_mean (raw, x1)"})


def best_seed(runs: pd.DataFrame, strategy: str) -> dict | None:
    """The finished run of `strategy` with the lowest FID and a logged model, with the sha256 of its generator.pt
    (the registry's identity of a generator: the same bytes are not registered twice); None when there is none."""
    mine = runs[(runs["strategy"] == strategy) & (runs["status"] == "finished") & runs["fid"].notna()]
    mine = mine[mine["mlflow_model_uri"].map(lambda v: isinstance(v, str))]
    if mine.empty:
        return None
    row = mine.loc[mine["fid"].idxmin()]
    generator = paths.run_dir(strategy, int(row["seed"])) / "generator.pt"
    return {**row.to_dict(), "sha256": hashlib.sha256(generator.read_bytes()).hexdigest()}


def register_winner(winner: Winner, pick: dict, inputs, report_run_id: str, held: set[str]) -> dict[str, str]:
    """Register the winner's best-seed generator (a new version only for new bytes) and point `candidate` at it; the
    report run's tags saying which. A winner trained elsewhere (its run is not among `held`, the runs this tracking
    store holds) is logged again from its generator.pt, under the report run."""
    seeds = int((inputs.runs["strategy"] == winner.strategy).sum())
    tags = {"strategy": winner.strategy, "seed": str(pick["seed"]), "fid": f"{pick['fid']:.6g}",
            f"{winner.measure}{'_geometric' if winner.measure == 'fid' else ''}_mean_over_seeds": f"{winner.mean:.6g}",
            "seeds": str(seeds),
            "baseline": inputs.params.report.baseline, "decided": "yes" if winner.decided else "no",
            "source_run_id": str(pick["mlflow_run_id"]), "report_run_id": report_run_id}  # fmt: skip
    model_uri = pick["mlflow_model_uri"]
    if pick["mlflow_run_id"] not in held:
        model_uri = log_generator(report_run_id, paths.run_dir(winner.strategy, int(pick["seed"])) / "generator.pt",
                                  name=f"generator-{winner.strategy}-{pick['seed']}")  # fmt: skip
        tags["logged_again_from"] = "generator.pt (its training run is not in this tracking store)"
    description = (f"`{winner.strategy}` seed {pick['seed']} (FID {pick['fid']:.4g}), the best seed of the strategy "
                   f"chosen by the report run {report_run_id} among {winner.strategies} strategies: {winner.words}.")  # fmt: skip
    version, new = register_model(model_uri, REGISTERED_MODEL, pick["sha256"], tags, description)
    return {"registered_model": f"models:/{REGISTERED_MODEL}/{version}", "registered_now": "yes" if new else "no",
            "winner": winner.strategy, "winner_decided": "yes" if winner.decided else "no"}  # fmt: skip


CURVE_COLUMNS = ["strategy", "budget", "step", "fid_small", "fid_small_std", "fid_small_low", "fid_small_high"]


def write_curves(curves: dict[str, pd.DataFrame], out) -> None:
    """Each strategy's mean small-sample FID over seeds on the budget axis, with the band mean ± std, in one CSV
    (one row per strategy and evaluation), for the one overlaid `dvc plots show` plot."""
    frames = []
    for s, curve in curves.items():
        curve = curve.rename(columns={"mean": "fid_small", "std": "fid_small_std"}).assign(strategy=s)
        std = curve["fid_small_std"].fillna(0.0)  # one seed: no band
        frames.append(curve.assign(fid_small_low=curve["fid_small"] - std, fid_small_high=curve["fid_small"] + std))
    table = pd.concat(frames) if frames else pd.DataFrame()
    with atomic_path(out, suffix=".csv") as tmp:
        pd.DataFrame(table, columns=CURVE_COLUMNS).to_csv(tmp, index=False)


def headline_metrics(summary: dict) -> dict:
    """Per strategy its mean FID over seeds: one column per strategy in `dvc metrics show` and `dvc exp show`, so
    that changed params fit beside them (summary.json has every other figure, spreads and tests)."""
    return {s: {"fid": e["fid"]["mean"]}
            for s, e in summary.items() if isinstance(e, dict) and "fid" in e}  # strategies (not claims, decided, ...)


def log_final_metrics(runs: pd.DataFrame, held: set[str]) -> None:
    """Each (strategy, seed) MLflow run this store holds gets its final scores, found by the id that evaluate kept;
    the run is not reopened, so its status and end time stay those of training. One line for those it lacks."""
    elsewhere = []
    for r in runs.itertuples():
        run_id = getattr(r, "mlflow_run_id", None)
        if not isinstance(run_id, str):
            continue
        if run_id not in held:  # trained in another workspace (results pulled), or mlflow.db replaced since
            elsewhere.append(f"{r.strategy}-{r.seed}")
            continue
        run = Run.finished(run_id)
        finals = {f"final/{m}": v for m, v in (r.all_metrics or {}).items()}
        run.log_metrics({k: float(v) for k, v in finals.items() if v is not None and math.isfinite(v)})
        run.set_tags({"feature_extractor": str(r.feature_extractor)})
        run.flush()
    if elsewhere:
        print(f"{len(elsewhere)} training run(s) ({', '.join(elsewhere[:3])}{', ...' if len(elsewhere) > 3 else ''}) "
              "are not in this MLflow store (trained in another workspace, or mlflow.db replaced): their final "
              "scores are in reports/, not logged to MLflow", file=sys.stderr)  # fmt: skip
