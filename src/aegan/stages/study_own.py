"""Stage `study_own@<strategy>-<seed>`: setting 0 of the study, the strategy's own, is the pipeline's own run.

No training: the evaluation of `train@<strategy>-<seed>` is entered as
reports/eval/study/<strategy>/s0-<seed>.json with the values it trained
with (lr, beta1 and the strategy's float knobs, from its run.json), beside
the drawn settings' evaluations, so the best-setting stage reads one folder
per strategy. Its inputs are those two files; no params of its own.
"""

from __future__ import annotations

import json

from aegan import paths
from aegan.atomic import write_json
from aegan.errors import UserError
from aegan.stage_params import check_seed
from aegan.strategies import names


def main(params_file, strategy_name: str, seed: int) -> dict:
    seed = check_seed(seed)
    if strategy_name not in names():
        raise UserError(f"unknown strategy {strategy_name!r}: choose one of {', '.join(names())}")
    evaluation, info = read(paths.eval_file(strategy_name, seed)), read(paths.run_dir(strategy_name, seed) / "run.json")
    ran = info.get("params") or {}
    values = {"lr": ran.get("train.optimizer.lr"), "beta1": ran.get("train.optimizer.beta1")}
    values |= {k: v for k, v in (info.get("strategy_params") or {}).items() if isinstance(v, float)}
    entry = evaluation | {"study_setting": 0} | {f"setting.{k}": v for k, v in values.items()}
    write_json(paths.study_eval_file(strategy_name, 0, seed), entry)
    return entry


def read(path) -> dict:
    """A stage's JSON output; a missing or corrupt one is a one-line error naming it."""
    if not path.is_file():
        raise UserError(f"{path}: not found: run the pipeline's own stages first (`aegan run` or `dvc repro`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path}: not valid JSON: re-run the stage that writes it") from None
