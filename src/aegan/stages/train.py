"""Stage `train@<strategy>-<seed>`: train one strategy under one seed; writes models/runs/<strategy>-<seed>/.

Build the data, networks and evaluator; resume a killed run of the same
params from its checkpoint, or start; run the shared loop; save the
generator, its history, a sample grid and run.json.

The small-sample FID curve covers the whole budget from 0 (docs/design.md, the protocol: "faster"): a strategy charged the AE's
pretraining is scored over those steps as the generator it would have had then (`charged_curve`: the strategy
built on the AE's snapshot, before any update of its own), at own steps `step - ae_steps` < 0 in history.csv.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aegan import paths, wall_seconds
from aegan.ae import load_ae, load_snapshots
from aegan.atomic import atomic_path, remove_stale_temps, write_json
from aegan.checkpoint import Resumable, checkpoint_path, fingerprint
from aegan.compute import accelerate, setup as setup_compute
from aegan.data.packed import file_sha256, load_packed
from aegan.errors import UserError
from aegan.generator import fixed_latents, sample_uint8, save_generator
from aegan.generator_model import log_generator
from aegan.images import image_grid, save_png, to_uint8, to_unit_range
from aegan.loop import seed_everything, train_loop
from aegan.matched_budget import own_steps
from aegan.metrics import Evaluator, check_feature_extractor
from aegan.nets import NetShape, count_parameters, set_autocast
from aegan.strategies import get_strategy
from aegan.stage_params import check_seed, load, values
from aegan.tracking import Run, check_tracking, stage_tags

# steps between resumable checkpoints: not a param (a resumed run equals an uninterrupted one, so DVC need not see it)
CHECKPOINT_EVERY, CHECKPOINT_EVERY_UNSET = "AEGAN_CHECKPOINT_EVERY", 200

OUTPUTS = ("generator.pt", "history.csv", "samples.png", "run.json")


@dataclass
class Target:
    """Where a run goes and what it is called: the pipeline's own run, or a study run (stages/study_train.py)."""

    out_dir: Path
    checkpoint: Path
    label: str  # MLflow run name, progress bar
    declared: dict[str, Any]  # the declared params of the stage as params.yaml gives them: run.json, tags, logged
    stage: str = "train"
    group: str | None = None  # the MLflow group's name part (default: the strategy)
    extra: dict[str, Any] = field(default_factory=dict)  # more for run.json, MLflow params and tags (a study setting)


def main(params_file, strategy_name: str, seed: int, progress: bool = True) -> dict:
    get_strategy(strategy_name)  # an unknown name or seed: one line before params.yaml is read
    seed = check_seed(seed)
    params = load(params_file, "train", strategy_name)
    target = Target(paths.run_dir(strategy_name, seed), checkpoint_path(strategy_name, seed), f"{strategy_name}-{seed}",
                    values(params))  # fmt: skip
    return run_train(params, strategy_name, seed, target, progress)


