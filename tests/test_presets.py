"""`aegan preset NAME`: params.yaml gets the preset's values, keeps every comment, stays valid; the preset's data
settings work on local copies the test writes (nothing is downloaded)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from aegan.params import load_params
from aegan.presets import PRESETS, apply_preset
from aegan.stages.prepare import build_dataset
from test_data_sources import pattern_images, write_idx

REPO = Path(__file__).resolve().parents[1]


def comments(text: str) -> list[str]:
    return [m.group(0).strip() for line in text.splitlines() if (m := re.search(r"#.*$", line))]


def holds(doc: dict, values: dict) -> bool:
    return all(holds(doc[k], v) if isinstance(v, dict) else doc[k] == v for k, v in values.items())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_sets_its_values_and_keeps_every_comment(tmp_path, name):
    path = tmp_path / "params.yaml"
    shutil.copy2(REPO / "params.yaml", path)
    original = path.read_text()
    changed = apply_preset(name, path)
    text = path.read_text()
    assert comments(text) == comments(original)
    doc = yaml.safe_load(text)
    assert holds(doc, PRESETS[name])  # every value the preset names, at any depth; the keys beside them kept
    before = yaml.safe_load(original)
    untouched = [s for s in before if s not in PRESETS[name]]
    assert all(doc[s] == before[s] for s in untouched), "a section the preset does not name changed"
    assert changed and all(key.split(".")[0] in PRESETS[name] for key, _, _ in changed)
    load_params(path)
    assert apply_preset(name, path) == [] and path.read_text() == text  # applying it again changes nothing


def test_an_unknown_preset_is_one_line(tmp_path):
    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    r = subprocess.run([sys.executable, "-m", "aegan.cli", "preset", "imagenet"], cwd=tmp_path, capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip() == "error: unknown preset 'imagenet': choose one of cifar10, fashion-mnist, mnist, stacked-digits, study"
    assert (tmp_path / "params.yaml").read_text() == (REPO / "params.yaml").read_text()


def _preset_params(tmp_path: Path, name: str):
    path = tmp_path / "params.yaml"
    shutil.copy2(REPO / "params.yaml", path)
    apply_preset(name, path)
    return load_params(path)


@pytest.mark.parametrize("name, sub", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_presets_pack_a_local_copy_at_their_size(tmp_path, name, sub):
    raw = tmp_path / "data" / sub / "raw"
    write_idx(raw / "train-images-idx3-ubyte", pattern_images(12, seed=1))
    write_idx(raw / "train-labels-idx1-ubyte", (np.arange(12) % 10).astype(np.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", pattern_images(4, seed=2))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.array([9, 8, 7, 6], dtype=np.uint8))
    prepare = _preset_params(tmp_path, name).prepare.model_copy(update={"root": str(tmp_path / "data"), "download": False})
    x = build_dataset(prepare).arrays["images"]
    assert x.shape == (16, 1, 32, 32) and x.dtype == np.uint8


def test_stacked_digits_preset_packs_three_digits_per_image(tmp_path):
    params = _preset_params(tmp_path, "stacked-digits")
    small = params.prepare.model_copy(update={"stacked_images": 400})  # the preset's data, fewer images
    x = build_dataset(small).arrays["images"]
    assert x.shape == (400, 3, 16, 16) and params.prepare.stacked_images == 20000
    assert params.train.budget > params.pretrain_ae.steps and len(params.seeds) >= 4


def test_cifar10_preset_packs_rgb_at_its_size(tmp_path, monkeypatch):
    import torchvision.datasets

    class FakeCIFAR10:  # what torchvision.datasets.CIFAR10 exposes
        def __init__(self, root, train, download):
            n = 10 if train else 6
            self.data = np.random.default_rng(n).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = [i % 10 for i in range(n)]
            self.classes = [f"c{i}" for i in range(10)]

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    x = build_dataset(_preset_params(tmp_path, "cifar10").prepare).arrays["images"]
    assert x.shape == (16, 3, 32, 32)
