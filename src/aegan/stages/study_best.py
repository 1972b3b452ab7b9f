"""Stage `study_best@<strategy>-<seed>`: the strategy's best study setting, trained again under a fresh seed.

Best: the lowest mean FID over `study.seeds` among the settings (0, the
strategy's own, and the drawn ones) whose every seed finished
(reports/eval/study/<strategy>/). Trained under a seed of
`study.fresh_seeds`, which no setting was selected on, so the figure the
study reports for the best setting is not the best of its own noise.
Writes models/runs/study-best/<strategy>-<seed>/; when no setting finished
every seed, run.json says so (status "no_setting") and evaluate scores nothing.
When the best is setting 0, the strategy's own, that training is the
pipeline's own run of the fresh seed (`train@<strategy>-<seed>`, the same
params and code): its files are copied instead of trained again.
"""

from __future__ import annotations

import math

from aegan import paths
from aegan.atomic import write_json
from aegan.errors import UserError
from aegan.stage_params import check_seed, load
from aegan.stages import study_own, study_train
from aegan.strategies import get_strategy


def main(params_file, strategy_name: str, seed: int, progress: bool = True) -> dict:
    get_strategy(strategy_name)
    seed = check_seed(seed)
    params = load(params_file, "study_best", strategy_name)
    scores = setting_scores(strategy_name, [0, *params.study.settings], params.study.seeds)
    out = paths.study_best_dir(strategy_name, seed)
    best = best_setting(scores)
    if best is None:
        out.mkdir(parents=True, exist_ok=True)
        info = {"strategy": strategy_name, "seed": seed, "status": "no_setting", "setting_scores": scores}
        write_json(out / "run.json", info)
        return info
    chosen = study_train.setting_of(params, strategy_name, best)
    if best == 0:
        return copy_own_run(strategy_name, seed, out, chosen)
    return study_train.run_setting(params, chosen, seed, out, f"{strategy_name}-best-{seed}", "study_best", progress,
                                   extra={"study_best": True})  # fmt: skip


def copy_own_run(strategy: str, seed: int, out, chosen) -> dict:
    """Setting 0 under `seed` is `train@<strategy>-<seed>`: its files, run.json marked as the study's best."""
    import shutil

    own = paths.run_dir(strategy, seed)
    info_path = own / "run.json"
    if not info_path.is_file():
        raise UserError(f"{info_path}: not found: run the pipeline's own stages first (`aegan run` or `dvc repro`)")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("generator.pt", "history.csv", "samples.png"):
        if (own / name).is_file():
            shutil.copy2(own / name, out / name)
    info = study_own.read(info_path) | {"study_setting": 0, "study_best": True}
    info |= {f"setting.{k}": v for k, v in chosen.values().items()}
    write_json(out / "run.json", info)
    return info


def setting_scores(strategy: str, settings: list[int], seeds: list[int]) -> dict[str, float | None]:
    """Mean final FID over `seeds` per setting id (as a string, for JSON); None where a seed did not finish."""
    out: dict[str, float | None] = {}
    for k in settings:
        fids = []
        for s in seeds:
            path = paths.study_eval_file(strategy, k, s)
            if not path.is_file():
                stage = f"study_own@{strategy}-{s}" if k == 0 else f"study_evaluate@{strategy}-{k}-{s}"
                raise UserError(f"{path}: not found: run `dvc repro {stage}` first")
            fid = (study_own.read(path).get("metrics") or {}).get("fid")
            fids.append(fid if fid is not None and math.isfinite(fid) else None)
        out[str(k)] = None if None in fids else sum(fids) / len(fids)
    return out


def best_setting(scores: dict[str, float | None]) -> int | None:
    """The setting with the lowest mean FID (the lower id on a tie); None when none finished every seed."""
    done = [(v, int(k)) for k, v in scores.items() if v is not None]
    return min(done)[1] if done else None
