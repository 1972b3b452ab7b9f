"""Copying told apart from generalising (aegan.copying, stages/evaluate.py, report/copying.py).

Every test runs where the answer is known: a copier (training images plus a small jitter) must be flagged, a
fair generator (fresh draws from the same distribution) must not, and over many seeded null repeats the tests
must flag no more often than their nominal level. Nothing is downloaded.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

import fabricate as F
from aegan import copying as C
from aegan.report import copying as R

ALPHA = 0.05


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def mixture(rng: np.random.Generator, n: int, dim: int = 8, modes: int = 5) -> np.ndarray:
    """n draws from one fixed Gaussian mixture (its centres do not depend on `rng`)."""
    centres = np.random.default_rng(1234).normal(0.0, 3.0, (modes, dim))
    return centres[rng.integers(0, modes, n)] + rng.normal(0.0, 1.0, (n, dim))


def copier(rng: np.random.Generator, train, n: int, jitter: float):
    """n training images (drawn with replacement) plus Gaussian jitter: a generator that memorised its data."""
    x = torch.as_tensor(np.asarray(train))[torch.as_tensor(rng.integers(0, len(train), n))]
    return x + jitter * torch.as_tensor(rng.normal(0.0, 1.0, tuple(x.shape)), dtype=x.dtype)


def false_alarm_bound(repeats: int, alpha: float) -> int:
    """The most false alarms a level-alpha test may show in `repeats` null repeats: the binomial's 99th percentile
    (a rate above it would be an excess at the 1% level, not chance)."""
    return int(stats.binom.ppf(0.99, repeats, alpha))


# ------------------------------------------------------------------ the pieces
def test_mann_whitney_z_is_scipys_normal_approximation_with_ties():
    rng = np.random.default_rng(0)
    tied = rng.integers(0, 5, 25) * 1.0, rng.integers(0, 5, 35) * 1.0
    for a, b in ((rng.normal(size=30), rng.normal(0.5, 1, 40)), tied):
        z = C.mann_whitney_z(a, b)
        p = stats.mannwhitneyu(a, b, alternative="less", method="asymptotic", use_continuity=False).pvalue
        assert stats.norm.cdf(z) == pytest.approx(p, rel=1e-9)


def test_nn_distances_are_the_nearest_euclidean_distances():
    rng = np.random.default_rng(1)
    x, ref = rng.normal(size=(50, 6)), rng.normal(size=(70, 6))
    expected = np.sqrt(((x[:, None] - ref[None]) ** 2).sum(-1)).min(1)
    assert np.allclose(C.nn_distances(x, ref, chunk=16), expected, atol=1e-4)


def test_training_subset_is_seeded_and_of_the_heldout_size():
    a, b = C.subsample(1348, 449, seed=3), C.subsample(1348, 449, seed=3)
    assert np.array_equal(a, b) and len(set(a)) == 449 and not np.array_equal(a, C.subsample(1348, 449, seed=4))
    assert np.array_equal(C.subsample(10, 20, seed=0), np.arange(10))


# ------------------------------------------------------------------ known answers
def test_a_copier_is_flagged_and_a_fair_generator_is_not_on_mixtures():
    rng = np.random.default_rng(2)
    train, heldout, fair = mixture(rng, 600), mixture(rng, 200), mixture(rng, 800)
    part = C.Partition(train, heldout, seed=0)
    copy = part.test(copier(rng, train, 800, jitter=0.1))
    assert copy.p < 1e-6 and copy.z < -5 and copy.cells_used == part.k == 5
    fine = part.test(fair)
    assert fine.p >= ALPHA and abs(fine.z) < 3
    summary = C.nn_summary(copier(rng, train, 800, 0.1), train, heldout, seed=0)
    assert summary["ratio"] < 0.5 and summary["nn_train_subset"] < summary["nn_heldout"]
    assert C.nn_summary(fair, train, heldout, seed=0)["ratio"] == pytest.approx(1.0, abs=0.1)


@pytest.fixture(scope="module")
def digit_spaces(digits16):
    """The 1797 digits split three ways (training, held-out, fresh) and two spaces to compare them in: pixels, and
    the 64-d features of a (seeded, untrained) scorer network."""
    from aegan.scorer import ScorerNet

    perm = torch.as_tensor(np.random.default_rng(0).permutation(len(digits16)))
    splits = digits16[perm[:900]], digits16[perm[900:1249]], digits16[perm[1249:]]  # 900 / 349 / 548
    torch.manual_seed(0)
    net = ScorerNet(1, 16, 16, 64, 10).eval()
    with torch.no_grad():
        spaces = {"pixels": lambda x: x, "features": lambda x: net.features(x)}
    return splits, spaces


@pytest.mark.parametrize("space", ["pixels", "features"])
def test_jittered_training_digits_are_flagged_fresh_digits_are_not(digit_spaces, space):
    (train, heldout, fresh), spaces = digit_spaces
    embed = spaces[space]
    rng = np.random.default_rng(5)
    with torch.no_grad():
        copies = embed(copier(rng, train, 1000, jitter=0.05).clamp(-1, 1))  # about 6 grey levels of noise
        t, h, f = embed(train), embed(heldout), embed(fresh)
    part = C.Partition(t, h, seed=0)
    copy, fair = part.test(copies), part.test(f)
    assert copy.p < 1e-6, copy
    assert fair.p >= ALPHA, fair
    assert C.nn_summary(copies, t, h, 0)["ratio"] < 0.8 < C.nn_summary(f, t, h, 0)["ratio"]


# ------------------------------------------------------------------ nominal levels
NULL_REPEATS = 1000


def test_one_run_false_alarm_rate_is_at_its_nominal_level():
    """H0: generated samples drawn like the held-out ones, independent of the training set; 1000 seeded repeats
    (measured: 49 of 1000 = 4.9% flagged at alpha 0.05, 4 = 0.4% at alpha 0.01; Z mean -0.04, std 0.98).
    Slack: at most the binomial's 99th percentile of false alarms (67 at 0.05, 18 at 0.01)."""
    rng = np.random.default_rng(10)
    tests = [C.Partition(mixture(rng, 200), mixture(rng, 80), seed=i).test(mixture(rng, 240))
             for i in range(NULL_REPEATS)]  # fmt: skip
    p, z = np.array([t.p for t in tests]), np.array([t.z for t in tests])
    assert np.isfinite(p).all()
    assert (p < ALPHA).sum() <= false_alarm_bound(NULL_REPEATS, ALPHA)
    assert (p < 0.01).sum() <= false_alarm_bound(NULL_REPEATS, 0.01)
    assert abs(z.mean()) < 0.15 and 0.9 < z.std() < 1.1


