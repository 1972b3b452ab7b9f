"""Stage `study_train@<strategy>-<setting>-<seed>`: train one setting of the study (aegan.study) under one seed.

The pipeline's own train stage, with the setting's optimizer and knobs in
place of train.optimizer and the strategy's section; writes
models/runs/study/<strategy>/s<setting>-<seed>/ (the same files as a train run).
"""

from __future__ import annotations

from aegan import paths
from aegan.checkpoint import CHECKPOINT_DIR
from aegan.errors import UserError
from aegan.provenance import declared_values
from aegan.stage_params import STRATEGY, check_seed, load, stage_view
from aegan.stages import train
from aegan.strategies import get_strategy
from aegan.study import Setting, setting

# dvc.yaml's params: the train stage's, and the ranges setting k >= 1 is drawn from (aegan.study)
PARAMS = (*train.PARAMS, "study.draw_seed", "study.lr", "study.beta1", f"study.{STRATEGY}")
UNTRACKED = train.UNTRACKED


def main(params_file, strategy_name: str, index: int, seed: int, progress: bool = True) -> dict:
    get_strategy(strategy_name)
    seed = check_seed(seed)
    if index < 1:
        raise UserError(f"--setting {index}: give a drawn setting id >= 1 (setting 0, the strategy's own, is the "
                        f"pipeline's own run: `aegan train`, `aegan evaluate`)")
    params = load(params_file, PARAMS, UNTRACKED, strategy=strategy_name)
    chosen = setting_of(params, strategy_name, index)
    out = paths.study_run_dir(strategy_name, index, seed)
    return run_setting(params, chosen, seed, out, f"{strategy_name}-s{index}-{seed}", "study_train", PARAMS, progress)


def setting_of(params, strategy_name: str, index: int) -> Setting:
    return setting(params.study, strategy_name, index, params.train.optimizer, params.strategy_params(strategy_name))


def run_setting(params, chosen: Setting, seed: int, out_dir, label: str, stage: str, declared_names,
                progress: bool = True, extra: dict | None = None) -> dict:
    """Train `chosen` under `seed` into `out_dir`: the train stage's computation with the setting in place."""
    name = chosen.strategy
    model = params._model  # the validated params behind the stage's view; the view over the edited copy checks reads
    edited = model.model_copy(update={
        "train": model.train.model_copy(update={"optimizer": chosen.optimizer}), name: chosen.knobs})  # fmt: skip
    view = stage_view(edited, train.PARAMS, train.UNTRACKED, name)
    values = {f"setting.{k}": v for k, v in chosen.values().items()}
    target = train.Target(out_dir, CHECKPOINT_DIR / f"{label}.pt", label, declared_values(params, declared_names, name),
                          stage=stage, group=f"{name} s{chosen.index}",
                          extra={"study_setting": chosen.index, **values, **(extra or {})})  # fmt: skip
    return train.run_train(view, name, seed, target, progress)
