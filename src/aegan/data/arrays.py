"""Array conversions of `prepare`: any source's images to uint8 (N, C, S, S), labels to codes 0..K-1.

Conversions, the same for every source, in this order: non-square images are
centre-cropped to a square; resized (bilinear, antialiased when shrinking) to
`prepare.image_size`; converted to `prepare.channels` (grey repeated to RGB,
RGB to grey by ITU-R BT.601 luma). Alpha is composited onto white.
"""

from __future__ import annotations

import numpy as np

from aegan.errors import UserError

CHUNK_BYTES = 2**27  # float32 working copy per resize step


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
    if arr.shape[2] == 0 or arr.shape[3] == 0:
        raise UserError(f"{where}: images of {arr.shape[2]} x {arr.shape[3]} pixels (shape {arr.shape}): "
                        "save images at least one pixel high and wide")  # fmt: skip
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
    if labels is not None and np.ndim(labels) == 0:
        raise UserError(f"{where_labels}: one value (shape ()), expected one label per image (N,): save a 1-d array")
    if labels is not None and len(labels) != len(images):
        raise UserError(
            f"{where_labels}: {len(labels)} labels for {len(images)} images in {where_images}: "
            "give exactly one label per image"
        )



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
    # float32 chunks of at most CHUNK_BYTES, whatever the image size: memory stays near the input's own size
    for chunk in np.array_split(images, max(1, min(len(images), -(-images.nbytes * 4 // CHUNK_BYTES)))):
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


def split_sizes(n: int, heldout_fraction: float) -> tuple[int, int]:
    """(training, held-out) images of `n`: the split the prepare stage makes (and check-params predicts)."""
    n_heldout = int(round(n * heldout_fraction))
    return n - n_heldout, n_heldout


def heldout_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    """The seeded held-out split of `n` images (True: held out)."""
    rng = np.random.default_rng(seed)
    n_heldout = split_sizes(n, fraction)[1]  # the split check-params predicts for the built-in sources
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:n_heldout]] = True
    return mask
