"""Stage `study_evaluate@<strategy>-<setting>-<seed>`: score one study run, as `evaluate` scores a pipeline run."""

from __future__ import annotations

from aegan import paths
from aegan.errors import UserError
from aegan.stage_params import check_seed, load
from aegan.stages import evaluate



def main(params_file, strategy_name: str, index: int, seed: int) -> dict:
    seed = check_seed(seed)
    if index < 1:
        raise UserError(f"--setting {index}: give a drawn setting id >= 1 (setting 0, the strategy's own, is the "
                        f"pipeline's own run: `aegan train`, `aegan evaluate`)")
    how = f"aegan study-train --strategy {strategy_name} --setting {index} --seed {seed}"
    return evaluate.run_evaluate(load(params_file, "study_evaluate"), strategy_name, seed, paths.study_run_dir(strategy_name, index, seed),
                                 paths.study_eval_file(strategy_name, index, seed), how)  # fmt: skip
