"""The scorer checked as an instrument (aegan.instrument, the reference stage's `instrument` record, its report
section), and precision/recall at equal counts (`Evaluator.score`, the reference floor)."""

from __future__ import annotations

import contextlib
import os
from types import SimpleNamespace

import pytest
import torch

from aegan import instrument
from aegan.report.instrument import instrument_section, instrument_sentence
from aegan.report.render import Document, to_markdown


# ------------------------------------------------------------------ damage functions
def coded(n: int = 60, classes: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, 1, 8, 8) images whose every pixel is 10 x their class + 5, and their labels."""
    labels = torch.arange(n) % classes
    return (labels * 10 + 5).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 8, 8).clone(), labels


@pytest.mark.parametrize("name", list(instrument.LEVELS))
def test_each_damage_keeps_count_shape_dtype_and_level_0_is_identity(name):
    images, labels = coded()
    images[:, :, 2:5, 2:5] = 200  # a bright patch, so blur and occlusion change something
    for i, level in enumerate(instrument.levels(name, num_classes=6)):
        out = instrument.damage(name, images, level, seed=3, labels=labels)
        assert out.shape == images.shape and out.dtype == torch.uint8
        assert torch.equal(out, images) == (i == 0), f"{name} level {level}"
        assert torch.equal(out, instrument.damage(name, images, level, seed=3, labels=labels))  # deterministic


def test_noise_depends_on_the_seed_and_grows_with_sigma():
    images = torch.full((20, 1, 8, 8), 128, dtype=torch.uint8)
    a, b = instrument.noise(images, 16, seed=0), instrument.noise(images, 16, seed=1)
    assert not torch.equal(a, b)
    spread = [instrument.noise(images, s, seed=0).float().std().item() for s in instrument.NOISE_SIGMA]
    assert spread == sorted(spread) and spread[0] == 0


def test_dropped_classes_are_gone_and_replaced_by_the_others():
    images, labels = coded()
    pool, pool_labels = coded(30)
    order = instrument.class_order(6, seed=2)
    for k in (1, 2, 4):
        for source in ({}, {"pool": pool + 1, "pool_labels": pool_labels}):  # pool images marked by +1
            out = instrument.drop_classes(images, labels, k, seed=2, **source)
            classes = set(((out.flatten(1)[:, 0] - 5) // 10).tolist())
            assert classes == set(range(6)) - set(order[:k]) and len(out) == len(images)
            kept = torch.isin(labels, torch.tensor(order[:k]), invert=True)
            assert torch.equal(out[kept], images[kept])  # only the dropped classes' images change
            if source:
                assert set((out[~kept].flatten(1)[:, 0] % 10).tolist()) == {6}  # from the pool
    with pytest.raises(ValueError, match="at least one must remain"):
        instrument.drop_classes(images, labels, 6, seed=0)


def test_training_copies_repeat_a_few_images():
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 4, 4).clone()
    distinct = [len(instrument.training_copies(images, s, seed=0).flatten(1)[:, 0].unique()) for s in instrument.COPIED_SHARE]
    assert distinct == [100 - round(s * 100) for s in instrument.COPIED_SHARE]


def test_levels_without_labels_leave_out_dropped_classes():
    assert instrument.levels("dropped_classes", 0) == ()
    assert instrument.levels("dropped_classes", 3) == (0, 1, 2)
    assert instrument.rises_monotonically([1, 2, 3]) and not instrument.rises_monotonically([1, 3, 3])


# ------------------------------------------------------------------ on the real digits, with a quickly trained scorer
@contextlib.contextmanager
def inside(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder holding the prepared real digits (1348 / 449) and a small scorer trained on them for 150 steps."""
    from aegan import paths
    from aegan.data.packed import load_packed
    from aegan.images import to_unit_range
    from aegan.loop import seed_everything, train_loop
    from aegan.scorer import ScorerNet, ScorerTrainer, save_scorer
    from aegan.stages.prepare import run_prepare
    from params_file import validated

    root = tmp_path_factory.mktemp("instrument")
    params = validated({"evaluate": {"num_samples": 600}})
    with inside(root):
        run_prepare(params, track=False)
        data = load_packed(paths.DATASET_FILE)
        seed_everything(0)
        net = ScorerNet(1, 16, 8, 16, 10)
        x, y = to_unit_range(data.train_images), torch.as_tensor(data.train_labels)
        train_loop(ScorerTrainer(net, 1e-3, (0.9, 0.999), 0), [x, y], steps=150, batch_size=64, seed=0, progress=False)
        save_scorer(net.eval(), "classes", paths.SCORER_FILE)
    return SimpleNamespace(root=root, params=params, data=data)


@pytest.fixture()
def fidelity_calls(monkeypatch):
    """Every torch_fidelity.calculate_metrics call: (len(input1), len(input2), the metrics asked for)."""
    import torch_fidelity

    calls, real = [], torch_fidelity.calculate_metrics

    def spy(**kwargs):
        asked = {m for m in ("fid", "kid", "isc", "prc") if kwargs.get(m)}
        calls.append((len(kwargs["input1"]), len(kwargs["input2"]), asked))
        return real(**kwargs)

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", spy)
    return calls


