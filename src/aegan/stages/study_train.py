"""Stage `study_train@<strategy>-<setting>-<seed>`: train one setting of the study (aegan.study) under one seed.

The pipeline's own train stage, with the setting's optimizer and knobs in
place of train.optimizer and the strategy's section; writes
models/runs/study/<strategy>/s<setting>-<seed>/ (the same files as a train run).
"""

from __future__ import annotations

from aegan import paths
from aegan.checkpoint import CHECKPOINT_DIR
from aegan.errors import UserError
from aegan.stage_params import check_seed, declared, handed, load, values
from aegan.stages import train
from aegan.strategies import get_strategy
from aegan.study import Setting, setting


def main(params_file, strategy_name: str, index: int, seed: int, progress: bool = True) -> dict:
    get_strategy(strategy_name)
    seed = check_seed(seed)
    if index < 1:
        raise UserError(f"--setting {index}: give a drawn setting id >= 1 (setting 0, the strategy's own, is the "
                        f"pipeline's own run: `aegan train`, `aegan evaluate`)")
    params = load(params_file, "study_train", strategy_name)
    chosen = setting_of(params, strategy_name, index)
    out = paths.study_run_dir(strategy_name, index, seed)
    return run_setting(params, chosen, seed, out, f"{strategy_name}-s{index}-{seed}", "study_train", progress)


def setting_of(params, strategy_name: str, index: int) -> Setting:
    return setting(params.study, strategy_name, index, params.train.optimizer, getattr(params, strategy_name))


def run_setting(params, chosen: Setting, seed: int, out_dir, label: str, stage: str, progress: bool = True,
                extra: dict | None = None) -> dict:
    """Train `chosen` under `seed` into `out_dir`: the train stage's computation with the setting in place."""
    name = chosen.strategy
    edited = params.model_copy(update={
        "train": params.train.model_copy(update={"optimizer": chosen.optimizer}), name: chosen.knobs})  # fmt: skip
    setting_values = {f"setting.{k}": v for k, v in chosen.values().items()}
    target = train.Target(out_dir, CHECKPOINT_DIR / f"{label}.pt", label, values(params), stage=stage,
                          group=f"{name} s{chosen.index}",
                          extra={"study_setting": chosen.index, **setting_values, **(extra or {})})  # fmt: skip
    return train.run_train(handed(edited, declared("train", name)), name, seed, target, progress)
