"""The decided verdicts (`aegan decide`): the group-sequential procedure of report/sequential.py replayed on every
run on disk, the pipeline's own seeds first, then the runs `aegan decide` added (params.yaml `decide.runs`).

Each claim is judged by its declared primary measure (report.primary), with its margin (report.equivalence), on
the same per-run values the fixed-n claims use (claims.per_run): log FID, KID, the mean log FID over the budget,
log late oscillation, failed or not, log FID for the spread. Seed i of a strategy is the i-th of `seeds` (sorted),
then the seeds after the largest of them, in order: the same for every strategy, so seed i of a strategy and of
the baseline share the AE of that seed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from aegan import paths
from aegan.report import tables as T
from aegan.report.claims import MIN_KL, equivalence_margins, per_run, run_curves
from aegan.report.sequential import Outcome, Plan, replay

KIND = {"fid": "mean", "kid_mean": "mean", "log_fid_area": "mean", "fid_oscillation": "mean",
        "failure_rate": "proportion", "fid_spread": "spread", "mode_kl": "mean"}  # fmt: skip


def seed_at(seeds: list[int], i: int) -> int:
    """The seed of position i: `seeds` sorted, then the seeds after the largest, in order."""
    base = sorted(seeds)
    return base[i] if i < len(base) else base[-1] + 1 + i - len(base)


def seed_position(seeds: list[int], seed: int) -> int:
    base = sorted(seeds)
    return base.index(seed) if seed in base else len(base) + seed - base[-1] - 1


def plan_of(params, kid_baseline: float) -> Plan:
    rp, d = params.report, params.decide
    margins = equivalence_margins(rp.equivalence.model_dump(), kid_baseline)
    measures = {claim: (m, KIND[m], margins[m]) for claim, m in rp.primary.model_dump().items()}
    return Plan(rp.baseline, tuple(s for s in params.strategies if s != rp.baseline), measures, len(params.seeds),
                d.batch, max(d.max_seeds, len(params.seeds)), 1.0 - rp.confidence, d.replicate)  # fmt: skip


def run_pairs(params) -> dict[str, list[int]]:
    """strategy -> its seeds with an evaluation on disk: the pipeline's own, then decide.runs' that finished."""
    out = {s: sorted(params.seeds) for s in params.strategies}
    for run in sorted(params.decide.runs.values(), key=lambda r: r.seed):
        if paths.eval_file(run.strategy, run.seed).is_file():
            out[run.strategy].append(run.seed)
    return out


def per_seed_values(params, pairs: dict[str, list[int]]) -> tuple[dict[str, dict[str, list[float]]], float]:
    """values[strategy][measure] in seed order (positions of `seed_at`, up to the first missing run), and the
    baseline's mean KID over the pipeline's own seeds (the KID margin is a share of it)."""
    runs = pd.concat([T.collect_runs([s], seeds) for s, seeds in pairs.items()], ignore_index=True)
    histories = {}
    for s, seeds in pairs.items():
        histories |= T.collect_histories([s], seeds)
    ae_seeds = sorted({seed for seeds in pairs.values() for seed in seeds})
    ae = {seed: T.read_json(paths.ae_info_file(seed)) for seed in ae_seeds if paths.ae_info_file(seed).is_file()}
    curves = run_curves(histories, runs, ae)
    end = min((c.budget[-1] for c in curves.values()), default=math.nan)
    table = per_run(runs, curves, None, params.report, (0.0, float(end)), {}).set_index(["strategy", "seed"])
    finished = runs["status"] == "finished"
    fid = runs.assign(fid=runs["fid"].where(finished)).set_index(["strategy", "seed"])
    values: dict[str, dict[str, list[float]]] = {}
    for s, seeds in pairs.items():
        position = {seed_position(params.seeds, seed): seed for seed in seeds}
        column: dict[str, list[float]] = {m: [] for m in KIND}
        for i in range(max(position) + 1):
            if i not in position:  # a gap: never read (decided() checks), e.g. before the replication's fresh seeds
                for m in column:
                    column[m].append(math.nan)
                continue
            seed = position[i]
            row, f = table.loc[(s, seed)], fid.loc[(s, seed)]
            log_fid = math.log(f["fid"]) if pd.notna(f["fid"]) and f["fid"] > 0 else math.nan
            column["fid"].append(log_fid)
            column["fid_spread"].append(log_fid)
            column["kid_mean"].append(float(f["kid_mean"]) if pd.notna(f["kid_mean"]) and pd.notna(f["fid"]) else math.nan)
            column["log_fid_area"].append(float(row["log_fid_area"]))
            osc = float(row["fid_oscillation"])
            column["fid_oscillation"].append(math.log(osc) if osc > 0 else math.nan)
            column["failure_rate"].append(1.0 if row["failed"] else 0.0)
            kl = f.get("mode_kl")
            column["mode_kl"].append(math.log(max(float(kl), MIN_KL)) if pd.notna(kl) and pd.notna(f["fid"]) else math.nan)
        values[s] = column
    base = params.report.baseline
    own = runs[(runs["strategy"] == base) & runs["seed"].isin(params.seeds) & finished]["kid_mean"].dropna()
    return values, float(np.mean(own)) if len(own) else math.nan


def decided(params) -> Outcome | None:
    """The procedure replayed on the runs on disk; None when the baseline is not among the strategies."""
    if params.report.baseline not in params.strategies or len(params.strategies) < 2:
        return None
    pairs = run_pairs(params)
    values, kid_baseline = per_seed_values(params, pairs)
    plan = plan_of(params, kid_baseline)
    outcome = replay(plan, values)
    on_disk = {s: {seed_position(params.seeds, seed) for seed in seeds} for s, seeds in pairs.items()}
    if all(read_positions(outcome, s) <= on_disk[s] for s in on_disk):
        return outcome
    # a gap the procedure reads (runs added by another plan, or lost): replay on the runs up to the first gap
    prefix = {s: {m: v[: min(set(range(len(v) + 1)) - on_disk[s])] for m, v in column.items()}
              for s, column in values.items()}  # fmt: skip
    return replay(plan, prefix)


def read_positions(outcome: Outcome, strategy: str) -> set[int]:
    """The seed positions of `strategy` the outcome's looks and replication read."""
    plan = outcome.plan
    looked = max((look.n.get(strategy, 0) for look in outcome.looks), default=0)
    out = set(range(looked))
    if outcome.replication and (strategy == plan.baseline or any(s == strategy for s, _ in outcome.replication)):
        first = outcome.looks[-1].n[plan.baseline]
        out |= set(range(first, first + plan.replicate))
    return out


def runs_needed(params, outcome: Outcome) -> dict[str, dict]:
    """decide.runs for the next step: those already there, and every run the outcome says it needs."""
    out = {name: {"strategy": r.strategy, "seed": r.seed} for name, r in params.decide.runs.items()}
    for s, positions in outcome.missing.items():
        for seed in (seed_at(params.seeds, i) for i in positions):
            out[f"{s}-{seed}"] = {"strategy": s, "seed": seed}
    return dict(sorted(out.items(), key=lambda kv: (kv[1]["seed"], kv[1]["strategy"])))
