"""The `prepare` stage and loading of the packed dataset.

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

Every source ends as one packed file (`data/prepared/dataset.npz`): uint8
images (N, C, S, S), integer labels (or none), and a seeded held-out mask.
The file is written byte-for-byte deterministically (fixed zip timestamps),
so the same input always gives the same file and the same DVC hash. A small
data card (`card.json`: source, counts, shape, classes, content hash) sits
next to it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from aegan.atomic import atomic_path, write_json
from aegan.errors import UserError
from aegan.params import PrepareParams

FORMAT_VERSION = 1
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


def encode_labels(values: np.ndarray, where: str) -> tuple[np.ndarray, list[str]]:
    """Any 1-d integer or string labels -> int64 codes 0..K-1 (sorted values) and their names."""
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise UserError(f"{where}: labels have shape {values.shape}, expected one label per image (N,): save a 1-d array")
    if values.dtype.kind == "f":
        if not np.isfinite(values).all() or (values != np.round(values)).any():
            raise UserError(f"{where}: labels are not whole numbers: save integer class indices or names")
        values = values.astype(np.int64)
    elif values.dtype.kind not in "iubU":
        raise UserError(f"{where}: labels have dtype {values.dtype}: save integers or strings")
    uniques, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64).reshape(-1), [str(u) for u in uniques]


def composite_on_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 colour (..., C) and alpha (..., 1) -> uint8 colour over a white background."""
    a = alpha.astype(np.float32) / 255.0
    return np.round(color.astype(np.float32) * a + 255.0 * (1.0 - a)).clip(0, 255).astype(np.uint8)


def as_uint8_nchw(arr: np.ndarray, where: str) -> np.ndarray:
    """N x H x W, N x H x W x C or N x C x H x W (C in 1, 3, 4), uint8 or float in [0, 1] -> uint8 (N, C, H, W)."""
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        last, second = arr.shape[3] in (1, 3, 4), arr.shape[1] in (1, 3, 4)
        if last and not second:
            arr = arr.transpose(0, 3, 1, 2)
        elif not (second and not last):
            raise UserError(
                f"{where}: shape {arr.shape} is not N x H x W, N x H x W x C or N x C x H x W with C in 1, 3, 4 "
                "(or is ambiguous): save images as N x H x W x C"
            )
    else:
        raise UserError(f"{where}: shape {arr.shape}, expected N x H x W, N x H x W x C or N x C x H x W")
    if len(arr) == 0:
        raise UserError(f"{where}: holds no images (shape {arr.shape}): save at least one image")
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype.kind == "f":
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise UserError(
                f"{where}: float values span [{lo:g}, {hi:g}], expected [0, 1]: rescale them or save uint8 0..255"
            )
        arr = np.round(arr.astype(np.float32) * 255.0).astype(np.uint8)
    else:
        raise UserError(f"{where}: dtype {arr.dtype}, expected uint8 (0..255) or float in [0, 1]: convert the array")
    if arr.shape[1] == 4:
        hwc = arr.transpose(0, 2, 3, 1)
        arr = composite_on_white(hwc[..., :3], hwc[..., 3:]).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(arr)


def check_counts(images: np.ndarray, labels: np.ndarray | None, where_images: str, where_labels: str) -> None:
    if labels is not None and len(labels) != len(images):
        raise UserError(
            f"{where_labels}: {len(labels)} labels for {len(images)} images in {where_images}: "
            "give exactly one label per image"
        )


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


