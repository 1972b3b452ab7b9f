"""Known modes of stacked digits: how many of the 1,000 a generator reaches, and how evenly.

Stacked MNIST (Metz et al. 2017, Unrolled GANs; Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN) puts
three digit images in the three channels of one image. The mode of an image is its three digits read as one
number, 100 d_R + 10 d_G + d_B: 10^3 = 1,000 modes, about equally likely in the data (each channel's digit is
drawn at random). The scorer classifies each channel (scorer.ChannelScorer); this module counts. Per run:

* `modes_captured`: modes with at least one of MODE_SAMPLES generated samples (the papers' count);
* `mode_kl`: KL(generated mode distribution || uniform over the 1,000 modes), in nats.

A leaf module: numpy only, so tests can check it on distributions whose answer is known.
"""

from __future__ import annotations

import math

import numpy as np

DIGITS = 10  # classes of one channel
CHANNELS = 3
NUM_MODES = DIGITS**CHANNELS
# Generated samples per run, the papers' 26,000: 26 per mode if uniform, so a generator that reaches every mode
# misses one by chance with probability e^-26 per mode; a missed mode is a real gap, not sampling noise.
MODE_SAMPLES = 26_000


def mode_index(channel_digits: np.ndarray) -> np.ndarray:
    """(N, 3) digits of channels R, G, B -> their mode 100 d_R + 10 d_G + d_B."""
    digits = np.asarray(channel_digits, dtype=np.int64)
    return digits @ (DIGITS ** np.arange(digits.shape[1] - 1, -1, -1))


def mode_counts(modes: np.ndarray) -> np.ndarray:
    """How many samples fall in each of the NUM_MODES modes."""
    return np.bincount(np.asarray(modes, dtype=np.int64), minlength=NUM_MODES)


def modes_captured(counts: np.ndarray) -> int:
    """Modes with at least one sample (Metz et al., Srivastava et al., Lin et al. count them so)."""
    return int((np.asarray(counts) >= 1).sum())


def mode_kl(counts: np.ndarray) -> float:
    """KL(p || uniform) of the samples' mode distribution p, in nats: 0 when every mode is equally frequent,
    log(NUM_MODES / k) when the samples spread evenly over k modes; NaN without samples."""
    c = np.asarray(counts, dtype=float)
    if c.sum() <= 0:
        return math.nan
    p = c[c > 0] / c.sum()
    return float((p * np.log(p * len(c))).sum())


def mode_figures(counts) -> dict[str, float | int]:
    """The per-run figures from the scorer's mode counts."""
    c = np.asarray(counts)
    return {"modes_captured": modes_captured(c), "mode_kl": mode_kl(c), "mode_samples": int(c.sum())}


def restack(images: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` new stacked images from the channels of `images` (N, C, H, W): channel c of each new image is channel c
    of an image drawn at random (seeded). Restacking the held-out split draws more held-out images the way the
    source drew them, from held-out digits only: a reference of MODE_SAMPLES real images however small the split."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(images), size=(n, images.shape[1]))
    return np.ascontiguousarray(images[picks, np.arange(images.shape[1])])
