"""Stage `study_best_evaluate@<strategy>-<seed>`: score a best setting's run on a fresh seed, as `evaluate` does."""

from __future__ import annotations

from aegan import paths
from aegan.stage_params import check_seed, load
from aegan.stages import evaluate



def main(params_file, strategy_name: str, seed: int) -> dict:
    seed = check_seed(seed)
    how = f"aegan study-best --strategy {strategy_name} --seed {seed}"
    return evaluate.run_evaluate(load(params_file, "study_best_evaluate"), strategy_name, seed, paths.study_best_dir(strategy_name, seed),
                                 paths.study_best_eval_file(strategy_name, seed), how)  # fmt: skip
