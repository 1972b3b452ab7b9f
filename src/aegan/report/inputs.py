"""Everything the report says is computed from: read once from the other stages' outputs, then only read.

`read_inputs` reads the runs, their histories and the other stages' records,
and derives the tables every section draws on; the sections and figures get
the one `ReportInputs` and read its fields by name, so what a section uses is
visible in its code and no section can change what another one sees.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd

from aegan import paths
from aegan.errors import UserError
from aegan.params import Params, flatten
from aegan.provenance import stale_evaluations
from aegan.report import tables as T
from aegan.report.budget import Plateau, budget_curve, plateau, rankings
from aegan.report.claims import Claims, claims
from aegan.report.comparison import Comparison
from aegan.report.decided import decided
from aegan.report.sequential import Outcome
from aegan.report.study import Study, read_study
from aegan.tracking import committed_text, git_commit, git_dirty


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no single truth value to compare by
class ReportInputs:
    """What every section and figure of the report reads: built once by `read_inputs`, then only read."""

    params: Params  # or the stage's view of them (stage_params.py): read the same way
    runs: pd.DataFrame  # one row per (strategy, seed): status, metrics, costs (tables.collect_runs)
    histories: dict[tuple[str, int], pd.DataFrame]  # (strategy, seed): its logged losses and FID curve
    table: pd.DataFrame  # one row per strategy: the main table (tables.aggregate)
    comparisons: list[Comparison]  # each strategy against the baseline on FID (log scale) and KID: claims' "better"
    stability: pd.DataFrame  # one row per strategy (tables.stability)
    reference: dict  # the reference stage's floor and untrained generator
    card: dict  # prepare's data card
    scorer: dict  # train_scorer's record
    ae: dict[int, dict]  # pretrain_ae's record of each training seed's AE
    curves: dict[str, pd.DataFrame]  # per strategy: mean small-sample FID over seeds on the budget axis
    plateau: Plateau  # has the baseline's curve flattened
    rankings: dict  # small-sample FID rankings at the matched budget and at equal own steps
    differences: Differences  # the parameters that differ from params.yaml as committed
    commit: str  # the checked-out commit, as the Setup section writes it
    claims: Claims | None = None  # better, faster, more stable: every measure against the baseline (claims.py)
    study: Study | None = None  # the equal-budget study, where params.yaml runs one (report/study.py)
    decided: Outcome | None = None  # `aegan decide`'s verdicts, where it added runs (report/decided.py)

    def stage_seconds(self) -> tuple[float, int, int]:
        """Sum of the wall times the stages recorded (process start to outputs), how many recorded one, of how many."""
        values = [self.card.get("prepare_wall_seconds"), self.scorer.get("wall_seconds")]
        values += [self.reference.get("wall_seconds")] + [info.get("wall_seconds") for info in self.ae.values()]
        for col in ("train_wall_seconds", "wall_seconds"):
            values += list(self.runs[col]) if col in self.runs else [None] * len(self.runs)
        known = [float(v) for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]
        return sum(known), len(known), len(values)


class WallTime(NamedTuple):
    """The pipeline's wall time as the Setup section reports it: known only once the report itself is nearly done."""

    seconds: float  # sum over the stage runs that recorded theirs, this report up to now included
    recorded: int  # how many stage runs recorded one
    stage_runs: int  # of how many


def read_inputs(params) -> ReportInputs:
    """Read every stage output the report uses (a missing one: a UserError naming it) and derive the tables."""
    strategies, seeds, rp = params.strategies, params.seeds, params.report
    check_current(params)
    runs = T.collect_runs(strategies, seeds)
    reference = T.read_json(paths.REFERENCE_FILE)
    card, scorer = T.read_json(paths.DATA_CARD_FILE), T.read_json(paths.SCORER_INFO_FILE)
    ae = {seed: T.read_json(paths.ae_info_file(seed)) for seed in seeds}  # one AE per training seed
    histories = T.collect_histories(strategies, seeds)
    curves = {s: budget_curve(histories, runs, s, seeds, "fid_small") for s in strategies}
    study = read_study(params)
    cl = claims(runs, histories, ae, study.runs if study is not None else None, params)
    return ReportInputs(
        params=params, runs=runs, histories=histories,
        table=T.aggregate(runs, {seed: info["train_seconds"] for seed, info in ae.items()}),
        comparisons=[t for t in cl.tests if t.metric in ("fid", "kid_mean")] if cl is not None else [],
        stability=T.stability(runs, histories, reference, rp), reference=reference, card=card, scorer=scorer, ae=ae,
        curves=curves, plateau=plateau(curves.get(rp.baseline, curves[strategies[0]]), rp.plateau_tolerance),
        rankings=rankings(histories, runs, strategies, seeds), differences=parameter_differences(params),
        commit=commit_line(), claims=cl, study=study, decided=decided(params) if params.decide.runs else None,
    )  # fmt: skip


def check_current(params) -> None:
    """Refuse, in one line, evaluations of other params or of generators since replaced (aegan.provenance)."""
    evaluations = {(s, seed): T.read_json(paths.eval_file(s, seed)) for s in params.strategies for seed in params.seeds}
    evaluations |= {(r.strategy, r.seed): T.read_json(paths.eval_file(r.strategy, r.seed))
                    for r in params.decide.runs.values() if paths.eval_file(r.strategy, r.seed).is_file()}  # fmt: skip
    stale = stale_evaluations(evaluations, params)
    if stale:
        strategy, seed, why = stale[0]
        more = f" (and {len(stale) - 1} more: {', '.join(f'{s}-{n}' for s, n, _ in stale[1:])})" if len(stale) > 1 else ""
        stage = f"{'evaluate' if why.startswith('it was scored') else 'train'}@{strategy}-{seed}"
        raise UserError(f"{paths.eval_file(strategy, seed)} is stale: {why}{more}; the report mixes no stale result in: "
                        "re-run the pipeline (`aegan run` or `dvc repro`) and fix what stops those stages; if DVC "
                        f"calls them up to date (dvc.lock written by an older aegan while params.yaml was being "
                        f"edited), force them: `dvc repro --force --single-item {stage}`, then `aegan run`")  # fmt: skip


class Differences(NamedTuple):
    """What this comparison changed from params.yaml as committed at `rev` (None: no committed file to compare with)."""

    rev: str | None
    changed: list[tuple[str, Any, Any]]  # (key, value here, value committed), sorted by key


def parameter_differences(params) -> Differences:
    """The parameters that differ from params.yaml as committed at the comparison's baseline commit (an experiment's,
    DVC_EXP_BASELINE_REV, else HEAD), as `dvc params diff` lists them: the committed file is the default comparison."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    rev = os.environ.get("DVC_EXP_BASELINE_REV") or git_commit()
    text = committed_text(str(paths.PARAMS_FILE), rev) if rev != "unknown" else None
    try:
        committed = YAML(typ="safe").load(text) if text is not None else None
    except YAMLError:
        committed = None
    if not isinstance(committed, dict):
        return Differences(None, [])
    ours, theirs = flatten(params.model_dump(mode="json")), flatten(committed)
    keys = sorted(set(ours) | set(theirs))
    return Differences(rev, [(k, ours.get(k), theirs.get(k)) for k in keys if ours.get(k) != theirs.get(k)])


def commit_line() -> str:
    """The checked-out commit, and whether tracked files differ from it (dvc.lock does while dvc repro runs)."""
    sha = git_commit()
    if sha == "unknown":
        return "unknown (not a git checkout, or no commit yet)"
    return f"`{sha[:12]}`" + (" with uncommitted changes to tracked files" if git_dirty() else "")
