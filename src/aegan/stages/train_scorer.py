"""Stage `train_scorer`: the independent scorer CNN, the offline feature extractor (DESIGN 4)."""

from __future__ import annotations

import torch

from aegan import paths, wall_seconds
from aegan.atomic import write_json
from aegan.compute import setup as setup_compute
from aegan.data.packed import load_packed
from aegan.images import to_unit_range
from aegan.loop import seed_everything, train_loop
from aegan.provenance import declared_values
from aegan.scorer import ScorerNet, ScorerTrainer, heldout_accuracy, save_scorer
from aegan.stage_params import load
from aegan.tracking import Run, stage_tags

PARAMS = ("compute", "train_scorer")  # dvc.yaml's params of this stage


def main(params_file, progress: bool = True) -> dict:
    return run_train_scorer(load(params_file, PARAMS), progress)


def run_train_scorer(params, progress: bool = True) -> dict:
    p = params.train_scorer
    device = setup_compute(params.compute)
    data = load_packed(paths.DATASET_FILE)
    labelled = data.labels is not None
    task = "classes" if labelled else "rotation"
    x = to_unit_range(data.train_images, device)
    tensors = [x, torch.as_tensor(data.train_labels, device=device)] if labelled else [x]

    seed_everything(p.seed)
    net = ScorerNet(data.shape[0], data.shape[1], p.width, p.feature_dim, data.num_classes if labelled else 4).to(device)
    trainer = ScorerTrainer(net, p.optimizer.lr, (p.optimizer.beta1, p.optimizer.beta2), p.seed)
    declared = declared_values(params, PARAMS)
    tags = stage_tags("train_scorer", data.sha256, declared, "scorer")
    run = Run.start("scorer", tags, declared)
    result = train_loop(trainer, tensors, steps=p.steps, batch_size=p.batch_size, seed=p.seed,
                        batch_key="train_scorer.batch_size",
                        on_log=run.log_metrics, desc="scorer", progress=progress)  # fmt: skip

    heldout_labels = torch.as_tensor(data.heldout_labels, device=device) if labelled else None
    accuracy = heldout_accuracy(net, to_unit_range(data.heldout_images, device), heldout_labels, p.seed)
    digest = save_scorer(net.cpu(), task, paths.SCORER_FILE)
    info = {"task": task, "heldout_accuracy": accuracy, "hash": digest, "train_seconds": result.seconds,
            "steps": result.steps_done, "mlflow_run_id": run.run_id, "wall_seconds": wall_seconds()}  # fmt: skip
    write_json(paths.SCORER_INFO_FILE, info)
    run.log_metrics({"heldout_accuracy": accuracy})
    run.set_tags({"scorer_hash": digest, "task": task})
    run.end()
    return info
