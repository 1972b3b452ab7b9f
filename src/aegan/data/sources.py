"""The sources `prepare` reads: one small loader each in `SOURCES` (prepare-only code).

Sources (`prepare.source` in params.yaml), one small loader each in `SOURCES`:

- `digits`: scikit-learn's bundled 8x8 digits (the embedded default, offline).
- `stacked-digits`: `prepare.stacked_images` images of three bundled digits, one per channel (Stacked MNIST of
  Metz et al. 2017, made from the 8x8 digits): 1,000 modes, labelled 100 d_R + 10 d_G + d_B (aegan.modes).
  The digit pool is split first (the `digits` source's own split), then each split is stacked from its own
  digits only: no digit image is in both the training and the held-out split.
- `mnist`, `fashion-mnist`, `cifar10`: through torchvision, kept under
  `prepare.root` (downloaded there when `prepare.download` is true and the
  machine is online). The official train and test splits are concatenated; the
  held-out split below is drawn from all of them, like every other source.
- `idx`: `prepare.path` an IDX images file (N x H x W, or N x H x W x C),
  `prepare.labels_path` an optional IDX labels file (N); gzip or not
  (recognised by content, not by name).
- `npz`: `prepare.path` an .npz with `images` (N x H x W, N x H x W x C or
  N x C x H x W; uint8, or float in [0, 1]) and optional `labels` (N).
- `folder`: `prepare.path` a folder of .png/.jpg/.jpeg/.bmp/.webp files, either
  directly in it (no labels) or in class sub-folders (labels from the sorted
  sub-folder names; images found recursively inside each). Hidden files and
  other extensions are ignored.

Conversions, the same for every source, in this order: non-square images are
centre-cropped to a square; resized (bilinear, antialiased when shrinking) to
`prepare.image_size`; converted to `prepare.channels` (grey repeated to RGB,
RGB to grey by ITU-R BT.601 luma). Alpha is composited onto white; image files
are turned upright by their EXIF orientation; 16-bit grey is scaled to 8 bits. Labels are
re-coded 0..K-1 in sorted order of their values (names kept in the card);
labels with fewer than two classes are dropped (a one-class "classifier" would
give the scorer nothing to learn), so the scorer uses its label-free task.

Left-out inputs (the `folder` source, data/folder.py): a file with an image
extension that Pillow cannot decode (not an image, truncated, ...) is SKIPPED;
so are files with other extensions, folders that cannot be listed, symbolic
links to folders and sub-folders without images. Each is counted and named in
a warning on stderr, in the data card (`input.skipped`) and in the report's
Setup section. Scraped image folders often hold a few broken files; refusing
the whole folder for one would be worse, and the card keeps the skip visible.
Losing a whole class (a class sub-folder that cannot be read, or none of whose
images can) is an error unless `prepare.allow_missing_classes` is true; a
folder where no image can be read is an error.

Memory (`idx`, `npz`, data/bounded.py): headers are checked before bodies are
read, and no array may declare more than `prepare.max_input_mib`.

Every problem with the input is a one-line `UserError` naming the file or key
and the fix. Everything is loaded and checked in memory before anything is
written, so a failed `prepare` leaves an earlier `data/prepared/` untouched.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from aegan.data.arrays import as_uint8_nchw, check_counts, encode_labels, finish_images, heldout_mask
from aegan.data.bounded import MIB, read_idx, read_npz
from aegan.data.folder import EXTENSIONS, Listing, decode_image, list_folder
from aegan.errors import UserError, one_line
from aegan.modes import CHANNELS, NUM_MODES, mode_index
from aegan.params_sections import PrepareParams
from aegan.paths import RAW_DIR

MAX_NAMES_IN_WARNING = 20
MAX_NAMES_IN_CARD = 1000


@dataclass
class Loaded:
    """What a source loader returns: uint8 (N, C, H, W) images, C in {1, 3}, any H, W."""

    images: np.ndarray
    labels: np.ndarray | None = None  # int64 codes 0..K-1
    class_names: list[str] | None = None
    info: dict = field(default_factory=dict)  # source-specific card entries (paths, skipped files)
    heldout: np.ndarray | None = None  # a split the source made itself (bool, N); else prepare's seeded split
    channel_labels: np.ndarray | None = None  # stacked-digits: the digit of each channel, int64 (N, 3)



# ---------------------------------------------------------------- helpers shared by the loaders
def existing_path(p: PrepareParams, key: str = "path") -> Path:
    value = getattr(p, key)
    path = Path(value).expanduser()
    try:
        path.stat()
    except FileNotFoundError:
        what = {"idx": "the IDX images file", "npz": "the .npz file", "folder": "the image folder"}[p.source]
        if key == "labels_path":
            what = "the IDX labels file (or remove prepare.labels_path)"
        raise UserError(f"prepare.{key}: {value} does not exist: point prepare.{key} at {what}") from None
    except OSError as err:  # a folder on the way cannot be searched, a link loop, ...
        raise UserError(
            f"prepare.{key}: {value} cannot be reached ({err.strerror or one_line(err)}): check the permissions of "
            "the folders on its way"
        ) from None
    return path


# ---------------------------------------------------------------- sources
def load_digits_source() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (no download): uint8 (N, 1, 8, 8), labels 0..9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    return images, d.target.astype(np.int64)


def load_digits(p: PrepareParams) -> Loaded:
    images, labels = load_digits_source()
    return Loaded(images, labels, [str(i) for i in range(10)])


STACK_STREAM = 1  # the stacking draws get their own random stream, seeded by split_seed like the split


def load_stacked_digits(p: PrepareParams) -> Loaded:
    """Three random digits as the three channels of each image; the pool split before stacking (see top)."""
    digits, labels = load_digits_source()
    pool_heldout = heldout_mask(len(digits), p.heldout_fraction, p.split_seed)  # the `digits` source's split
    heldout = heldout_mask(p.stacked_images, p.heldout_fraction, p.split_seed)
    rng = np.random.default_rng([p.split_seed, STACK_STREAM])
    picks = np.empty((p.stacked_images, CHANNELS), dtype=np.int64)
    for part in (False, True):
        pool, rows = np.flatnonzero(pool_heldout == part), np.flatnonzero(heldout == part)
        if len(rows) and not len(pool):
            raise UserError(f"stacked-digits: prepare.heldout_fraction = {p.heldout_fraction} leaves no held-out "
                            f"digit of the {len(digits)} to stack: raise it")  # fmt: skip
        picks[rows] = pool[rng.integers(0, len(pool), size=(len(rows), CHANNELS))]
    channel_labels = labels[picks]
    info = {"stacked_images": p.stacked_images, "train_digits": int((~pool_heldout).sum()),
            "heldout_digits": int(pool_heldout.sum())}  # fmt: skip
    return Loaded(digits[picks, 0], mode_index(channel_labels), [f"{m:03d}" for m in range(NUM_MODES)], info,
                  heldout=heldout, channel_labels=channel_labels)  # fmt: skip


# torchvision class, folder under root, what a local copy holds
TORCHVISION = {
    "mnist": ("MNIST", "MNIST/raw", "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
              "t10k-labels-idx1-ubyte"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw", "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                      "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "data_batch_1..5, test_batch, batches.meta from cifar-10-python.tar.gz"),
}  # fmt: skip


def load_torchvision(p: PrepareParams) -> Loaded:
    """mnist, fashion-mnist, cifar10: train + test splits, from prepare.root (downloaded there if allowed)."""
    import contextlib
    import socket

    import torchvision.datasets

    cls_name, sub, files = TORCHVISION[p.source]
    cls = getattr(torchvision.datasets, cls_name)
    root = Path(p.root).expanduser()
    where = f"{Path(p.root) / sub}/"
    images, labels, classes = [], [], None
    for train in (True, False):
        old_timeout = socket.getdefaulttimeout()
        try:
            socket.setdefaulttimeout(60)
            with contextlib.redirect_stdout(sys.stderr):  # torchvision prints progress; stdout is the card
                ds = cls(str(root), train=train, download=p.download)
        except Exception as err:  # not found, corrupt, or the download failed (offline): all fixed the same way
            how = ("prepare.download is false" if not p.download
                   else f"the download failed ({type(err).__name__}: {one_line(err)})")  # fmt: skip
            raise UserError(
                f"{p.source}: not found (or corrupt) in {where} and {how}: put a local copy there ({files}), "
                f"or set prepare.root to the folder that holds {sub}/"
            ) from None
        finally:
            socket.setdefaulttimeout(old_timeout)
        data = np.asarray(ds.data)
        images.append(data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2))
        labels.append(np.asarray(ds.targets, dtype=np.int64))
        classes = list(ds.classes)
    return Loaded(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels), classes,
                  {"root": p.root, "splits": "train+test"})  # fmt: skip


def load_idx(p: PrepareParams) -> Loaded:
    images_path = existing_path(p, "path")
    arr = read_idx(images_path, "path", p.max_input_mib * MIB)
    if arr.ndim not in (3, 4):
        raise UserError(
            f"{images_path}: IDX array of shape {arr.shape}, expected images (N x H x W or N x H x W x C): "
            "check that prepare.path is the images file (and labels_path the labels)"
        )
    images = as_uint8_nchw(arr, str(images_path))
    info = {"path": p.path}
    if p.labels_path is None:
        return Loaded(images, info=info)
    labels_path = existing_path(p, "labels_path")
    raw = read_idx(labels_path, "labels_path", p.max_input_mib * MIB)
    if raw.ndim != 1:
        raise UserError(
            f"{labels_path}: IDX array of shape {raw.shape}, expected labels (N): "
            "check that prepare.labels_path is the labels file (and path the images)"
        )
    check_counts(images, raw, str(images_path), str(labels_path))
    labels, names = encode_labels(raw, str(labels_path))
    return Loaded(images, labels, names, info | {"labels_path": p.labels_path})


def load_npz(p: PrepareParams) -> Loaded:
    path = existing_path(p, "path")
    arrays = read_npz(path, ("images", "labels"), p.max_input_mib * MIB)
    images = as_uint8_nchw(arrays["images"], f"{path}: images")
    if "labels" not in arrays:
        return Loaded(images, info={"path": p.path})
    check_counts(images, arrays["labels"], f"{path}: images", f"{path}: labels")
    labels, names = encode_labels(arrays["labels"], f"{path}: labels")
    return Loaded(images, labels, names, {"path": p.path})


def load_folder(p: PrepareParams) -> Loaded:
    folder = existing_path(p, "path")
    if not folder.is_dir():
        raise UserError(f"prepare.path: {p.path} is a file, not a folder: point it at a folder of images ({EXTENSIONS})")
    listing = list_folder(folder, p.path, RAW_DIR)
    classes = listing.classes or [("", listing.loose)]
    n_files = sum(len(files) for _, files in classes)
    if not n_files and not listing.unreadable:
        raise UserError(f"prepare.path: {p.path} has no image file ({EXTENSIONS}) in it or its sub-folders: add "
                        "images or fix the path")  # fmt: skip
    images, per_class, undecodable = [], [], []
    for name, files in classes:
        kept = 0
        for f in files:
            try:
                img = decode_image(f)
            except Exception as err:  # not an image, truncated, decompression bomb, ...: skipped and counted (see top)
                listing.skip_file(f, one_line(err, 80))
                undecodable.append(listing.skipped_files[-1])
                continue
            images.append(finish_images(img[None], p.image_size, p.channels)[0])
            kept += 1
        per_class.append(kept)
    lost = [name for (name, _), kept in zip(listing.classes, per_class) if not kept]
    if lost and not p.allow_missing_classes:
        first = (listing.skipped_folders + listing.skipped_files)[0]
        raise UserError(
            f"prepare.path: {len(lost)} class sub-folder(s) of {p.path} yield no readable image ({', '.join(lost[:5])}"
            f"{', ...' if len(lost) > 5 else ''}; first skipped: {first}): make them readable, or set "
            "prepare.allow_missing_classes: true to go on without them"
        )
    if not images:
        first = (undecodable + listing.skipped_folders + listing.skipped_files)[0]
        raise UserError(f"prepare.path: none of the {n_files} image files in {p.path} could be read (first: {first}): "
                        "replace them with valid images")  # fmt: skip
    info = {"path": p.path} | skipped_entries(listing, p.path, lost)
    stacked = np.stack(images)
    if not listing.classes:
        return Loaded(stacked, info=info)
    kept_names = [name for (name, _), kept in zip(listing.classes, per_class) if kept]
    codes = np.repeat(np.arange(len(kept_names), dtype=np.int64), [k for k in per_class if k])
    return Loaded(stacked, codes, kept_names, info)


def skipped_entries(listing: Listing, shown: str, lost: list[str]) -> dict:
    """What was left out, for the card; and one warning line on stderr naming it (the first names)."""
    files, folders = listing.skipped_files, listing.skipped_folders
    if not files and not folders:
        return {"skipped_files": 0, "skipped_folders": 0}
    names = folders + files
    shown_names = "; ".join(names[:MAX_NAMES_IN_WARNING]) + (f"; and {len(names) - MAX_NAMES_IN_WARNING} more"
                                                             if len(names) > MAX_NAMES_IN_WARNING else "")  # fmt: skip
    dropped = f"; classes dropped (prepare.allow_missing_classes): {', '.join(lost)}" if lost else ""
    print(f"warning: {shown}: skipped {len(files)} file(s) and {len(folders)} folder(s): {shown_names}{dropped} "
          "(data/prepared/card.json lists them once prepare has written it)", file=sys.stderr)  # fmt: skip
    return {"skipped_files": len(files), "skipped_folders": len(folders), "skipped": names[:MAX_NAMES_IN_CARD],
            "missing_classes": lost}  # fmt: skip


SOURCES: dict[str, Callable[[PrepareParams], Loaded]] = {
    "digits": load_digits,
    "stacked-digits": load_stacked_digits,
    "mnist": load_torchvision,
    "fashion-mnist": load_torchvision,
    "cifar10": load_torchvision,
    "idx": load_idx,
    "npz": load_npz,
    "folder": load_folder,
}