def run_train(params, strategy_name: str, seed: int, target: Target, progress: bool = True) -> dict:
    # ---- build
    cls = get_strategy(strategy_name)
    strategy_params = getattr(params, strategy_name)
    check_feature_extractor(params.evaluate)
    check_tracking()
    tp = params.train
    device = setup_compute(params.compute)
    amp = "cuda" if params.compute.amp and device.type == "cuda" else None
    data = load_packed(paths.DATASET_FILE)
    shape = NetShape.for_data(params.model, data.shape)
    x = to_unit_range(data.train_images, device)
    uses_ae = cls.uses_ae
    ae = load_ae(paths.ae_file(seed), shape, device) if uses_ae else None
    # the budget counts generator-side updates: a strategy that uses the AE is charged its pretraining (docs/design.md, the protocol)
    ae_steps = params.pretrain_ae.steps if uses_ae else 0
    steps = own_steps(tp.budget, tp.match_budget, ae_steps)
    reference = torch.as_tensor(data.heldout_images[: tp.eval_samples])
    evaluator = Evaluator(params.evaluate, paths.SCORER_FILE, reference, device) if tp.eval_every else None
    started = time.perf_counter()
    charged = charged_curve(cls, strategy_params, params, shape, seed, x, evaluator, ae_steps) if evaluator and ae_steps else []
    charged_seconds = time.perf_counter() - started

    seed_everything(seed)
    strategy = cls(strategy_params, shape, tp.optimizer, ae).to(device)
    set_autocast(strategy, amp)
    strategy.setup(x, ae)
    grid_eps = fixed_latents(tp.grid_samples, shape.z_dim, tp.grid_seed).to(device)
    out_dir = target.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        remove_stale_temps(out_dir / name)  # left by a killed earlier run

    # ---- resume a killed run of the same params, or start
    inputs = {"data_sha256": data.sha256, "scorer_sha256": file_sha256(paths.SCORER_FILE) if evaluator else None,
              "ae_sha256": file_sha256(paths.ae_file(seed)) if ae is not None else None}  # fmt: skip
    resumable = Resumable(target.checkpoint, strategy, seed,
                          fingerprint(strategy_name, seed, params, inputs))  # fmt: skip
    ckpt = resumable.resume_or_start()
    run = resume_run(ckpt, resumable.path) if ckpt else None
    if ckpt:
        print(f"{resumable.path}: resuming at step {ckpt['step']} of {steps}", file=sys.stderr)
    train_step = accelerate(strategy, params.compute, device)  # today's step unless compute.* says otherwise
    if run is None:
        declared = target.declared  # compute.* and evaluate.* too: all it reads
        logged = declared | {
            "strategy": strategy_name, "seed": seed, "steps": steps, "ae_steps_charged": ae_steps,
            "generator_parameters": count_parameters(strategy.generator)} | target.extra  # fmt: skip
        tags = stage_tags(target.stage, data.sha256, declared | target.extra, target.group or strategy_name) | {
            "strategy": strategy_name, "seed": str(seed)} | {k: str(v) for k, v in target.extra.items()}  # fmt: skip
        run = Run.start(target.label, tags, logged)
        run.log_dataset(paths.DATASET_FILE, data.sha256, "training", {"shape": "x".join(map(str, data.shape))})
        for row in charged:
            run.log_metrics({"fid/small_vs_budget": row["fid_small"]}, ae_steps + row["step"])

    # ---- the loop: small-sample FID and a grid every eval_every steps, a checkpoint every AEGAN_CHECKPOINT_EVERY steps
    def on_eval(step: int) -> dict[str, float]:
        samples = sample_uint8(strategy.generate, tp.eval_samples, shape.z_dim, seed=step, device=device)
        fid = evaluator.fid(samples)
        run.log_metrics({"fid/small": fid}, step)
        run.log_metrics({"fid/small_vs_budget": fid}, ae_steps + step)  # the report's x axis: AE pretraining charged
        run.log_image(image_grid(to_uint8(strategy.generate(grid_eps))), key="samples", step=step)
        return {"fid_small": fid}

    def on_checkpoint(step: int, loop_state: dict) -> None:
        run.flush()  # metrics up to this step are in MLflow before the checkpoint claims them
        resumable.save(step, loop_state, run.run_id)

    # a run left open by an error or a signal is ended FAILED or KILLED by the command (cli.py)
    result = train_loop(train_step, [x], steps=steps, batch_size=tp.batch_size, seed=seed, batch_key="train.batch_size",
                        log_every=tp.log_every, on_log=run.log_train, eval_every=tp.eval_every,
                        on_eval=on_eval if evaluator else None, divergence_bound=tp.divergence_bound,
                        checkpoint_every=checkpoint_every(), on_checkpoint=on_checkpoint,
                        state=ckpt["loop_state"] if ckpt else None, desc=target.label,
                        progress=progress)  # fmt: skip

    # ---- save
    set_autocast(strategy, None)
    save_generator(strategy.cpu(), out_dir / "generator.pt")
    strategy.to(device)
    write_history_csv(charged + result.history, out_dir / "history.csv")
    save_png(image_grid(to_uint8(strategy.generate(grid_eps))), out_dir / "samples.png")
    info = {
        "strategy": strategy_name, "seed": seed, "status": "diverged" if result.diverged else "finished",
        "diverged_at": result.diverged_at, "steps": result.steps_done, "ae_steps_charged": ae_steps,
        "budget": ae_steps + result.steps_done,
        "train_seconds": result.seconds - result.eval_seconds, "eval_seconds": result.eval_seconds,
        "charged_eval_seconds": charged_seconds,  # scoring the charged AE steps' generators (before training)
        "seconds_at_eval": {str(k): t for k, t in result.eval_times},  # own step -> training seconds: the wall axis
        "images_per_second": result.images_per_second, "generator_parameters": count_parameters(strategy.generator),
        "uses_ae": uses_ae, "mlflow_run_id": run.run_id, "wall_seconds": wall_seconds(),
        "strategy_params": strategy_params.model_dump(),  # its own knobs: the study's table reads them
        "params": target.declared,  # what the report checks it still matches
        "generator_sha256": file_sha256(out_dir / "generator.pt"),  # evaluate scores only these bytes
    } | target.extra  # fmt: skip
    if not result.diverged:  # `mlflow.pyfunc.load_model(uri).predict(eps)` gives images
        info["mlflow_model_uri"] = log_generator(run.run_id, out_dir / "generator.pt", shape.z_dim)
    write_json(out_dir / "run.json", info)
    run.log_artifact(out_dir / "samples.png")
    run.log_artifact(out_dir / "generator.pt")
    if result.diverged:
        run.set_tags({"diverged": "true", "diverged_at": str(result.diverged_at)})
    run.end("FAILED" if result.diverged else "FINISHED")
    resumable.finish()
    return info


