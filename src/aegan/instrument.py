"""Graded damage to real images, for checking FID's feature space as an instrument (docs/design.md, the evaluation).

Heusel et al. (2017) showed that Inception FID rises steadily as real images
are disturbed more and more (noise, blur, black rectangles, ...). The
`reference` stage does the same for the scorer: each damage below is applied
at growing levels to a real sample and scored against the held-out split; a
feature space fit to judge generators gives a larger FID at every level.

Every function takes uint8 images (N, C, H, W) and gives uint8 images of the
same shape back; level 0 is the undamaged sample (a copy). Random choices come
from a seeded generator, and the levels of one damage share them (the same
noise field scaled, the same patch centres, the same images replaced first),
so a higher level adds damage to the lower one instead of drawing anew.
A leaf module: it imports only torch (torchvision for the blur, on use).
"""

from __future__ import annotations

import math

import torch

# the levels of each damage, level 0 first (undamaged); fixed so every run checks the same thing
NOISE_SIGMA = (0.0, 8.0, 16.0, 32.0, 64.0)  # std of added Gaussian noise, in pixel units (of 0..255)
BLUR_SIGMA = (0.0, 0.5, 1.0, 1.5, 2.0)  # std of the Gaussian blur, in pixels
OCCLUSION_SIDE = (0.0, 0.25, 0.375, 0.5, 0.625)  # side of a black square, as a share of the image side
DROPPED_CLASSES = (0, 1, 2, 4, 8)  # classes whose images are replaced by images of the other classes
COPIED_SHARE = (0.0, 0.1, 0.25, 0.5, 0.75)  # share of the sample replaced by copies of a few of its images
COPIED_IMAGES = 8  # how many distinct images those copies repeat

LEVELS = {"noise": NOISE_SIGMA, "blur": BLUR_SIGMA, "occlusion": OCCLUSION_SIDE, "dropped_classes": DROPPED_CLASSES,
          "training_copies": COPIED_SHARE}  # fmt: skip
UNITS = {"noise": "σ (pixel values)", "blur": "σ (pixels)", "occlusion": "side (share of image)",
         "dropped_classes": "classes dropped", "training_copies": "share copied"}  # fmt: skip


def _check(images: torch.Tensor) -> None:
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError("expected uint8 images (N, C, H, W)")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


def noise(images: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """Add Gaussian noise of std `sigma` pixel values (one seeded noise field, scaled by sigma), then clip."""
    _check(images)
    if sigma <= 0:
        return images.clone()
    field = torch.randn(images.shape, generator=_generator(seed))
    return _to_uint8(images.float() + sigma * field)


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of std `sigma` pixels; the kernel spans 3 sigma each side, at most the image less one pixel."""
    _check(images)
    if sigma <= 0:
        return images.clone()
    from torchvision.transforms.functional import gaussian_blur

    radius = min(math.ceil(3 * sigma), min(images.shape[-2:]) - 1)  # reflect padding needs radius < side
    return _to_uint8(gaussian_blur(images.float(), [2 * radius + 1] * 2, [float(sigma)] * 2))


def occlusion(images: torch.Tensor, side: float, seed: int) -> torch.Tensor:
    """A black square of `side` x the image side over each image, at a seeded random centre per image.

    The centres are the same at every level, so a larger square covers the smaller one (clipped at the edges
    only where the square would leave the image)."""
    _check(images)
    n, _, h, w = images.shape
    size = round(side * min(h, w))
    out = images.clone()
    if size <= 0:
        return out
    g = _generator(seed)
    cy, cx = torch.randint(0, h, (n,), generator=g), torch.randint(0, w, (n,), generator=g)
    top = (cy - size // 2).clamp(0, h - size)
    left = (cx - size // 2).clamp(0, w - size)
    for i in range(n):
        out[i, :, top[i] : top[i] + size, left[i] : left[i] + size] = 0
    return out


def class_order(num_classes: int, seed: int) -> list[int]:
    """The order classes are dropped in (the first k at level k): seeded, the same at every level."""
    return torch.randperm(num_classes, generator=_generator(seed)).tolist()


def drop_classes(images: torch.Tensor, labels, k: int, seed: int, pool: torch.Tensor | None = None,
                 pool_labels=None) -> torch.Tensor:  # fmt: skip
    """Replace every image of `k` classes by an image of the other classes, keeping the count.

    Replacements come from `pool` (default: the sample itself), kept classes only, in a seeded order, each
    used once before any repeats. Needs labels: a ValueError without, or when `k` leaves no class."""
    _check(images)
    labels = torch.as_tensor(labels).long()
    if len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    if k <= 0:
        return images.clone()
    pool, pool_labels = (images, labels) if pool is None else (pool, torch.as_tensor(pool_labels).long())
    num_classes = int(max(labels.max(), pool_labels.max())) + 1
    if k >= num_classes:
        raise ValueError(f"cannot drop {k} of {num_classes} classes: at least one must remain")
    dropped = torch.tensor(class_order(num_classes, seed)[:k])
    gone = torch.isin(labels, dropped).nonzero().flatten()
    kept = torch.isin(pool_labels, dropped, invert=True).nonzero().flatten()
    if len(kept) == 0:
        raise ValueError("no image of the remaining classes to replace the dropped ones with")
    order = kept[torch.randperm(len(kept), generator=_generator(seed + 1))]
    source = order.repeat(math.ceil(len(gone) / len(order)))[: len(gone)]
    out = images.clone()
    out[gone] = pool[source]
    return out


def training_copies(images: torch.Tensor, share: float, seed: int, copies: int = COPIED_IMAGES) -> torch.Tensor:
    """Replace `share` of the images by copies of `copies` of them (a loss of diversity, as in memorisation).

    One seeded order of the images: the first `copies` are the originals, the last round(share x N) are
    replaced, cycling through the originals; a higher share replaces more of the same order."""
    _check(images)
    n = len(images)
    m = min(round(share * n), n - copies)
    out = images.clone()
    if m <= 0:
        return out
    order = torch.randperm(n, generator=_generator(seed))
    originals, replaced = order[:copies], order[n - m :]
    out[replaced] = images[originals.repeat(math.ceil(m / copies))[:m]]
    return out


def damage(name: str, images: torch.Tensor, level, seed: int, labels=None, pool=None, pool_labels=None) -> torch.Tensor:
    """`images` with damage `name` at `level` (one of LEVELS[name]); dropped_classes needs `labels`."""
    if name == "noise":
        return noise(images, level, seed)
    if name == "blur":
        return blur(images, level)
    if name == "occlusion":
        return occlusion(images, level, seed)
    if name == "dropped_classes":
        return drop_classes(images, labels, int(level), seed, pool, pool_labels)
    if name == "training_copies":
        return training_copies(images, level, seed)
    raise ValueError(f"unknown damage {name!r}: one of {', '.join(LEVELS)}")


def levels(name: str, num_classes: int = 0) -> tuple:
    """The levels of damage `name` that apply: dropped_classes keeps at least one class (none without labels)."""
    if name == "dropped_classes":
        return tuple(k for k in DROPPED_CLASSES if k < num_classes) if num_classes > 1 else ()
    return LEVELS[name]


def rises_monotonically(values: list[float]) -> bool:
    """Strictly increasing: each level's FID above the one before."""
    return all(b > a for a, b in zip(values, values[1:]))
