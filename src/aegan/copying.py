"""Copying told apart from generalising: nearest-neighbour distances and Meehan et al.'s data-copying test.

A generator that reproduces its training images (or jittered copies of them) scores a good FID against the
held-out split and still generalises nothing. Two measures tell the two apart, per run and per feature space
(the scorer's features, and pixels):

* Nearest-neighbour (NN) distances (`nn_summary`). For each generated sample, the Euclidean distance to its
  nearest training image, for each held-out image the same (what a fair sample looks like): a copier has
  median d(G, T) well below median d(H, T). And, the split sizes accounted for (the NN distance to a set
  shrinks as the set grows), each sample's distance to a training subset T' of the held-out split's size beside
  its distance to the held-out split: a fair generator has median d(G, T') ~= median d(G, H).

* The C_T test of Meehan, Chaudhuri & Dasgupta (2020), "A Non-Parametric Test to Detect Data-Copying in
  Generative Models" (AISTATS): `Partition` and `CopyingTest`. Its null: generated samples lie as far from the
  training set as held-out images do, cell by cell.

The runs of one strategy (its training seeds) are judged together in the report (report/copying.py `judge`). A
leaf module: numpy, scipy and torch only, so tests can run it on synthetic data where the answer is known.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

CELLS = 10  # k: cells of the partition (k-means on the training set); fewer where the held-out split is small
HELDOUT_PER_CELL = 40  # ... at most one cell per this many held-out images (k = min(CELLS, n // 40), at least 1)
MIN_GENERATED = 20  # Meehan's tau (as a count, tau * m): a cell enters C_T only with >= 20 generated samples
MIN_HELDOUT = 10  # ... and >= 10 held-out images, so its Mann-Whitney Z is near normal
KMEANS_ITERATIONS = 20
CHUNK = 1024  # rows of the distance matrix computed at once (memory: CHUNK x len(reference) floats)


# ------------------------------------------------------------------ nearest neighbours
def as_points(x) -> torch.Tensor:
    """(N, ...) array or tensor -> (N, D) float32 CPU tensor: each row one point."""
    t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    return t.detach().reshape(len(t), -1).float().cpu()


def nn_distances(x, reference, chunk: int = CHUNK) -> np.ndarray:
    """Euclidean distance from each row of `x` to its nearest row of `reference` (torch.cdist, `chunk` rows at a
    time)."""
    x, ref = as_points(x), as_points(reference)
    return np.concatenate([torch.cdist(part, ref).min(1).values.numpy() for part in x.split(chunk)]).astype(float)


def nearest_index(x, centroids, chunk: int = CHUNK) -> np.ndarray:
    """Index of each row's nearest centroid: the cell it falls in."""
    x, c = as_points(x), as_points(centroids)
    return np.concatenate([torch.cdist(part, c).argmin(1).numpy() for part in x.split(chunk)])


def subsample(n_total: int, n: int, seed: int) -> np.ndarray:
    """`n` of `n_total` indices, drawn without replacement (seeded), in increasing order; all when n >= n_total."""
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def nn_summary(generated, train, heldout, seed: int) -> dict[str, float]:
    """Median nearest-neighbour distances of the generated samples G, the training split T and the held-out split H.

    nn_train: G -> T, and heldout_nn_train: H -> T, what a fair sample's distance looks like; both are distances
    to the same set, so they compare whatever the split sizes; ratio = nn_train / heldout_nn_train (< 1: the
    samples sit closer to the training images than unseen images do). nn_train_subset: G -> T', T subsampled
    (seed `seed`) to H's size, beside nn_heldout: G -> H, distances to sets of one size (the NN distance to a set
    shrinks as the set grows). A fair generator has nn_train ~= heldout_nn_train and nn_train_subset ~= nn_heldout.
    """
    train, heldout = as_points(train), as_points(heldout)
    n = min(len(train), len(heldout))
    train_sub, heldout_sub = train[subsample(len(train), n, seed)], heldout[subsample(len(heldout), n, seed)]
    g_t, h_t = (float(np.median(nn_distances(x, train))) for x in (generated, heldout))
    return {"nn_train": g_t, "heldout_nn_train": h_t, "ratio": g_t / h_t if h_t > 0 else math.nan,
            "nn_train_subset": float(np.median(nn_distances(generated, train_sub))),
            "nn_heldout": float(np.median(nn_distances(generated, heldout_sub)))}  # fmt: skip