def test_scorer_fid_rises_with_graded_damage(workspace, monkeypatch, tmp_path):
    """The instrument property on the real digits: FID rises at every level of noise and of dropped classes."""
    from aegan.metrics import heldout_evaluator
    from aegan.stages.reference import instrument_check

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # no Inception weights here
    with inside(workspace.root):
        _, evaluator = heldout_evaluator(workspace.params, torch.device("cpu"))
        record = instrument_check(workspace.params, workspace.data, evaluator, torch.device("cpu"))
    damages = record["scorer"]["damages"]
    assert set(damages) == set(instrument.LEVELS) and record["skipped"] == []
    assert record["num_samples"] == record["num_reference"] == 449
    for name in ("noise", "dropped_classes"):
        assert damages[name]["monotonic"], (name, damages[name]["fid"])
    assert all(d["fid"][0] == damages["noise"]["fid"][0] for d in damages.values())  # one undamaged sample
    assert record["inception"] is None and "not available" in record["inception_skipped"]


def test_inception_fid_is_recorded_beside_where_its_evaluator_exists(workspace, monkeypatch):
    """Where Inception weights are on disk, the same damages are scored on its features too (here: a stand-in)."""
    from aegan.metrics import heldout_evaluator
    from aegan.stages import reference

    with inside(workspace.root):
        _, evaluator = heldout_evaluator(workspace.params, torch.device("cpu"))
        monkeypatch.setattr(reference, "inception_evaluator", lambda *args: evaluator)
        record = reference.instrument_check(workspace.params, workspace.data, evaluator, torch.device("cpu"))
    assert record["inception"] == record["scorer"] and record["inception_skipped"] is None


def test_score_computes_precision_recall_at_equal_counts(workspace, fidelity_calls):
    import torch_fidelity

    from aegan.metrics import UInt8Images, heldout_evaluator

    with inside(workspace.root):
        _, ev = heldout_evaluator(workspace.params, torch.device("cpu"))
        samples = torch.as_tensor(workspace.data.train_images[:600])
        out = ev.score(samples)
        assert fidelity_calls == [(600, 449, {"fid", "kid", "isc"}), (449, 449, {"prc"})]
        assert out["prc_samples"] == 449
        direct = torch_fidelity.calculate_metrics(input1=UInt8Images(samples[:449], False), input2=ev.reference, prc=True,
                                                  prc_neighborhood=3, **ev._kwargs())  # fmt: skip
        assert out["precision"] == pytest.approx(direct["precision"]) and out["recall"] == pytest.approx(direct["recall"])
        fewer = ev.score(samples[:300])  # fewer samples than reference images: the first 300 of each
    assert fidelity_calls[-2:] == [(300, 449, {"fid", "kid", "isc"}), (300, 300, {"prc"})]
    assert fewer["prc_samples"] == 300


def test_reference_floor_uses_the_strategies_prc_counts(workspace, fidelity_calls, monkeypatch, tmp_path):
    from aegan.stages.reference import run_reference

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with inside(workspace.root):
        out = run_reference(workspace.params)
    floor, untrained = out["real_vs_real"], out["untrained_generator"]  # the untrained generator is scored as a strategy is
    assert out["num_real_samples"] == 600 and out["num_samples"] == 600 and out["num_reference"] == 449
    assert floor["prc_samples"] == untrained["prc_samples"] == 449
    assert fidelity_calls[:4] == [(600, 449, {"fid", "kid", "isc"}), (449, 449, {"prc"})] * 2
    assert set(out["instrument"]["scorer"]["damages"]) == set(instrument.LEVELS)


# ------------------------------------------------------------------ the report section
def reference_with(fids: dict[str, list[float]], inception: bool = False) -> dict:
    damages = {name: {"unit": instrument.UNITS[name], "levels": list(instrument.LEVELS[name]), "fid": f}
               for name, f in fids.items()}  # fmt: skip
    table = {"feature_extractor": "aegan-scorer-000000000000", "damages": damages}
    return {"instrument": {"num_samples": 449, "num_reference": 449, "skipped": [], "scorer": table,
                           "inception": table if inception else None,
                           "inception_skipped": None if inception else "Inception weights not available offline"}}


def test_report_section_says_not_monotonic_where_fid_falls():
    inputs = SimpleNamespace(reference=reference_with({"noise": [1, 2, 3, 4, 5], "blur": [1, 3, 2, 4, 5]}))
    doc = Document("t")
    instrument_section(doc, inputs)
    md = to_markdown(doc)
    noise_row, blur_row = (next(line for line in md.splitlines() if line.startswith(f"| Gaussian {n}")) for n in ("noise", "blur"))
    assert noise_row.endswith("| yes |") and "not monotonic" in blur_row and "level 2" in blur_row
    assert "FID (scorer features)" in md and "Inception weights not available offline" in md
    assert "blur" in instrument_sentence(inputs) and "does not rise" in instrument_sentence(inputs)


def test_report_section_with_inception_and_all_rising():
    inputs = SimpleNamespace(reference=reference_with({"noise": [1, 2, 3, 4, 5]}, inception=True))
    doc = Document("t")
    instrument_section(doc, inputs)
    md = to_markdown(doc)
    assert "FID (Inception)" in md and "not monotonic" not in md
    assert instrument_sentence(inputs).startswith("The scorer's FID rises monotonically with every damage tried")


def test_report_section_absent_without_the_check():
    doc = Document("t")
    instrument_section(doc, SimpleNamespace(reference={}))
    assert doc.blocks == [] and instrument_sentence(SimpleNamespace(reference={})) is None
