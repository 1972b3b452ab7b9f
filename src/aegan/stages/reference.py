"""Stage `reference`: the real-vs-real floor and an untrained generator, scored under the evaluation protocol.

The floor scores training images against the held-out split: as many as the
generators are scored with (`evaluate.num_samples`), or the whole training
split where it is smaller (the counts are recorded and reported).
"""

from __future__ import annotations

import numpy as np
import torch

from aegan import paths, wall_seconds
from aegan.atomic import write_json
from aegan.compute import setup as setup_compute
from aegan.generator import sample_uint8
from aegan.images import image_grid, save_png
from aegan.loop import seed_everything
from aegan.metrics import heldout_evaluator
from aegan.nets import Decoder, NetShape
from aegan.stage_params import load

PARAMS = ("compute", "model", "evaluate", "train.grid_samples")  # dvc.yaml's params of this stage


def main(params_file) -> dict:
    return run_reference(load(params_file, PARAMS))


def run_reference(params) -> dict:
    device = setup_compute(params.compute)
    data, evaluator = heldout_evaluator(params, device)
    # held-out images as a grid, for the report to show next to the strategies' samples
    save_png(image_grid(torch.as_tensor(data.heldout_images[: params.train.grid_samples])), paths.HELDOUT_GRID_FILE)
    n = params.evaluate.num_samples
    train_real = torch.as_tensor(data.train_images[:n])  # the whole training split when it holds fewer than n
    shape = NetShape.for_data(params.model, data.shape)
    seed_everything(0)
    untrained = Decoder(shape).to(device).eval()
    fake = sample_uint8(lambda e: untrained(e), n, shape.z_dim, params.evaluate.sample_seed, device)
    out = {
        "real_vs_real": evaluator.score(train_real), "untrained_generator": evaluator.score(fake),
        "feature_extractor": evaluator.extractor, "num_samples": n, "num_real_samples": len(train_real),
        "num_reference": len(evaluator.reference),
        # class shares the samples are judged against: the held-out labels (the reference split itself)
        "heldout_class_counts": label_counts(data.heldout_labels, data.num_classes),
        "class_counts": {"real_vs_real": evaluator.class_counts(train_real), "untrained_generator": evaluator.class_counts(fake)},
        "wall_seconds": wall_seconds(),
    }  # fmt: skip
    write_json(paths.REFERENCE_FILE, out)
    return out


def label_counts(labels, num_classes: int) -> list[int] | None:
    if labels is None or not num_classes:
        return None
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist()
