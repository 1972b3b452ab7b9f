"""Stage `prepare`: load the configured source, convert, split, and write the packed dataset and its card.

Everything is loaded and checked in memory first: a bad input leaves an
earlier data/prepared/ untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aegan import paths, wall_seconds
from aegan.atomic import write_json
from aegan.data.arrays import finish_images, heldout_mask
from aegan.data.packed import FORMAT_VERSION, file_sha256, write_packed
from aegan.data.sources import SOURCES
from aegan.errors import UserError
from aegan.params_sections import PrepareParams
from aegan.runnable import check_inside_raw, too_few_for_a_batch, too_few_to_score
from aegan.stage_params import load


def main(params_file: Path) -> dict:
    return run_prepare(load(params_file, "prepare"))


def run_prepare(params, track: bool = True) -> dict:
    check_inside_raw(params.prepare)
    prepared = build_dataset(params.prepare)
    batch_sizes = {f"{k}.batch_size": getattr(params, k).batch_size for k in ("train", "pretrain_ae", "train_scorer")}
    check_dataset_size(prepared, batch_sizes, params.evaluate.prc_neighborhood)
    card = write_prepared(prepared, paths.DATASET_FILE, paths.DATA_CARD_FILE, {"prepare_wall_seconds": wall_seconds()})
    if track:
        log_data_card(card)
    return card


def log_data_card(card: dict) -> None:
    """The data card as an MLflow run: its scalars as params, the card itself as an artifact."""
    from aegan.tracking import Run

    logged = {k: v for k, v in card.items() if k not in ("class_counts", "input", "notes", "prepare_wall_seconds")}
    logged |= {f"input.{k}": v for k, v in card["input"].items() if not isinstance(v, list)}
    run = Run.start("data", {"stage": "prepare", "data_sha256": card["sha256"][:12], "source": card["source"]}, logged)
    run.log_artifact(paths.DATA_CARD_FILE)
    run.log_dataset(paths.DATASET_FILE, card["sha256"], "prepared", {"source": card["source"]})
    run.end()


@dataclass
class Prepared:
    """The packed arrays and the card (less the file hash), all in memory: nothing written yet."""

    arrays: dict[str, np.ndarray]
    card: dict
    where: str  # how errors name the input

    @property
    def num_train(self) -> int:
        return int((~self.arrays["heldout"]).sum())

    @property
    def num_heldout(self) -> int:
        return int(self.arrays["heldout"].sum())



def build_dataset(params: PrepareParams) -> Prepared:
    """Load the source, convert, split and describe it; raises UserError on bad input; writes nothing."""
    loaded = SOURCES[params.source](params)
    images = finish_images(loaded.images, params.image_size, params.channels)
    labels, names, notes = loaded.labels, loaded.class_names, []
    if labels is not None and len(names or []) < 2:
        notes.append(f"labels dropped: one class only ({(names or ['?'])[0]}), so the scorer uses the label-free task")
        labels = names = None
    where = params.path or params.source
    heldout = loaded.heldout if loaded.heldout is not None else heldout_mask(len(images), params.heldout_fraction,
                                                                             params.split_seed)
    if heldout.all() or not heldout.any():
        raise UserError(
            f"{where}: {len(images)} images are too few to split into training and held-out images "
            f"(prepare.heldout_fraction = {params.heldout_fraction}): add images"
        )
    arrays = {"images": images, "heldout": heldout}
    if labels is not None:
        arrays["labels"] = labels
    if loaded.channel_labels is not None:
        arrays["channel_labels"] = loaded.channel_labels
    card = {
        "source": params.source,
        "format_version": FORMAT_VERSION,
        "num_images": int(len(images)),
        "num_train": int((~heldout).sum()),
        "num_heldout": int(heldout.sum()),
        "shape": list(images.shape[1:]),
        "labels": labels is not None,
        "num_classes": len(names) if labels is not None else 0,
        "class_counts": {names[i]: int(c) for i, c in enumerate(np.bincount(labels, minlength=len(names)))}
        if labels is not None else {},
        "split_seed": params.split_seed,
        "heldout_fraction": params.heldout_fraction,
        "input": loaded.info,
        "notes": notes,
    }  # fmt: skip
    return Prepared(arrays, card, where)


def check_dataset_size(prepared: Prepared, batch_sizes: dict[str, int], neighbourhood: int) -> None:
    """Refuse, before anything is written, a training split smaller than one batch, a held-out split too small to
    score."""
    for key, size in batch_sizes.items():
        if size > prepared.num_train:
            raise too_few_for_a_batch(prepared.where, prepared.num_train, prepared.num_heldout, key, size)
    error = too_few_to_score(prepared.where, prepared.num_train, prepared.num_heldout, neighbourhood)
    if error:
        raise error


def write_prepared(prepared: Prepared, out_path: Path, card_path: Path, extra: dict | None = None) -> dict:
    write_packed(out_path, prepared.arrays)
    card = prepared.card | {"sha256": file_sha256(out_path)} | (extra or {})
    write_json(card_path, card)
    return card
