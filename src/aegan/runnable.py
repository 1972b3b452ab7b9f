"""What validates but would only fail once the pipeline runs (`aegan check-params`, `prepare`): input outside
data/raw/, a batch larger than the training split, a held-out split too small to score."""

from __future__ import annotations

from pathlib import Path

from aegan.errors import UserError
from aegan.params import Params, load_params
from aegan.params_sections import FILE_SOURCES, PrepareParams
from aegan.paths import PARAMS_FILE

# images each built-in source packs (train and test splits together), so check-params knows the training split
SOURCE_SIZES = {"digits": 1797, "mnist": 70_000, "fashion-mnist": 70_000, "cifar10": 60_000}
BATCH_KEYS = ("train.batch_size", "pretrain_ae.batch_size", "train_scorer.batch_size")


def source_size(p: PrepareParams) -> int | None:
    """Images a built-in source packs (stacked-digits: as many as it is asked for); None for a file source."""
    return p.stacked_images if p.source == "stacked-digits" else SOURCE_SIZES.get(p.source)


def too_few_for_a_batch(where: str, n_train: int, n_heldout: int, key: str, size: int) -> UserError:
    return UserError(f"{where}: {n_train} training / {n_heldout} held-out images, fewer training images than "
                     f"{key} = {size}: lower {key}, lower prepare.heldout_fraction or add images")  # fmt: skip


def too_few_to_score(where: str, n_train: int, n_heldout: int, neighbourhood: int) -> UserError | None:
    """The held-out split every generator is scored against must hold more images than precision/recall's
    neighbourhood (each image's k nearest others), which also gives FID a covariance; None if it does."""
    if n_heldout > neighbourhood:
        return None
    return UserError(f"{where}: {n_train} training / {n_heldout} held-out images, too few held-out images to score "
                     f"(precision and recall compare each with its evaluate.prc_neighborhood = {neighbourhood} "
                     f"nearest others, so at least {neighbourhood + 1}): raise prepare.heldout_fraction or add images")


def check_inside_raw(p: PrepareParams) -> None:
    """Refuse input outside data/raw/: DVC tracks that folder only, so it would never see such a file change.

    Paths are compared after resolving symbolic links: a link under data/raw/ to a file elsewhere is refused too.
    """
    from aegan.paths import RAW_DIR

    raw = RAW_DIR.resolve()
    keys = ("path", "labels_path") if p.source in FILE_SOURCES else ("root",)
    for key in keys:
        value = getattr(p, key)
        if value is None:
            continue
        where = Path(value).expanduser().resolve()
        if where != raw and raw not in where.parents:
            how = "copy the files" if key == "root" else "copy it"
            raise UserError(
                f"prepare.{key}: {value} is outside {RAW_DIR}/ (resolved: {where}), so DVC would never see it "
                f"change: {how} under {RAW_DIR}/ (e.g. {RAW_DIR / Path(value).name}) and set "
                f"prepare.{key} to that path"
            )


def check_runnable(params: Params, source: str) -> None:
    """What validates but would only fail once the pipeline runs: input outside data/raw/, a batch larger than
    the training split of a built-in source (a file source's size is known once prepare has read it)."""
    check_inside_raw(params.prepare)
    n = source_size(params.prepare)
    if n is None:
        return
    from aegan.data.arrays import split_sizes

    n_train, n_heldout = split_sizes(n, params.prepare.heldout_fraction)
    for key in BATCH_KEYS:
        section, _, field = key.partition(".")
        size = getattr(getattr(params, section), field)
        if size > n_train:
            raise too_few_for_a_batch(f"{source}: prepare.source {params.prepare.source}", n_train, n_heldout, key, size)
    error = too_few_to_score(f"{source}: prepare.source {params.prepare.source}", n_train, n_heldout,
                             params.evaluate.prc_neighborhood)  # fmt: skip
    if error:
        raise error


def check_params_file(path: str | Path = PARAMS_FILE) -> Params:
    """`aegan check-params`: every section valid and stated, nothing that can only fail later."""
    params = load_params(path)
    check_runnable(params, str(path))
    from aegan.fits import check_fits

    check_fits(params, str(path))
    return params
