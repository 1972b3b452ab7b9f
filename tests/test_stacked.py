"""Stacked digits, the known-mode benchmark: the source, the mode counting, the per-channel scorer, its params.

Everything runs on the bundled digits (no download); the scorer is a tiny one trained here in seconds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from aegan import modes
from aegan.data.packed import load_packed
from aegan.errors import UserError
from aegan.runnable import check_runnable
from aegan.stages.prepare import build_dataset, write_prepared
from params_file import validated

STACKED = {"source": "stacked-digits", "channels": 3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def prepare_params(**overrides):
    """The committed prepare section with `overrides`: what a params.yaml stating them gives prepare."""
    return validated({"prepare": overrides}).prepare


def stacked(n: int, **kw) -> dict[str, np.ndarray]:
    return build_dataset(prepare_params(**STACKED, stacked_images=n, **kw)).arrays


# ---------------------------------------------------------------- the source
def test_the_source_stacks_three_digits_into_1000_modes():
    a = stacked(4000)
    assert a["images"].shape == (4000, 3, 16, 16) and a["images"].dtype == np.uint8
    assert a["channel_labels"].shape == (4000, 3) and set(np.unique(a["channel_labels"])) == set(range(10))
    assert np.array_equal(a["labels"], modes.mode_index(a["channel_labels"]))
    assert a["labels"].min() >= 0 and a["labels"].max() < modes.NUM_MODES
    assert len(np.unique(a["labels"])) > 950  # 4,000 uniform draws of 1,000 modes leave about 18 out
    # the three channels are different digits: a channel copied to the others would make these equal
    assert (a["channel_labels"][:, 0] != a["channel_labels"][:, 1]).mean() > 0.8


def test_the_training_and_heldout_splits_share_no_digit_image():
    a = stacked(4000)
    channels = a["images"].reshape(-1, 16, 16)
    heldout = np.repeat(a["heldout"], 3)
    train_set = {c.tobytes() for c in channels[~heldout]}
    heldout_set = {c.tobytes() for c in channels[heldout]}
    assert a["heldout"].sum() == 1000
    assert not train_set & heldout_set
    assert len(heldout_set) <= 449 and len(train_set) <= 1348  # the digits source's split of the 1,797 digits


def test_the_source_is_deterministic_and_seeded():
    first, again, other = stacked(500), stacked(500), stacked(500, split_seed=1)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["images"], other["images"])


def test_the_packed_file_keeps_the_channel_labels_and_the_card_the_modes(tmp_path):
    prepared = build_dataset(prepare_params(**STACKED, stacked_images=400))
    card = write_prepared(prepared, tmp_path / "dataset.npz", tmp_path / "card.json")
    data = load_packed(tmp_path / "dataset.npz")
    assert np.array_equal(data.channel_labels, prepared.arrays["channel_labels"])
    assert data.heldout_channel_labels.shape == (100, 3) and data.train_channel_labels.shape == (300, 3)
    assert card["num_classes"] == 1000 and card["input"]["heldout_digits"] == 449
    write_prepared(build_dataset(prepare_params()), tmp_path / "digits.npz", tmp_path / "digits.json")
    assert load_packed(tmp_path / "digits.npz").channel_labels is None  # the default data: no new array


# ---------------------------------------------------------------- params
@pytest.mark.parametrize("prepare, expected", [
    ({**STACKED, "stacked_images": 0}, "prepare.stacked_images = 0 is not allowed: Input should be greater than or "
                                       "equal to 100"),
    ({**STACKED, "stacked_images": 10**7}, "prepare.stacked_images = 10000000 is not allowed: Input should be less"),
    ({**STACKED, "stacked_images": "5000"}, "prepare.stacked_images = '5000' is not allowed"),
    ({"source": "stacked-digits"}, "source 'stacked-digits' makes 3-channel images (one digit per channel): set "
                                   "prepare.channels: 3"),
])  # fmt: skip
def test_a_bad_stacked_param_is_one_line(prepare, expected):
    with pytest.raises(UserError) as err:
        validated({"prepare": prepare})
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_check_params_knows_the_stacked_size():
    ok = validated({"prepare": {**STACKED, "stacked_images": 1000}, "train": {"batch_size": 128}})
    check_runnable(ok, "params.yaml")  # 750 training images: room for a batch
    small = validated({"prepare": {**STACKED, "stacked_images": 100}, "train": {"batch_size": 128}})
    with pytest.raises(UserError, match=r"prepare.source stacked-digits: 75 training / 25 held-out images, fewer "
                                        r"training images than train.batch_size = 128"):  # fmt: skip
        check_runnable(small, "params.yaml")


# ---------------------------------------------------------------- counting modes
def test_uniform_samples_capture_about_every_mode_with_kl_near_zero():
    exact = modes.mode_counts(np.repeat(np.arange(modes.NUM_MODES), 26))
    assert modes.mode_figures(exact) == {"modes_captured": 1000, "mode_kl": 0.0, "mode_samples": 26_000}
    drawn = modes.mode_counts(np.random.default_rng(0).integers(0, modes.NUM_MODES, modes.MODE_SAMPLES))
    assert modes.modes_captured(drawn) >= 999
    assert 0.0 < modes.mode_kl(drawn) < 0.04  # sampling noise alone: about (1000 - 1) / (2 x 26,000) = 0.019


def test_samples_from_ten_modes_capture_ten_with_kl_log_100():
    few = np.random.default_rng(1).choice(np.arange(0, 1000, 100), size=5000)
    counts = modes.mode_counts(few)
    assert modes.modes_captured(counts) == 10
    assert modes.mode_kl(counts) == pytest.approx(math.log(100), abs=0.01)  # near-even over 10: log(1000 / 10)
    even = modes.mode_counts(np.repeat(np.arange(0, 1000, 100), 7))
    assert modes.mode_kl(even) == pytest.approx(math.log(100), abs=1e-12)
    assert math.isnan(modes.mode_kl(np.zeros(modes.NUM_MODES)))


def test_mode_index_reads_the_channels_as_digits():
    assert modes.mode_index(np.array([[1, 2, 3], [9, 0, 9], [0, 0, 0]])).tolist() == [123, 909, 0]


def test_restacking_keeps_each_channel_in_its_place():
    images = np.arange(5 * 3 * 2 * 2, dtype=np.uint8).reshape(5, 3, 2, 2)
    out = modes.restack(images, 200, seed=0)
    assert out.shape == (200, 3, 2, 2)
    for c in range(3):
        sources = {img.tobytes() for img in images[:, c]}
        assert {img.tobytes() for img in out[:, c]} == sources  # every source image drawn, in its own channel
    assert not all(len({int(out[i, c, 0, 0]) // 12 for c in range(3)}) == 1 for i in range(200))  # channels mixed


# ---------------------------------------------------------------- the per-channel scorer
@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    """A tiny digit scorer trained as train_scorer trains it on stacked digits (no MLflow): its file and the data."""
    from aegan.loop import seed_everything, train_loop
    from aegan.scorer import ScorerNet, ScorerTrainer, save_scorer
    from aegan.stages.train_scorer import heldout_scores, training_task

    out = tmp_path_factory.mktemp("stacked")
    write_prepared(build_dataset(prepare_params(**STACKED, stacked_images=2000)), out / "dataset.npz", out / "card.json")
    data = load_packed(out / "dataset.npz")
    task, tensors, channels, outputs = training_task(data, "cpu")
    seed_everything(0)
    net = ScorerNet(channels, 16, 8, 16, outputs)
    train_loop(ScorerTrainer(net, 3e-3, (0.9, 0.999), 0), tensors, steps=250, batch_size=64, seed=0, progress=False)
    accuracy = heldout_scores(net, task, data, 0, "cpu")
    save_scorer(net, task, out / "scorer.pt")
    return out / "scorer.pt", data, task, tensors, accuracy


def test_the_scorer_learns_single_digits_from_the_training_channels(scorer):
    _, data, task, tensors, accuracy = scorer
    assert task == "channel-digits"
    x, y = tensors
    assert x.shape == (1500 * 3, 1, 16, 16) and torch.equal(y, torch.as_tensor(data.train_channel_labels.reshape(-1)))
    assert accuracy["heldout_accuracy"] > 0.8  # chance: 0.1 per channel
    assert len(accuracy["heldout_channel_accuracy"]) == 3 and min(accuracy["heldout_channel_accuracy"]) > 0.75
    assert accuracy["heldout_mode_accuracy"] > 0.5  # chance: 0.001 per mode


def test_the_loaded_scorer_classifies_each_channel_into_the_mode(scorer):
    from aegan.images import to_unit_range
    from aegan.scorer import ChannelScorer, load_scorer

    path, data, _, _, accuracy = scorer
    net, task = load_scorer(path)
    assert isinstance(net, ChannelScorer) and net.config["num_outputs"] == 1000
    x = to_unit_range(data.heldout_images)
    with torch.no_grad():
        pred, features = net(x).argmax(1).numpy(), net.features(x)
    assert features.shape == (500, 3 * 16)
    right = (pred == data.heldout_labels).mean()
    assert right == pytest.approx(accuracy["heldout_mode_accuracy"], abs=1e-6)  # argmax of the joint = each channel's


def test_evaluate_counts_the_modes_of_26000_samples(scorer):
    from aegan.images import to_unit_range
    from aegan.metrics import Evaluator
    from aegan.stages.evaluate import mode_entry
    from aegan.stages.reference import heldout_modes

    path, data, _, _, _ = scorer
    evaluator = Evaluator(validated().evaluate, path, torch.as_tensor(data.heldout_images), torch.device("cpu"))
    params = validated({"prepare": {**STACKED, "stacked_images": 2000}})
    real = to_unit_range(modes.restack(data.heldout_images, modes.MODE_SAMPLES, 2020))
    served = iter(real.split(500))  # a "generator" that draws real held-out images: sample_uint8 asks 500 at a time

    class Real:
        generate = staticmethod(lambda eps: next(served)[: len(eps)])

    class Constant:
        generate = staticmethod(lambda eps: real[:1].expand(len(eps), -1, -1, -1))

    ceiling = heldout_modes(data, evaluator, 2020)
    assert ceiling == mode_entry(Real, evaluator, 8, params, "cpu") | {"restacked_from": 500}
    assert ceiling["mode_samples"] == 26_000 and ceiling["modes_captured"] > 950 and ceiling["mode_kl"] < 0.3
    collapsed = mode_entry(Constant, evaluator, 8, params, "cpu")
    assert collapsed == {"modes_captured": 1, "mode_kl": pytest.approx(math.log(1000)), "mode_samples": 26_000}


# ---------------------------------------------------------------- the report
def test_the_report_tables_carry_the_modes_per_run_and_per_strategy(tmp_path, monkeypatch):
    from aegan.report import tables

    monkeypatch.chdir(tmp_path)
    figures = {("dcgan", 0): (300, 2.0), ("dcgan", 1): (500, 1.0), ("ae_init", 0): (900, 0.2), ("ae_init", 1): None}
    for (s, seed), f in figures.items():
        path = tmp_path / "reports" / "eval" / f"{s}-{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        run = {"strategy": s, "seed": seed, "status": "finished" if f else "diverged", "train_seconds": 1.0,
               "images_per_second": 1.0, "metrics": {"fid": 10.0, "precision": 0.5, "recall": 0.5} if f else {},
               "modes_captured": f[0] if f else None, "mode_kl": f[1] if f else None, "mode_samples": 26_000}
        path.write_text(json.dumps(run))
    runs = tables.collect_runs(["dcgan", "ae_init"], [0, 1])
    assert runs["modes_captured"].tolist()[:3] == [300, 500, 900] and math.isnan(runs["modes_captured"].iloc[3])
    assert runs["mode_kl"].dtype == float
    stab = tables.stability(runs, {}, {}, validated().report).set_index("strategy")
    assert stab.loc["dcgan", "modes_captured_mean"] == 400 and stab.loc["dcgan", "modes_captured_std"] == pytest.approx(
        math.sqrt(2e4))
    assert stab.loc["dcgan", "mode_kl_mean"] == 1.5 and stab.loc["ae_init", "modes_captured_mean"] == 900
    assert math.isnan(stab.loc["ae_init", "mode_kl_std"])  # one finished seed: no spread
    summary = tables.mode_summary(stab.loc["dcgan"])
    assert summary["modes_captured"] == {"mean": 400.0, "std": pytest.approx(141.42, 1e-4)}
    without = stab.loc["dcgan"].copy()
    without[["modes_captured_mean", "mode_kl_mean"]] = math.nan
    assert tables.mode_summary(without) == {}  # other data: summary.json gets no mode entry
