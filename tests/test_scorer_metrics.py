"""The scorer as a torch-fidelity feature extractor, and the metrics wrapper."""

from __future__ import annotations

import pytest
import torch

from aegan.images import to_uint8
from aegan.errors import UserError
from aegan.metrics import Evaluator, UInt8Images, check_feature_extractor, register_scorer
from aegan.scorer import ScorerNet, load_scorer, rotate_batch, save_scorer
from params_file import validated


def evaluate_params(**overrides):
    """The committed evaluate section with `overrides`: what a params.yaml stating them gives evaluate."""
    return validated({"evaluate": overrides}).evaluate


@pytest.fixture(scope="module")
def scorer_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("scorer") / "scorer.pt"
    save_scorer(ScorerNet(1, 16, 8, 16, 10), "classes", path)
    return path


def test_registered_name_carries_the_weights_hash(scorer_file, tmp_path):
    name = register_scorer(scorer_file)
    assert name.startswith("aegan-scorer-") and len(name) == len("aegan-scorer-") + 12
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    save_scorer(ScorerNet(1, 16, 8, 16, 10), "classes", other)
    assert register_scorer(other) != name


def test_corrupt_or_missing_scorer_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="scorer not found"):
        load_scorer(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a valid scorer checkpoint"):
        load_scorer(bad)


def test_metrics_separate_real_from_noise(scorer_file, digits16):
    real = to_uint8(digits16[:300])
    params = evaluate_params(num_samples=150, kid_subset_size=50, batch_size=100)
    ev = Evaluator(params, scorer_file, real[:150], torch.device("cpu"))
    same = ev.score(real[150:300])
    noise = ev.score(torch.randint(0, 256, (150, 1, 16, 16), dtype=torch.uint8))
    assert set(same) >= {"fid", "kid_mean", "is_mean", "precision", "recall"}
    assert all(torch.isfinite(torch.tensor(v)) for v in same.values())
    assert same["fid"] < noise["fid"] / 5
    assert same["recall"] > noise["recall"]
    assert ev.fid(real[:150]) == pytest.approx(0.0, abs=1e-3)


def test_inception_without_weights_fails_early_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(UserError) as err:
        check_feature_extractor(evaluate_params(feature_extractor="inception"))
    assert "Inception weights not available offline" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="does not exist"):
        check_feature_extractor(evaluate_params(feature_extractor="inception", feature_extractor_weights_path=str(tmp_path / "x.pth")))
    check_feature_extractor(evaluate_params())  # the scorer needs nothing from outside


def test_grayscale_is_repeated_to_rgb_for_inception():
    imgs = torch.zeros(4, 1, 16, 16, dtype=torch.uint8)
    assert UInt8Images(imgs, rgb=True)[0].shape == (3, 16, 16)
    assert UInt8Images(imgs, rgb=False)[0].shape == (1, 16, 16)


def test_rotation_pretext_targets_match_the_rotation():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(8, 1, 1, 1)
    rotated, k = rotate_batch(x, torch.Generator().manual_seed(0))
    for img, r in zip(rotated, k):
        assert torch.equal(img, torch.rot90(x[0], int(r), dims=(1, 2)))
