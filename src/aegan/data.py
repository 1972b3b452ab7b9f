"""The `prepare` stage and loading of the packed dataset.

Every source ends as one packed file (`data/prepared/dataset.npz`): uint8
images (N, C, S, S), integer labels (or none), and a seeded held-out mask.
The file is written byte-for-byte deterministically (fixed zip timestamps),
so the same input always gives the same file and the same DVC hash.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aegan.atomic import atomic_path, write_json
from aegan.errors import UserError
from aegan.params import PrepareParams

FORMAT_VERSION = 1


# ---------------------------------------------------------------- sources
def load_digits_source() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (no download): uint8 (N, 1, 8, 8), labels 0..9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    return images, d.target.astype(np.int64)


SOURCES = {"digits": load_digits_source}


# ---------------------------------------------------------------- conversion
def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of uint8 (N, C, H, W) to (N, C, size, size)."""
    import torch
    import torch.nn.functional as F

    if images.shape[-2:] == (size, size):
        return images
    out = []
    for chunk in np.array_split(images, max(1, len(images) // 4096)):
        t = torch.from_numpy(chunk).float()
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


# ---------------------------------------------------------------- the stage
def prepare(params: PrepareParams, out_path: Path, card_path: Path) -> dict:
    images, labels = SOURCES[params.source]()
    images = convert_channels(resize_images(images, params.image_size), params.channels)
    heldout = heldout_mask(len(images), params.heldout_fraction, params.split_seed)
    arrays = {"images": images, "heldout": heldout}
    if labels is not None:
        arrays["labels"] = labels
    write_packed(out_path, arrays)
    card = {
        "source": params.source,
        "format_version": FORMAT_VERSION,
        "num_images": int(len(images)),
        "num_train": int((~heldout).sum()),
        "num_heldout": int(heldout.sum()),
        "shape": list(images.shape[1:]),
        "labels": labels is not None,
        "class_counts": {int(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True))} if labels is not None else {},
        "sha256": file_sha256(out_path),
    }
    write_json(card_path, card)
    return card
