"""Stage `train_scorer`: the independent scorer CNN, the offline feature extractor (docs/design.md, the evaluation)."""

from __future__ import annotations

import torch

from aegan import paths, wall_seconds
from aegan.atomic import write_json
from aegan.compute import setup as setup_compute
from aegan.data.packed import load_packed
from aegan.images import to_unit_range
from aegan.loop import seed_everything, train_loop
from aegan.modes import CHANNELS, DIGITS
from aegan.scorer import (CHANNEL_TASK, ChannelScorer, ScorerNet, ScorerTrainer, channel_accuracy, heldout_accuracy,
                           save_scorer)
from aegan.stage_params import load, values
from aegan.tracking import Run, stage_tags



def main(params_file, progress: bool = True) -> dict:
    return run_train_scorer(load(params_file, "train_scorer"), progress)


def run_train_scorer(params, progress: bool = True) -> dict:
    p = params.train_scorer
    device = setup_compute(params.compute)
    data = load_packed(paths.DATASET_FILE)
    task, tensors, channels, outputs = training_task(data, device)

    seed_everything(p.seed)
    net = ScorerNet(channels, data.shape[1], p.width, p.feature_dim, outputs).to(device)
    trainer = ScorerTrainer(net, p.optimizer.lr, (p.optimizer.beta1, p.optimizer.beta2), p.seed)
    declared = values(params)
    tags = stage_tags("train_scorer", data.sha256, declared, "scorer")
    run = Run.start("scorer", tags, declared)
    result = train_loop(trainer, tensors, steps=p.steps, batch_size=p.batch_size, seed=p.seed,
                        batch_key="train_scorer.batch_size",
                        on_log=run.log_train, desc="scorer", progress=progress)  # fmt: skip

    accuracy = heldout_scores(net, task, data, p.seed, device)
    digest = save_scorer(net.cpu(), task, paths.SCORER_FILE)
    info = {"task": task, **accuracy, "hash": digest, "train_seconds": result.seconds,
            "steps": result.steps_done, "mlflow_run_id": run.run_id, "wall_seconds": wall_seconds()}  # fmt: skip
    write_json(paths.SCORER_INFO_FILE, info)
    run.log_metrics({"heldout/accuracy": accuracy["heldout_accuracy"]})
    run.set_tags({"scorer_hash": digest, "task": task})
    run.end()
    return info


def training_task(data, device) -> tuple[str, list[torch.Tensor], int, int]:
    """What the scorer learns: (task, training tensors, input channels, outputs). Stacked digits: each training
    image's channels as one-channel digit images with their digits; else the classes, or rotations without labels."""
    if data.channel_labels is not None:
        n, c, h, w = data.train_images.shape
        x = to_unit_range(data.train_images.reshape(n * c, 1, h, w), device)
        return CHANNEL_TASK, [x, torch.as_tensor(data.train_channel_labels.reshape(-1), device=device)], 1, DIGITS
    x = to_unit_range(data.train_images, device)
    if data.labels is None:
        return "rotation", [x], data.shape[0], 4
    return "classes", [x, torch.as_tensor(data.train_labels, device=device)], data.shape[0], data.num_classes


def heldout_scores(net: ScorerNet, task: str, data, seed: int, device) -> dict:
    """Held-out accuracy (`heldout_accuracy`); stacked digits: per channel and of the whole mode too."""
    x = to_unit_range(data.heldout_images, device)
    if task == CHANNEL_TASK:
        labels = torch.as_tensor(data.heldout_channel_labels, device=device)
        return channel_accuracy(ChannelScorer(net, CHANNELS), x, labels)
    labels = torch.as_tensor(data.heldout_labels, device=device) if task == "classes" else None
    return {"heldout_accuracy": heldout_accuracy(net, x, labels, seed)}
