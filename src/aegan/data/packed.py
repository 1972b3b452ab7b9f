"""The packed dataset every source ends as (`data/prepared/dataset.npz`), read by every later stage.

uint8 images (N, C, S, S), integer labels (or none), and a seeded held-out
mask; stacked digits also keep each channel's digit (`channel_labels`, N x 3).
The file is written byte-for-byte deterministically (fixed zip timestamps), so
the same input always gives the same file and the same DVC hash. A small data card (`card.json`: source, counts, shape, classes, content
hash) sits next to it.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aegan.atomic import atomic_path
from aegan.errors import UserError

FORMAT_VERSION = 1


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
    channel_labels: np.ndarray | None = None  # int64 (N, 3): stacked digits only (aegan.modes)

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
    def train_channel_labels(self) -> np.ndarray | None:
        return None if self.channel_labels is None else self.channel_labels[~self.heldout]

    @property
    def heldout_channel_labels(self) -> np.ndarray | None:
        return None if self.channel_labels is None else self.channel_labels[self.heldout]

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
            channel_labels = z["channel_labels"] if "channel_labels" in z.files else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise UserError(f"{path}: not a valid packed dataset ({err}): re-run `aegan prepare`") from None
    if images.dtype != np.uint8 or images.ndim != 4 or heldout.shape != (len(images),):
        raise UserError(f"{path}: unexpected array layout: re-run `aegan prepare`")
    return PackedDataset(images=images, labels=labels, heldout=heldout.astype(bool), sha256=file_sha256(path),
                         channel_labels=channel_labels)

