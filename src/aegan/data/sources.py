"""The sources `prepare` reads: one small loader each in `SOURCES` (prepare-only code).

Sources (`prepare.source` in params.yaml), one small loader each in `SOURCES`:

- `digits`: scikit-learn's bundled 8x8 digits (the embedded default, offline).
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

Unreadable images (the `folder` source): a file with an image extension that
Pillow cannot decode (not an image, truncated, ...) is SKIPPED, with a warning
on stderr that counts them, and the count and the first names are recorded in
the data card. Scraped image folders often hold a few broken files; refusing
the whole folder for one would be worse, and the card keeps the skip visible.
A folder where no image can be read is an error.

Every problem with the input is a one-line `UserError` naming the file or key
and the fix. Everything is loaded and checked in memory before anything is
written, so a failed `prepare` leaves an earlier `data/prepared/` untouched.
"""

from __future__ import annotations

import gzip
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from aegan.data.arrays import as_uint8_nchw, check_counts, composite_on_white, encode_labels, finish_images
from aegan.errors import UserError
from aegan.params import PrepareParams

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
MAX_NAMES_IN_CARD = 20


@dataclass
class Loaded:
    """What a source loader returns: uint8 (N, C, H, W) images, C in {1, 3}, any H, W."""

    images: np.ndarray
    labels: np.ndarray | None = None  # int64 codes 0..K-1
    class_names: list[str] | None = None
    info: dict = field(default_factory=dict)  # source-specific card entries (paths, skipped files)



# ---------------------------------------------------------------- helpers shared by the loaders
def existing_path(p: PrepareParams, key: str = "path") -> Path:
    value = getattr(p, key)
    path = Path(value).expanduser()
    if not path.exists():
        what = {"idx": "the IDX images file", "npz": "the .npz file", "folder": "the image folder"}[p.source]
        if key == "labels_path":
            what = "the IDX labels file (or remove prepare.labels_path)"
        raise UserError(f"prepare.{key}: {value} does not exist: point prepare.{key} at {what}")
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


# torchvision class, folder under root, what a local copy holds
TORCHVISION = {
    "mnist": ("MNIST", "MNIST/raw", "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
              "t10k-labels-idx1-ubyte"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw", "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                      "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "data_batch_1..5, test_batch, batches.meta from cifar-10-python.tar.gz"),
}  # fmt: skip


def _one_line(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
                   else f"the download failed ({type(err).__name__}: {_one_line(err)})")  # fmt: skip
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


IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}  # fmt: skip


