"""Stage `reference`: the real-vs-real floor and an untrained generator, scored under the evaluation protocol.

The floor scores training images against the held-out split: as many as the
generators are scored with (`evaluate.num_samples`), or the whole training
split where it is smaller (the counts are recorded and reported). Precision
and recall compare equal counts, as the strategies' do (`Evaluator.score`):
the first n training images against the n held-out ones.

It also checks the scorer as an instrument (`instrument_check`): the FID of a
real sample, damaged at growing levels (aegan.instrument), must rise at every
level, as Heusel et al. (2017) showed for Inception FID.

On stacked digits it also counts the modes of real held-out images
(`heldout_modes`), the ceiling of the generators' `modes_captured` and
`mode_kl`: MODE_SAMPLES images restacked from the held-out split's channels
(aegan.modes.restack), so the count is the generators' whatever the split's
size, and every digit in them is one the scorer never trained on.
"""

from __future__ import annotations

import numpy as np
import torch

from aegan import instrument, modes, paths, wall_seconds
from aegan.atomic import write_json
from aegan.compute import setup as setup_compute
from aegan.errors import UserError
from aegan.generator import sample_uint8
from aegan.images import image_grid, save_png
from aegan.loop import seed_everything
from aegan.metrics import Evaluator, heldout_evaluator, inception_weights
from aegan.nets import Decoder, NetShape
from aegan.stage_params import load



def main(params_file) -> dict:
    return run_reference(load(params_file, "reference"))


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
        "instrument": instrument_check(params, data, evaluator, device),
        "wall_seconds": wall_seconds(),
    }  # fmt: skip
    if data.channel_labels is not None:  # stacked digits only: the default reference gets no new key
        out["heldout_modes"] = heldout_modes(data, evaluator, params.evaluate.sample_seed)
    write_json(paths.REFERENCE_FILE, out)
    return out


def heldout_modes(data, evaluator: Evaluator, seed: int) -> dict | None:
    """modes_captured and mode_kl of MODE_SAMPLES real images restacked from the held-out split (see top)."""
    real = torch.as_tensor(modes.restack(data.heldout_images, modes.MODE_SAMPLES, seed))
    counts = evaluator.class_counts(real)
    if counts is None:
        return None
    return modes.mode_figures(np.asarray(counts)) | {"restacked_from": len(data.heldout_images)}


def label_counts(labels, num_classes: int) -> list[int] | None:
    if labels is None or not num_classes:
        return None
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist()


# ------------------------------------------------------------------ the scorer as an instrument
def instrument_check(params, data, evaluator: Evaluator, device) -> dict:
    """FID of a real sample under each graded damage (aegan.instrument), with the scorer (and Inception where its
    weights are on disk), and whether it rises at every level.

    The sample: as many training images as the held-out split holds (a seeded subset, `evaluate.sample_seed`),
    scored against the held-out split, so level 0 is the real-vs-real FID at equal counts. Dropped classes
    are replaced by the training images left out of the sample (labels needed; skipped without).
    """
    seed = params.evaluate.sample_seed
    sample, context = real_sample(data, seed)
    graded = {name: [(level, instrument.damage(name, sample, level, seed, **context)) for level in levels]
              for name in instrument.LEVELS if (levels := instrument.levels(name, data.num_classes))}  # fmt: skip
    inception = inception_evaluator(params, data, evaluator, device)
    return {
        "num_samples": len(sample), "num_reference": len(evaluator.reference), "seed": seed,
        "skipped": [name for name in instrument.LEVELS if name not in graded],  # dropped_classes without labels
        "scorer": fid_table(scorer_evaluator(params, data, evaluator, device), sample, graded),
        "inception": None if inception is None else fid_table(inception, sample, graded),
        "inception_skipped": None if inception is not None else "Inception weights not available offline",
    }  # fmt: skip


def real_sample(data, seed: int) -> tuple[torch.Tensor, dict]:
    """A seeded subset of the training split, the held-out split's size (or all of it where it is smaller), and
    what `instrument.damage` needs to drop classes: its labels, and the rest of the split as replacements."""
    train = torch.as_tensor(data.train_images)
    n = min(len(data.heldout_images), len(train))
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    if data.train_labels is None:
        return train[pick[:n]], {}
    labels = torch.as_tensor(data.train_labels)
    rest = pick[n:] if len(pick) > n else pick  # no image left over: replacements from the sample itself
    return train[pick[:n]], {"labels": labels[pick[:n]], "pool": train[rest], "pool_labels": labels[rest]}


def fid_table(evaluator: Evaluator, sample: torch.Tensor, graded: dict) -> dict:
    """Per damage: its levels, FID at each (level 0, the undamaged sample, scored once), and whether it rises."""
    undamaged = evaluator.fid(sample)
    out = {"feature_extractor": evaluator.extractor, "damages": {}}
    for name, items in graded.items():
        fids = [undamaged if level == 0 else evaluator.fid(images) for level, images in items]
        out["damages"][name] = {"unit": instrument.UNITS[name], "levels": [level for level, _ in items], "fid": fids,
                                "monotonic": instrument.rises_monotonically(fids)}  # fmt: skip
    return out


def scorer_evaluator(params, data, evaluator: Evaluator, device) -> Evaluator:
    """The pipeline's evaluator where it uses the scorer; otherwise one on the scorer's features."""
    if not evaluator.rgb:
        return evaluator
    scorer = params.evaluate.model_copy(update={"feature_extractor": "scorer"})
    return Evaluator(scorer, paths.SCORER_FILE, torch.as_tensor(data.heldout_images), device)


def inception_evaluator(params, data, evaluator: Evaluator, device) -> Evaluator | None:
    """The pipeline's evaluator where it uses Inception; else one on Inception's features where its weights are
    on disk (checked offline); else None (nothing is downloaded)."""
    if evaluator.rgb:
        return evaluator
    inception = params.evaluate.model_copy(update={"feature_extractor": "inception"})
    try:
        inception_weights(inception)
    except UserError:
        return None
    return Evaluator(inception, paths.SCORER_FILE, torch.as_tensor(data.heldout_images), device)