def test_strategy_judge_keeps_its_level_although_seeds_share_the_heldout_images():
    """Two fair strategies x three seeds per repeat, every run scored against the same training and held-out
    sets (as in the pipeline), 300 seeded repeats. Stouffer's Z with the runs' null correlation keeps the level;
    plain Stouffer (sum z / sqrt(r)), which takes the runs as independent, would not (measured: 15 of 300 =
    5.0% vs 43 = 14.3% for one strategy; family-wise 10 of 300 = 3.3% for the Holm-adjusted flags). Slack: the
    binomial's 99th percentile, 24 of 300."""
    rng = np.random.default_rng(11)
    repeats, seeds = 300, 3
    family = combined = plain = 0
    for i in range(repeats):
        part = C.Partition(mixture(rng, 240), mixture(rng, 80), seed=i)
        tests = {(s, "x"): [part.test(mixture(rng, 320)).as_dict() for _ in range(seeds)] for s in ("a", "b")}
        verdicts = R.judge(tests, ALPHA)
        family += any(v.flagged for v in verdicts)
        combined += verdicts[0].p < ALPHA
        plain += stats.norm.cdf(sum(r["z"] for r in tests[("a", "x")]) / math.sqrt(seeds)) < ALPHA
    bound = false_alarm_bound(repeats, ALPHA)
    assert family <= bound and combined <= bound
    assert plain > bound  # the dependence is real: ignoring it would raise false alarms