def read_idx(path: Path, key: str) -> np.ndarray:
    """One IDX file (gzip-compressed or not, recognised by content) -> numpy array, checked against its header."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"prepare.{key}: {path} cannot be read ({_one_line(err)}): point it at an IDX file") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise UserError(f"{path}: corrupt or truncated gzip ({_one_line(err)}): download or compress it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES or not 1 <= raw[3] <= 4:
        raise UserError(
            f"{path}: not an IDX file (magic number 0x{raw[:4].hex():0<8}, expected 00 00 <type> <dims>, "
            f"e.g. 0x00000803 for images): point prepare.{key} at an IDX file, gzip-compressed or not"
        )
    ndim, dtype = raw[3], IDX_TYPES[raw[2]]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX file (the header alone needs {header} bytes): download or export it again")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims, dtype=np.int64))
    need, have = count * dtype.itemsize, len(raw) - header
    if have != need:
        shape = " x ".join(map(str, dims))
        problem = "truncated IDX file" if have < need else "IDX file longer than its header says"
        raise UserError(
            f"{path}: {problem}: the header declares {shape} values ({need} bytes), the body has {have} bytes: "
            "download or export it again"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims).copy()


def load_idx(p: PrepareParams) -> Loaded:
    images_path = existing_path(p, "path")
    arr = read_idx(images_path, "path")
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
    raw = read_idx(labels_path, "labels_path")
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
    hint = "save it with numpy.savez(path, images=..., labels=...)"
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise UserError(f"{path}: not a readable .npz file ({_one_line(err)}): {hint}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise UserError(f"{path}: a single array (.npy), not an .npz archive: {hint}")
    with z:
        if "images" not in z.files:
            found = ", ".join(z.files) or "no arrays"
            raise UserError(f"{path}: no array named 'images' (found: {found}): {hint}")
        try:
            arr = z["images"]
            raw_labels = z["labels"] if "labels" in z.files else None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise UserError(f"{path}: an array cannot be read ({_one_line(err)}): save numeric arrays: {hint}") from None
    images = as_uint8_nchw(arr, f"{path}: images")
    if raw_labels is None:
        return Loaded(images, info={"path": p.path})
    check_counts(images, raw_labels, f"{path}: images", f"{path}: labels")
    labels, names = encode_labels(raw_labels, f"{path}: labels")
    return Loaded(images, labels, names, {"path": p.path})


def decode_image(path: Path) -> np.ndarray:
    """One image file -> uint8 (C, H, W), C = 1 (grey) or 3 (colour); alpha composited onto white."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.load()
        ImageOps.exif_transpose(im, in_place=True)  # camera photos: upright as displayed
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey
            a = np.round(np.asarray(im, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8)[..., None]
        elif mode in ("1", "L", "F"):
            a = np.asarray(im.convert("L"))[..., None]
        elif mode in ("LA", "La"):
            la = np.asarray(im.convert("LA"))
            a = composite_on_white(la[..., :1], la[..., 1:])
        elif mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
            rgba = np.asarray(im.convert("RGBA"))
            a = composite_on_white(rgba[..., :3], rgba[..., 3:])
        else:  # RGB, P, CMYK, YCbCr, ...
            a = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def _image_files(folder: Path) -> list[Path]:
    """Image files anywhere under `folder` (hidden ones excepted), in sorted order of their relative paths."""
    rel = {f: f.relative_to(folder) for f in folder.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS}
    keep = [f for f, r in rel.items() if f.is_file() and not any(part.startswith(".") for part in r.parts)]
    return sorted(keep, key=lambda f: rel[f].as_posix())


def load_folder(p: PrepareParams) -> Loaded:
    folder = existing_path(p, "path")
    exts = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    if not folder.is_dir():
        raise UserError(f"prepare.path: {p.path} is a file, not a folder: point it at a folder of images ({exts})")
    entries = sorted((e for e in folder.iterdir() if not e.name.startswith(".")), key=lambda e: e.name)
    if not entries:
        raise UserError(
            f"prepare.path: {p.path} is an empty folder: put image files ({exts}) in it, or in class sub-folders"
        )
    top = [e for e in entries if e.is_file() and e.suffix.lower() in IMAGE_EXTENSIONS]
    classes = [(d.name, files) for d in entries if d.is_dir() and (files := _image_files(d))]
    if top and classes:
        raise UserError(
            f"prepare.path: {p.path} holds both image files and class sub-folders ({classes[0][0]}/, ...): "
            "move the loose images into a sub-folder, or remove the sub-folders"
        )
    items = [(f, i) for i, (_, files) in enumerate(classes) for f in files] if classes else [(f, None) for f in top]
    if not items:
        raise UserError(
            f"prepare.path: {p.path} has no image file ({exts}) in it or its sub-folders: add images or fix the path"
        )
    images, codes, skipped = [], [], []
    for f, label in items:
        try:
            img = decode_image(f)
        except Exception as err:  # not an image, truncated, decompression bomb, ...: skipped and counted (see top)
            skipped.append(f"{f.relative_to(folder).as_posix()} ({_one_line(err, 80)})")
            continue
        images.append(finish_images(img[None], p.image_size, p.channels)[0])
        codes.append(label)
    if not images:
        raise UserError(
            f"prepare.path: none of the {len(items)} image files in {p.path} could be read (first: {skipped[0]}): "
            "replace them with valid images"
        )
    if skipped:
        print(f"warning: skipped {len(skipped)} of {len(items)} image files in {p.path} that could not be read "
              f"(first: {skipped[0]})", file=sys.stderr)  # fmt: skip
    info = {"path": p.path, "skipped_unreadable": len(skipped), "skipped_files": skipped[:MAX_NAMES_IN_CARD]}
    stacked = np.stack(images)
    if not classes:
        return Loaded(stacked, info=info)
    return Loaded(stacked, np.asarray(codes, dtype=np.int64), [name for name, _ in classes], info)


SOURCES: dict[str, Callable[[PrepareParams], Loaded]] = {
    "digits": load_digits,
    "mnist": load_torchvision,
    "fashion-mnist": load_torchvision,
    "cifar10": load_torchvision,
    "idx": load_idx,
    "npz": load_npz,
    "folder": load_folder,
}


