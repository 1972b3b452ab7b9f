"""Image conversions used at train and eval time: one implementation of each, imported everywhere.

Images are stored and scored as uint8 in [0, 255] (the packed dataset, torch-fidelity, PNG files)
and seen by the networks as float32 in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_unit_range(images_u8, device="cpu") -> torch.Tensor:
    """uint8 [0, 255] (numpy array or tensor) -> float32 [-1, 1] tensor on `device`."""
    t = torch.as_tensor(images_u8, device=device)
    if t.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {t.dtype}")
    return t.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] tensor -> uint8 [0, 255] on the CPU (what torch-fidelity and image files take)."""
    return images.detach().add(1.0).mul(127.5).round().clamp(0, 255).to("cpu", torch.uint8)


def image_grid(images: torch.Tensor) -> np.ndarray:
    """uint8 (N, C, H, W) images -> one square-ish uint8 grid (H, W, 3), 1-pixel black borders, for PNGs.

    The layout of torchvision's `make_grid(nrow=ceil(sqrt(N)), padding=1)`, without importing torchvision.
    """
    x = np.asarray(images.cpu() if torch.is_tensor(images) else images, dtype=np.uint8)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    n, c, h, w = x.shape
    if n == 1:  # make_grid gives a single image back as it is
        return np.ascontiguousarray(x[0].transpose(1, 2, 0))
    cols = min(int(np.ceil(np.sqrt(n))), n)
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * (h + 1) + 1, cols * (w + 1) + 1, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + col * (w + 1) : 1 + col * (w + 1) + w] = x[i].transpose(1, 2, 0)
    return grid


def save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    from aegan.atomic import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