def charged_curve(cls, strategy_params, params, shape: NetShape, seed: int, x: torch.Tensor, evaluator: Evaluator,
                  ae_steps: int) -> list[dict]:  # fmt: skip
    """Small-sample FID over the AE's pretraining steps charged to this strategy: at each snapshot of the seed's AE,
    the strategy built on it (its generator and prior, before any update of its own: the decoder with the prior it
    samples from, or an untrained generator), as rows {"step": snapshot step - ae_steps, "fid_small"}.
    Deterministic, so a resumed run computes the same rows again; the global RNG is re-seeded after it."""
    tp = params.train
    rows = []
    for step, snapshot in load_snapshots(paths.ae_snapshots_file(seed), shape):
        if step >= ae_steps:
            continue
        snapshot = snapshot.to(x.device)
        seed_everything(seed)  # the generator a strategy starts from may be drawn (ae_manifold's): as in training
        would_be = cls(strategy_params, shape, tp.optimizer, snapshot).to(x.device)
        would_be.setup(x, snapshot)
        samples = sample_uint8(would_be.generate, tp.eval_samples, shape.z_dim, seed=step, device=x.device)
        rows.append({"step": step - ae_steps, "fid_small": evaluator.fid(samples)})
    return rows


def checkpoint_every() -> int:
    """Steps between checkpoints, from AEGAN_CHECKPOINT_EVERY (0: only after the last step)."""
    raw = os.environ.get(CHECKPOINT_EVERY, str(CHECKPOINT_EVERY_UNSET))
    if not raw.strip().isdigit():
        raise UserError(f"{CHECKPOINT_EVERY}={raw!r} is not a number of steps: give a whole number >= 0 (0: a "
                        f"checkpoint only after the last step), or unset it for every {CHECKPOINT_EVERY_UNSET} steps")
    return int(raw)


def resume_run(ckpt: dict, where: Path) -> Run | None:
    """The MLflow run the checkpoint was logging to; None (a new run, said on stderr) when it is gone."""
    try:
        return Run.resume(ckpt["mlflow_run_id"])
    except Exception as err:  # e.g. the tracking DB was deleted: keep the weights, open a new run
        print(f"{where}: MLflow run {ckpt['mlflow_run_id']} not found ({type(err).__name__}): logging to a new run",
              file=sys.stderr)  # fmt: skip
        return None


def write_history_csv(history: list[dict], path: Path) -> None:
    import pandas as pd

    df = pd.DataFrame(history).groupby("step", as_index=False).first() if history else pd.DataFrame({"step": []})
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False)