# ---------------------------------------------------------------- conversion
def crop_square(images: np.ndarray) -> np.ndarray:
    """Centre crop of (N, C, H, W) to (N, C, s, s), s = min(H, W)."""
    h, w = images.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return images[..., top : top + s, left : left + s]


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of uint8 (N, C, H, W) to (N, C, size, size)."""
    import torch
    import torch.nn.functional as F

    if images.shape[-2:] == (size, size):
        return images
    out = []
    for chunk in np.array_split(images, max(1, len(images) // 4096)):
        t = torch.from_numpy(chunk.astype(np.float32))
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(t.round().clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out)


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return np.repeat(images, 3, axis=1)
    if have == 3 and channels == 1:  # ITU-R BT.601 luma
        w = np.array([0.299, 0.587, 0.114], dtype=np.float32)[None, :, None, None]
        return np.round((images.astype(np.float32) * w).sum(1, keepdims=True)).clip(0, 255).astype(np.uint8)
    raise UserError(f"cannot convert {have}-channel images to {channels} channels: set prepare.channels to 1 or 3")


def finish_images(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """The conversion every source goes through: centre crop, resize, channel conversion."""
    return np.ascontiguousarray(convert_channels(resize_images(crop_square(images), size), channels))


def heldout_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_heldout = int(round(n * fraction))
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:n_heldout]] = True
    return mask


# ---------------------------------------------------------------- packed file
def write_packed(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz with fixed zip timestamps: identical arrays give identical bytes."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                zf.writestr(info, buf.getvalue())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class PackedDataset:
    images: np.ndarray  # uint8 (N, C, S, S)
    labels: np.ndarray | None  # int64 (N,) or None
    heldout: np.ndarray  # bool (N,)
    sha256: str

    @property
    def train_images(self) -> np.ndarray:
        return self.images[~self.heldout]

    @property
    def heldout_images(self) -> np.ndarray:
        return self.images[self.heldout]

    @property
    def train_labels(self) -> np.ndarray | None:
        return None if self.labels is None else self.labels[~self.heldout]

    @property
    def heldout_labels(self) -> np.ndarray | None:
        return None if self.labels is None else self.labels[self.heldout]

    @property
    def num_classes(self) -> int:
        return 0 if self.labels is None else int(self.labels.max()) + 1

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


def load_packed(path: str | Path) -> PackedDataset:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found: run `aegan prepare` (or `dvc repro prepare`) first")
    try:
        with np.load(path, allow_pickle=False) as z:
            images, heldout = z["images"], z["heldout"]
            labels = z["labels"] if "labels" in z.files else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise UserError(f"{path}: not a valid packed dataset ({err}): re-run `aegan prepare`") from None
    if images.dtype != np.uint8 or images.ndim != 4 or heldout.shape != (len(images),):
        raise UserError(f"{path}: unexpected array layout: re-run `aegan prepare`")
    return PackedDataset(images=images, labels=labels, heldout=heldout.astype(bool), sha256=file_sha256(path))


def to_unit_range(images_u8, device="cpu"):
    """uint8 [0, 255] -> float32 [-1, 1] torch tensor on `device` (the scaling done at load time)."""
    import torch

    t = torch.as_tensor(images_u8, device=device)
    return t.float().div_(127.5).sub_(1.0)


def to_uint8(images):
    """float [-1, 1] torch tensor -> uint8 [0, 255] (what torch-fidelity and image files take)."""
    import torch

    return images.detach().add(1.0).mul(127.5).round().clamp(0, 255).to("cpu", torch.uint8)


def image_grid(images) -> np.ndarray:
    """uint8 (N, C, H, W) images -> one square-ish uint8 grid (H, W, 3) (torchvision's make_grid), for PNGs."""
    from torchvision.utils import make_grid

    grid = make_grid(images.float() / 255, nrow=int(np.ceil(np.sqrt(len(images)))), padding=1)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    from aegan.atomic import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


# ---------------------------------------------------------------- the stage
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
    heldout = heldout_mask(len(images), params.heldout_fraction, params.split_seed)
    if heldout.all() or not heldout.any():
        raise UserError(
            f"{where}: {len(images)} images are too few to split into training and held-out images "
            f"(prepare.heldout_fraction = {params.heldout_fraction}): add images"
        )
    arrays = {"images": images, "heldout": heldout}
    if labels is not None:
        arrays["labels"] = labels
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


def check_dataset_size(prepared: Prepared, batch_sizes: dict[str, int], num_samples: dict[str, int]) -> None:
    """Refuse, before anything is written, data smaller than one batch or than the evaluation sample count."""
    n_train, n_heldout, where = prepared.num_train, prepared.num_heldout, prepared.where
    split = f"{n_train} training / {n_heldout} held-out images"
    for key, size in batch_sizes.items():
        if size > n_train:
            raise UserError(f"{where}: {split}, fewer training images than {key} = {size}: add images or lower {key}")
    for key, n in num_samples.items():
        if n > n_heldout or n > n_train:
            raise UserError(
                f"{where}: {split}, fewer than {key} = {n} in a split: add images, lower {key} "
                "(and evaluate.kid_subset_size), or change prepare.heldout_fraction"
            )


def write_prepared(prepared: Prepared, out_path: Path, card_path: Path, extra: dict | None = None) -> dict:
    write_packed(out_path, prepared.arrays)
    card = prepared.card | {"sha256": file_sha256(out_path)} | (extra or {})
    write_json(card_path, card)
    return card


def prepare(params: PrepareParams, out_path: Path, card_path: Path) -> dict:
    """Build the dataset from its source and write the packed file and its card."""
    return write_prepared(build_dataset(params), out_path, card_path)
