"""End to end: `dvc repro` on a small RGB image folder without labels, in a temporary copy of the repo.

Checks that colour, label-free data goes through every stage: the networks take 3 channels, the scorer
falls back to the rotation task (and the report says so), the metrics are finite, the sample grid is in colour.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from params_file import complete
from pipeline import copy_repo, run

PARAMS = {
    "prepare": {"source": "folder", "path": "data/raw/shapes", "image_size": 16, "channels": 3,
                "heldout_fraction": 0.25, "split_seed": 0},
    "model": {"z_dim": 8, "width": 8},
    "compute": {"device": "cpu"},
    "train_scorer": {"steps": 20, "batch_size": 16, "width": 8, "feature_dim": 16},
    "pretrain_ae": {"steps": 20, "batch_size": 16},
    "train": {"budget": 40, "batch_size": 16, "log_every": 5, "eval_every": 10, "eval_samples": 16, "grid_samples": 16},
    "evaluate": {"num_samples": 16, "kid_subset_size": 8, "batch_size": 16},
    "report": {"title": "e2e: RGB folder without labels"},
    "strategies": ["dcgan"],
    "seeds": [0],
    "dcgan": {},
}  # fmt: skip


def colour_shapes(folder: Path, n: int = 80) -> None:
    """n RGB 16x16 PNGs: a coloured square on a differently coloured background; flat folder, so no labels."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.empty((16, 16, 3), dtype=np.uint8)
        img[:] = rng.integers(0, 256, 3, dtype=np.uint8)
        y, x = rng.integers(0, 10, 2)
        img[y : y + 6, x : x + 6] = rng.integers(0, 256, 3, dtype=np.uint8)
        Image.fromarray(img).save(folder / f"shape{i:03d}.png")


@pytest.mark.e2e
def test_dvc_repro_on_rgb_folder_without_labels(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    (repo / "params.yaml").write_text(yaml.safe_dump(complete(PARAMS), sort_keys=False))
    colour_shapes(repo / "data" / "raw" / "shapes")
    out = run(["dvc", "repro"], repo, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    card = json.loads((repo / "data/prepared/card.json").read_text())
    assert (card["source"], card["labels"], card["shape"]) == ("folder", False, [3, 16, 16])
    assert (card["num_train"], card["num_heldout"]) == (60, 20)
    with np.load(repo / "data/prepared/dataset.npz") as z:
        assert "labels" not in z.files and z["images"].shape == (80, 3, 16, 16)
        assert (z["images"][:, 0] != z["images"][:, 1]).any()  # colour kept, not greyed

    scorer = json.loads((repo / "models/scorer.json").read_text())
    assert scorer["task"] == "rotation"
    report = (repo / "reports/report.md").read_text()
    assert "rotation task" in report and "class coverage is not available" in report
    assert (repo / "reports/report.html").is_file() and not (repo / "reports/figures/class_coverage.png").exists()

    summary = json.loads((repo / "reports/summary.json").read_text())
    for metric in ("fid", "kid_mean", "is_mean", "precision", "recall"):
        value = summary["dcgan"][metric]["mean"]
        assert value is not None and math.isfinite(value), (metric, value)
    assert summary["dcgan"]["diverged"] == 0

    with Image.open(repo / "models/runs/dcgan-0/samples.png") as im:
        assert im.mode == "RGB"
        grid = np.asarray(im).astype(int)
    # three generated channels: a grey (1-channel) generator's grid would repeat one channel exactly
    assert (grid[..., 0] != grid[..., 1]).any() and (grid[..., 1] != grid[..., 2]).any()