def test_judge_flags_the_copier_among_fair_strategies_and_holm_counts_every_test():
    rng = np.random.default_rng(12)
    train, heldout = mixture(rng, 400), mixture(rng, 150)
    part = C.Partition(train, heldout, seed=0)
    tests = {("fair", "x"): [part.test(mixture(rng, 500)).as_dict() for _ in range(3)],
             ("copier", "x"): [part.test(copier(rng, train, 500, 0.3)).as_dict() for _ in range(3)],
             ("none", "x"): []}  # fmt: skip
    by = {v.strategy: v for v in R.judge(tests, ALPHA)}
    assert by["copier"].flagged and not by["fair"].flagged and not by["none"].flagged
    # Holm over the two tests with a p (the strategy without runs is not counted): the smaller p doubled
    assert by["copier"].p_holm == pytest.approx(min(1.0, 2 * by["copier"].p))
    assert by["fair"].p_holm == pytest.approx(max(by["copier"].p_holm, by["fair"].p))
    assert math.isnan(by["none"].p) and by["copier"].runs == 3


def test_runs_on_other_cells_are_combined_as_fully_correlated():
    cells = [[45, 200, 0.1], [44, 200, None]]
    assert R.run_correlation(cells, [[46, 200, 0.1], [43, 200, None]]) == 1.0
    assert R.run_correlation(cells, None) == 1.0
    assert R.run_correlation(cells, cells) == pytest.approx(math.sqrt(200 * 200 / (246 * 246)))
    z, p = R.combine_runs([{"z": -1.0}, {"z": -1.0}])  # no cell detail: the mean, always valid
    assert z == pytest.approx(-1.0) and p == pytest.approx(stats.norm.cdf(-1.0))


