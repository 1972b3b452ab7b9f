"""Stage `pretrain_ae@<seed>`: the autoencoder of training seed `seed`, trained on ||Dec(E(x)) - x||^2.

Each training seed has its own AE (models/ae-<seed>.pt), so the spread over seeds of an AE
strategy includes its AE's own variance (docs/design.md, the protocol).

The AE's state every `train.eval_every` steps (0 included) goes to models/ae/ae-<seed>-snapshots.pt: a strategy
that is charged these steps is scored over them as the generator it would have had then (stages/train.py), so
every strategy's FID curve starts at budget 0 (docs/design.md, the protocol: "faster").
"""

from __future__ import annotations

import copy
import time

from aegan import paths, wall_seconds
from aegan.ae import AETrainer, reconstruction_mse, save_ae, save_snapshots
from aegan.atomic import write_json
from aegan.compute import setup as setup_compute
from aegan.data.packed import load_packed
from aegan.images import to_unit_range
from aegan.loop import seed_everything, train_loop
from aegan.nets import AutoEncoder, NetShape, set_autocast
from aegan.stage_params import check_seed, load, values
from aegan.tracking import Run, stage_tags



def main(params_file, seed: int, progress: bool = True) -> dict:
    seed = check_seed(seed)  # the command line first: no need to read params.yaml for that
    return run_pretrain_ae(load(params_file, "pretrain_ae"), seed, progress)


def run_pretrain_ae(params, seed: int, progress: bool = True) -> dict:
    p = params.pretrain_ae
    device = setup_compute(params.compute)
    data = load_packed(paths.DATASET_FILE)
    shape = NetShape.for_data(params.model, data.shape)
    x = to_unit_range(data.train_images, device)

    seed_everything(seed)
    ae = AutoEncoder(shape).to(device)
    set_autocast(ae, "cuda" if params.compute.amp and device.type == "cuda" else None)
    trainer = AETrainer(ae, p.optimizer.lr, (p.optimizer.beta1, p.optimizer.beta2))
    declared = values(params)
    tags = stage_tags("pretrain_ae", data.sha256, declared, "ae") | {"seed": str(seed)}
    run = Run.start(f"ae-{seed}", tags, declared | {"seed": seed})
    every, snapshots, started = params.train.eval_every, [], time.perf_counter()

    def step(batch):  # the state after `trainer.steps` updates, kept before the next one
        if every and trainer.steps % every == 0:
            snapshots.append((trainer.steps, time.perf_counter() - started, copy.deepcopy(ae.state_dict())))
        return trainer(batch)

    result = train_loop(step, [x], steps=p.steps, batch_size=p.batch_size, seed=seed, on_log=run.log_train,
                        batch_key="pretrain_ae.batch_size",
                        desc="autoencoder", progress=progress)  # fmt: skip

    heldout_mse = reconstruction_mse(ae, to_unit_range(data.heldout_images, device))
    set_autocast(ae, None)
    save_ae(ae.cpu(), paths.ae_file(seed))
    save_snapshots(ae.shape, snapshots, paths.ae_snapshots_file(seed))
    info = {"seed": seed, "train_seconds": result.seconds, "steps": result.steps_done, "heldout_mse": heldout_mse,
            "train_mse_last": result.history[-1]["loss_rec"], "mlflow_run_id": run.run_id,
            # training seconds at each snapshot: the wall-clock axis of the strategies charged these steps
            "snapshot_seconds": {str(k): t for k, t, _ in snapshots}, "wall_seconds": wall_seconds()}  # fmt: skip
    write_json(paths.ae_info_file(seed), info)
    run.log_metrics({"heldout/mse": heldout_mse})
    run.end()
    return info