# ------------------------------------------------------------------ Meehan et al.'s C_T
def mann_whitney_z(generated_d: np.ndarray, heldout_d: np.ndarray) -> float:
    """Z_U of Meehan et al.: the Mann-Whitney U of the generated samples' distances against the held-out images',
    standardised.

        U = sum_i sum_j [ 1{d(q_j) > d(p_i)} + 1/2 * 1{d(q_j) = d(p_i)} ]   (scipy.stats.mannwhitneyu's U1)
        Z_U = (U - m n / 2) / sigma,   sigma^2 = m n / 12 * ((m + n + 1) - sum_t (t^3 - t) / ((m + n)(m + n - 1)))

    over the m generated and n held-out points of one cell (t: sizes of tied groups). Z_U < 0: the generated
    samples are nearer the training set than held-out images are (copying); Z_U ~ N(0, 1) under the null.
    """
    from scipy.stats import mannwhitneyu

    m, n = len(generated_d), len(heldout_d)
    u = float(mannwhitneyu(generated_d, heldout_d, alternative="two-sided", method="asymptotic").statistic)
    _, ties = np.unique(np.concatenate([generated_d, heldout_d]), return_counts=True)
    N = m + n
    var = m * n / 12.0 * ((N + 1) - float((ties**3 - ties).sum()) / (N * (N - 1)))
    return (u - m * n / 2.0) / math.sqrt(var) if var > 0 else 0.0


@dataclass(frozen=True)
class CopyingTest:
    """One run's C_T test in one feature space.

    z: the normalised statistic, N(0, 1) under the null; p = Phi(z), one-sided (small: copying).
    c_t: Meehan et al.'s C_T itself (the held-out-weighted mean of the cells' Z_U).
    cells: per cell [held-out count n_pi, generated count m_pi, Z_U or None when the cell is not used].
    """

    z: float
    p: float
    c_t: float
    cells: list[list]

    @property
    def cells_used(self) -> int:
        return sum(c[2] is not None for c in self.cells)

    def as_dict(self) -> dict:
        return {"z": self.z, "p": self.p, "c_t": self.c_t, "cells_used": self.cells_used, "cells": self.cells}


class Partition:
    """The cells of the test (k-means on the training set) and the held-out images' distances, computed once per
    (training, held-out) pair; `test(generated)` then tests any number of generators against them."""

    def __init__(self, train, heldout, seed: int, cells: int = CELLS):
        from scipy.cluster.vq import kmeans2

        train, heldout = as_points(train), as_points(heldout)
        self.train = train
        k = max(1, min(cells, len(heldout) // HELDOUT_PER_CELL, len(train)))
        with warnings.catch_warnings():  # an empty cell is possible and harmless: no point falls in it
            warnings.filterwarnings("ignore", message="One of the clusters is empty")
            centroids, _ = kmeans2(train.double().numpy(), k, iter=KMEANS_ITERATIONS, minit="++", seed=seed)
        self.centroids = torch.as_tensor(centroids).float()
        self.k = k
        self.heldout_cell = nearest_index(heldout, self.centroids)
        self.heldout_d = nn_distances(heldout, train)

    def test(self, generated) -> CopyingTest:
        """C_T of Meehan et al. and its normalised form.

        With the cells pi of the partition, P_n(pi) the share of held-out images in pi, and Pi_tau the cells that
        hold >= MIN_GENERATED generated samples (their tau) and >= MIN_HELDOUT held-out images:

            C_T = sum_{pi in Pi_tau} P_n(pi) Z_U(pi) / sum_{pi in Pi_tau} P_n(pi)        (the paper's statistic)
            Z   = sum_{pi in Pi_tau} P_n(pi) Z_U(pi) / sqrt(sum_{pi in Pi_tau} P_n(pi)^2)

        Under the null the cells' Z_U are independent N(0, 1) (disjoint points, one fixed partition), so Z ~
        N(0, 1); the one-sided p = Phi(Z) tests "generated samples are closer to the training set than held-out
        images are". NaN when no cell qualifies.
        """
        generated = as_points(generated)
        gen_cell, gen_d = nearest_index(generated, self.centroids), nn_distances(generated, self.train)
        n, cells, num, sq, wsum = len(self.heldout_d), [], 0.0, 0.0, 0.0
        for c in range(self.k):
            held, gen = self.heldout_d[self.heldout_cell == c], gen_d[gen_cell == c]
            z = None
            if len(gen) >= MIN_GENERATED and len(held) >= MIN_HELDOUT:
                z, w = mann_whitney_z(gen, held), len(held) / n
                num, sq, wsum = num + w * z, sq + w * w, wsum + w
            cells.append([len(held), len(gen), z])
        if wsum == 0:
            return CopyingTest(math.nan, math.nan, math.nan, cells)
        z = num / math.sqrt(sq)
        return CopyingTest(z, normal_cdf(z), num / wsum, cells)


def copying_test(generated, train, heldout, seed: int, cells: int = CELLS) -> CopyingTest:
    """Meehan et al.'s test of one generated set (`Partition(train, heldout, seed, cells).test(generated)`)."""
    return Partition(train, heldout, seed, cells).test(generated)


def normal_cdf(z: float) -> float:
    from scipy.stats import norm

    return float(norm.cdf(z))