# ------------------------------------------------------------------ the evaluate stage
@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny evaluation on the real digits: an untrained generator and an untrained scorer, 64 samples."""
    from aegan import paths
    from aegan.data.packed import load_packed
    from aegan.generator import save_generator
    from aegan.nets import NetShape
    from aegan.scorer import ScorerNet, save_scorer
    from aegan.stages.evaluate import run_evaluate
    from aegan.stages.prepare import run_prepare
    from aegan.strategies import get_strategy
    from params_file import validated

    repo = tmp_path_factory.mktemp("copying_eval")
    mp = pytest.MonkeyPatch()
    mp.chdir(repo)
    try:
        params = validated({"evaluate": {"num_samples": 64, "kid_subset_size": 32}})
        run_prepare(params, track=False)
        data = load_packed(paths.DATASET_FILE)
        torch.manual_seed(0)
        net = ScorerNet(data.shape[0], data.shape[1], 8, 16, data.num_classes)
        save_scorer(net.eval(), "classes", paths.SCORER_FILE)
        dcgan = get_strategy("dcgan")
        strategy = dcgan(params.dcgan, NetShape.for_data(params.model, data.shape), params.train.optimizer)
        run_dir = paths.run_dir("dcgan", 0)
        run_dir.mkdir(parents=True)
        save_generator(strategy, run_dir / "generator.pt")
        from aegan.data.packed import file_sha256

        (run_dir / "run.json").write_text(json.dumps({"strategy": "dcgan", "seed": 0, "status": "finished",
                                                      "generator_sha256": file_sha256(run_dir / "generator.pt")}))
        result = run_evaluate(params, "dcgan", 0)
        on_disk = json.loads(paths.eval_file("dcgan", 0).read_text())
        from aegan.stages.evaluate import scorer_embedding

        mp.setattr(paths, "SCORER_FILE", repo / "no-scorer.pt")
        missing = scorer_embedding(params, torch.device("cpu"))
    finally:
        mp.undo()
    return result, on_disk, missing


def test_evaluate_writes_the_copying_measures_and_fid_against_training(evaluated):
    result, on_disk, _ = evaluated
    assert on_disk["copying"] == json.loads(json.dumps(result["copying"]))
    entry = on_disk["copying"]
    assert (entry["samples"], entry["heldout"], entry["train_subset"]) == (64, 449, 449)
    for space in ("features", "pixels"):
        e = entry[space]
        assert {"nn_train", "heldout_nn_train", "ratio", "nn_train_subset", "nn_heldout", "z", "p", "c_t",
                "cells_used", "cells"} <= set(e)  # fmt: skip
        assert e["nn_train"] > 0 and e["ratio"] == pytest.approx(e["nn_train"] / e["heldout_nn_train"])
        assert sum(c[0] for c in e["cells"]) == 449 and sum(c[1] for c in e["cells"]) == 64
        assert e["cells_used"] == sum(c[2] is not None for c in e["cells"])
    assert math.isfinite(on_disk["fid_train"]) and on_disk["fid_train"] > 0


def test_without_a_scorer_the_feature_comparison_is_skipped_and_said_so(evaluated):
    _, _, missing = evaluated
    assert isinstance(missing, str) and "no-scorer.pt not found" in missing


# ------------------------------------------------------------------ the report
@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """The fabricated pipeline (tests/fabricate.py: `ae_init` copies, `dcgan` is fair) and its report."""
    from aegan.report.copying import copying_sentence
    from aegan.report.inputs import read_inputs
    from aegan.stages.report import run_report

    repo = tmp_path_factory.mktemp("copying_report")
    with F.in_repo(repo):
        params = F.fabricate(repo)
        run_report(params)
        sentence = copying_sentence(read_inputs(params))
    summary = json.loads((repo / "reports/summary.json").read_text())
    return summary, (repo / "reports/report.md").read_text(), sentence


def section_row(md: str, strategy: str) -> list[str]:
    body = md.split("## Copying or generalising\n", 1)[1].split("\n## ", 1)[0]
    line = next(line for line in body.splitlines() if line.startswith(f"| `{strategy}` |"))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_report_flags_the_fabricated_copier_and_not_the_fair_strategy(reported):
    summary, md, sentence = reported
    assert section_row(md, "ae_init")[-1] == "**copying** (features, pixels)"
    assert section_row(md, "dcgan")[-1] == "no" and section_row(md, "ae_disc")[-1] == "no"
    assert "`ae_init`" in sentence and "`dcgan`" not in sentence and "closer to their training images" in sentence
    assert summary["ae_init"]["copying"]["flagged"] and not summary["dcgan"]["copying"]["flagged"]


def test_report_copying_figures_are_the_fabricated_ones(reported):
    summary, md, _ = reported
    row = section_row(md, "ae_init")
    assert row[1:5] == ["3", "0.5 / 2.1", "0.238", "1.9 / 2.6"]  # features: G→T / H→T, ratio, G→T′ / G→H
    assert row[-3:-1] == ["32", "10.7"]  # FID vs held-out beside FID vs train′ (fid / 3)
    features = summary["ae_init"]["copying"]["features"]
    # Stouffer with the null correlation of runs sharing the held-out cells: rho = m / (m + n + 1) per cell
    n, m = np.array(F.COPY_CELLS_HELDOUT, float), F.COPY_CELLS_GENERATED
    rho = float((n**2 * m / (m + n + 1)).sum() / (n**2).sum())
    z = sum(F.COPY_Z["features"]["ae_init"]) / math.sqrt(3 + 6 * rho)
    assert features["z"] == pytest.approx(z) and features["p"] == pytest.approx(stats.norm.cdf(z))
    assert features["z_mean"] == pytest.approx(-6.0) and features["ratio"] == pytest.approx(0.5 / 2.1)
    # Holm over the 6 (strategy, space) tests, as statsmodels adjusts them
    from statsmodels.stats.multitest import multipletests

    keys = [(s, space) for s in F.STRATEGIES for space in ("features", "pixels")]
    p = [summary[s]["copying"][space]["p"] for s, space in keys]
    expected = multipletests(p, method="holm")[1]
    assert [summary[s]["copying"][space]["p_holm"] for s, space in keys] == pytest.approx(list(expected))
    assert summary["ae_disc"]["copying"]["pixels"]["z"] == pytest.approx(2.0)  # one finished seed: its own Z
