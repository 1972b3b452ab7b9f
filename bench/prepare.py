"""Benchmark of the `prepare` stage: pack 60,000 28x28 images from an IDX pair (gzip, as MNIST ships).

    python bench/prepare.py [--size 32] [--channels 1] [--n 60000]

Writes a synthetic MNIST-sized IDX pair into a temporary folder (not timed), then times
the `prepare` stage's build and write on it: reading and decompressing both files, checking them, resizing,
splitting, writing the packed file and its card. Fails (exit 1) above the 30 s budget.
"""

from __future__ import annotations

import argparse
import gzip
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BUDGET_S = 30.0


def write_idx_gz(path: Path, arr: np.ndarray) -> None:
    code = {np.dtype(np.uint8): 0x08}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(gzip.compress(header + arr.tobytes(), compresslevel=6, mtime=0))


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-like: a bright blob on black, so gzip and the resize see realistic content."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    cy, cx = rng.uniform(8, 20, (2, n, 1, 1))
    r = rng.uniform(3, 8, (n, 1, 1))
    images = (255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))).astype(np.uint8)
    return images, rng.integers(0, 10, n).astype(np.uint8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--size", type=int, default=32, choices=(16, 32, 64))
    ap.add_argument("--channels", type=int, default=1, choices=(1, 3))
    args = ap.parse_args()

    from aegan.params import load_params
    from aegan.params_sections import PrepareParams
    from aegan.stages.prepare import build_dataset, write_prepared

    def prepare(params, out: Path, card: Path) -> dict:
        return write_prepared(build_dataset(params), out, card)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images, labels = synthetic_digits(args.n)
        write_idx_gz(tmp / "train-images-idx3-ubyte.gz", images)
        write_idx_gz(tmp / "train-labels-idx1-ubyte.gz", labels)
        params = PrepareParams.model_validate(load_params().prepare.model_dump() | dict(
            source="idx", path=str(tmp / "train-images-idx3-ubyte.gz"), labels_path=str(tmp / "train-labels-idx1-ubyte.gz"),
            image_size=args.size, channels=args.channels))  # fmt: skip
        prepare(params, tmp / "warm" / "dataset.npz", tmp / "warm" / "card.json")  # imports, allocator warm-up
        t0 = time.perf_counter()
        card = prepare(params, tmp / "out" / "dataset.npz", tmp / "out" / "card.json")
        seconds = time.perf_counter() - t0
        size_mb = (tmp / "out" / "dataset.npz").stat().st_size / 1e6
    ok = seconds < BUDGET_S
    print(f"prepare idx: {card['num_images']} images 28x28 -> {card['shape']} uint8, "
          f"{card['num_train']} train / {card['num_heldout']} held-out, {size_mb:.1f} MB packed: "
          f"{seconds:.2f} s ({card['num_images'] / seconds:,.0f} images/s; budget {BUDGET_S:.0f} s: "
          f"{'ok' if ok else 'OVER'})")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
