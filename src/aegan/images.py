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
    """uint8 (N, C, H, W) images -> one square-ish uint8 grid (H, W, 3) (torchvision's make_grid), for PNGs."""
    from torchvision.utils import make_grid

    grid = make_grid(images.float() / 255, nrow=int(np.ceil(np.sqrt(len(images)))), padding=1)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    from aegan.atomic import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
