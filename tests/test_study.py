"""The study (params.yaml `study`): settings drawn as declared, the best chosen on search seeds only, the report's
statements on synthetic study results where the answer is known."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from aegan.errors import UserError
from aegan.params import validate_params
from aegan.report.study import Study, per_setting, summary_table
from aegan.report.claims import spread_tests
from aegan.report.comparison import compare_with_baseline
from aegan.stages.study_best import best_setting
from aegan.study import setting
from params_file import committed_text, complete

REPO = Path(__file__).resolve().parents[1]
ON = {"settings": [1, 2, 3, 4, 5], "seeds": [0, 1], "fresh_seeds": [2, 3]}


def params_with(study: dict, **top):
    raw = complete()
    raw["study"] = {**raw["study"], **study}
    raw.update(top)
    raw.setdefault("seeds", [0, 1, 2, 3])
    return validate_params(raw)


def draw(params, strategy: str, k: int):
    return setting(params.study, strategy, k, params.train.optimizer, getattr(params, strategy))


def test_setting_0_is_the_strategys_own_and_drawn_settings_stay_in_their_ranges():
    p = params_with(ON)
    own = draw(p, "ae_disc", 0)
    assert own.optimizer == p.train.optimizer and own.knobs == p.ae_disc
    for k in range(1, 40):
        s = draw(p, "ae_disc", k)
        assert 5e-5 <= s.optimizer.lr <= 1e-3 and 0.0 <= s.optimizer.beta1 <= 0.9
        assert 0.3 <= s.knobs.gamma <= 1.0 and 0.001 <= s.knobs.lambda_k <= 0.03
        assert s.optimizer.beta2 == p.train.optimizer.beta2  # not searched: kept
        assert s.knobs.disc_width == p.ae_disc.disc_width  # an int knob is not searched


def test_lr_is_drawn_log_uniform():
    """Half the draws fall below the geometric mean of the range (log-uniform), not the arithmetic one."""
    p = params_with(ON)
    lrs = np.array([draw(p, "dcgan", k).optimizer.lr for k in range(1, 401)])
    geometric = math.sqrt(5e-5 * 1e-3)
    assert 0.42 < (lrs < geometric).mean() < 0.58
    assert (lrs < (5e-5 + 1e-3) / 2).mean() > 0.7


def test_four_drawn_settings_put_one_value_in_each_quarter_of_every_range():
    """Sobol points, not clumping random draws: 4 settings try lr in each quarter of its log range (one near
    BEGAN's own 1e-4), beta1 and each knob in each quarter of theirs."""
    p = params_with(ON)
    settings = [draw(p, "ae_disc", k) for k in range(1, 5)]

    def quarters(values, low, high, log=False):
        f = (lambda v: math.log(v)) if log else (lambda v: v)
        return sorted(int(4 * (f(v) - f(low)) / (f(high) - f(low))) for v in values)

    assert quarters([s.optimizer.lr for s in settings], 5e-5, 1e-3, log=True) == [0, 1, 2, 3]
    assert quarters([s.optimizer.beta1 for s in settings], 0.0, 0.9) == [0, 1, 2, 3]
    assert quarters([s.knobs.gamma for s in settings], 0.3, 1.0) == [0, 1, 2, 3]
    assert quarters([s.knobs.lambda_k for s in settings], 0.001, 0.03, log=True) == [0, 1, 2, 3]
    assert any(5e-5 <= s.optimizer.lr <= 1.5e-4 for s in settings)  # BEGAN's own learning rate, 1e-4, is tried


def test_setting_k_shares_its_optimizer_across_strategies_and_does_not_depend_on_how_many_settings():
    p, more = params_with(ON), params_with({**ON, "settings": list(range(1, 12))})
    for k in (1, 2, 5):
        assert draw(p, "dcgan", k).optimizer == draw(p, "vaegan", k).optimizer  # common random numbers
        assert draw(p, "ae_disc", k) == draw(more, "ae_disc", k)
    assert draw(p, "ae_disc", 1).knobs != draw(p, "ae_disc", 2).knobs
    other = params_with({**ON, "draw_seed": 7})
    assert draw(p, "ae_disc", 1).optimizer != draw(other, "ae_disc", 1).optimizer


def test_a_strategys_knob_range_changes_only_its_own_draws():
    p = params_with(ON)
    wider = params_with({**ON, "ae_manifold": {"lambda_m": {"low": 1.0, "high": 2.0, "log": False}}})
    assert draw(p, "ae_disc", 3) == draw(wider, "ae_disc", 3)
    assert 1.0 <= draw(wider, "ae_manifold", 3).knobs.lambda_m <= 2.0


@pytest.mark.parametrize("study, top, message", [
    ({"settings": [1, 2], "seeds": [0], "fresh_seeds": [0, 1]}, {}, "share a seed"),
    ({"settings": [1, 2], "seeds": [0], "fresh_seeds": [2]}, {}, "two fresh_seeds"),
    ({"settings": [1, 2], "seeds": [0], "fresh_seeds": [2, 9]}, {}, "seed 9 is not in seeds"),
    ({"settings": [], "seeds": [0], "fresh_seeds": []}, {}, "settings is empty"),
    ({"settings": [1, 1]}, {}, "distinct ids"),
    ({"settings": [0, 1], "seeds": [0], "fresh_seeds": [2, 3]}, {}, "ids >= 1"),
    ({"lr": {"low": 1e-3, "high": 1e-4, "log": True}}, {}, "must be below high"),
    ({"lr": {"low": 0.0, "high": 1e-4, "log": True}}, {}, "log range needs low > 0"),
    ({"ae_disc": {"gama": {"low": 0.3, "high": 0.7, "log": False}}}, {}, "ae_disc has no float knob 'gama'"),
    ({"ae_disc": {"disc_width": {"low": 4.0, "high": 8.0, "log": False}}}, {}, "no float knob 'disc_width'"),
])  # fmt: skip
def test_a_wrong_study_is_one_line(study, top, message):
    with pytest.raises(UserError, match=message):
        params_with(study, **top)


def test_a_range_the_knob_refuses_is_named_when_drawn():
    p = params_with({**ON, "ae_disc": {"gamma": {"low": 0.5, "high": 3.0, "log": False}}})
    with pytest.raises(UserError, match="narrow study.ae_disc's ranges"):
        for k in range(1, 20):
            draw(p, "ae_disc", k)


def test_the_best_setting_is_the_lowest_mean_among_those_that_finished_every_seed():
    assert best_setting({"0": 30.0, "1": None, "2": 12.5, "3": 12.5}) == 2
    assert best_setting({"0": None, "1": None}) is None


def test_a_best_setting_0_is_the_pipelines_own_run_copied(tmp_path, monkeypatch):
    """Setting 0 under a fresh seed is `train@<strategy>-<seed>`: copied byte for byte, run.json marked."""
    import json

    from aegan import paths
    from aegan.stages.study_best import copy_own_run

    monkeypatch.chdir(tmp_path)
    own = paths.run_dir("dcgan", 2)
    own.mkdir(parents=True)
    for name, data in (("generator.pt", b"weights"), ("history.csv", b"step\n1\n"), ("samples.png", b"png")):
        (own / name).write_bytes(data)
    (own / "run.json").write_text(json.dumps({"strategy": "dcgan", "seed": 2, "status": "finished"}))
    p = params_with(ON)
    info = copy_own_run("dcgan", 2, paths.study_best_dir("dcgan", 2), draw(p, "dcgan", 0))
    out = paths.study_best_dir("dcgan", 2)
    assert all((out / n).read_bytes() == (own / n).read_bytes() for n in ("generator.pt", "history.csv", "samples.png"))
    written = json.loads((out / "run.json").read_text())
    assert written == info and written["study_setting"] == 0 and written["status"] == "finished"
    assert written["setting.lr"] == p.train.optimizer.lr
    with pytest.raises(UserError, match="models/runs/dcgan-3/run.json: not found"):
        copy_own_run("dcgan", 3, paths.study_best_dir("dcgan", 3), draw(p, "dcgan", 0))


def test_the_preset_turns_the_study_on_and_the_command_is_one_line_on_bad_input(tmp_path):
    from aegan.presets import apply_preset

    path = tmp_path / "params.yaml"
    path.write_text(committed_text())
    apply_preset("study", path)
    doc = yaml.safe_load(path.read_text())
    assert doc["study"]["settings"] and doc["study"]["fresh_seeds"]
    r = subprocess.run([sys.executable, "-m", "aegan.cli", "study-train", "--strategy", "nope", "--setting", "1",
                        "--seed", "0"], cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("error: unknown strategy 'nope'") and len(r.stderr.splitlines()) == 1


# ------------------------------------------------------------------ the report's statements on synthetic studies
def synthetic(rng, spreads: dict[str, float], n_settings=8, seeds=(0, 1), centre=30.0, collapse: set[str] = frozenset()):
    """Study runs: each strategy's settings' FIDs spread around `centre` by its own factor (log-normal)."""
    rows = []
    for s, spread in spreads.items():
        for k in range(n_settings):
            level = centre * math.exp(rng.normal(0, spread))
            for seed in seeds:
                recall = 0.02 if s in collapse else 0.6
                rows.append({"strategy": s, "setting": k, "seed": seed, "status": "finished",
                             "fid": level * math.exp(rng.normal(0, 0.02)), "kid_mean": 0.01, "recall": recall,
                             "precision": 0.7, "collapsed": recall < 0.5 * 0.7, "diverged": False, "lr": 1e-4 * (k + 1)})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_strategy_far_more_sensitive_to_its_setting_is_less_stable_over_settings():
    rng = np.random.default_rng(0)
    runs = synthetic(rng, {"dcgan": 0.05, "wild": 1.0, "calm": 0.05}, n_settings=10)
    settings = per_setting(runs)
    spreads = {t.strategy: t for t in spread_tests(settings.assign(status="finished"), "dcgan", 0.05, unit="settings")}
    assert spreads["wild"].verdict.startswith("less stable") and "over settings" in spreads["wild"].verdict
    assert spreads["calm"].verdict.startswith("no clear difference")


def test_the_table_counts_collapse_and_names_the_settings_that_avoid_it():
    rng = np.random.default_rng(1)
    runs = synthetic(rng, {"dcgan": 0.1, "ae_disc": 0.1}, n_settings=4, collapse={"ae_disc"})
    runs.loc[(runs["strategy"] == "ae_disc") & (runs["setting"] == 2), ["recall", "collapsed"]] = [0.6, False]
    runs.loc[(runs["strategy"] == "dcgan") & (runs["setting"] == 3) & (runs["seed"] == 1),
             ["status", "fid", "diverged"]] = ["diverged", np.nan, True]  # fmt: skip
    settings = per_setting(runs)
    best = runs[runs["setting"] == 0].assign(seed=lambda d: d["seed"] + 2)
    table = summary_table(runs, settings, best).set_index("strategy")
    assert table.loc["ae_disc", "collapsed_runs"] == 6 and table.loc["ae_disc", "settings_clean"] == [2]
    assert table.loc["dcgan", "diverged_runs"] == 1 and table.loc["dcgan", "settings_finished"] == 3
    assert 3 not in table.loc["dcgan", "settings_clean"]
    d = settings[settings["strategy"] == "dcgan"].set_index("setting")["fid"]
    assert table.loc["dcgan", "best_setting"] == int(d.idxmin()) and math.isnan(d[3])
    assert table.loc["dcgan", "median_fid"] == pytest.approx(d.dropna().median())


def test_the_findings_say_which_setting_avoids_collapse_and_how_its_best_fared_on_fresh_seeds():
    from aegan.report.study_text import study_findings

    rng = np.random.default_rng(1)
    runs = synthetic(rng, {"dcgan": 0.1, "ae_disc": 0.1}, n_settings=4, collapse={"ae_disc"})
    runs.loc[(runs["strategy"] == "ae_disc") & (runs["setting"] == 2), ["recall", "collapsed"]] = [0.6, False]
    settings = per_setting(runs)
    best = runs[runs["setting"] == 0].assign(seed=lambda d: d["seed"] + 2)  # ae_disc's collapse on both fresh seeds
    study = Study(runs, settings, best, summary_table(runs, settings, best), compare_with_baseline(best, "dcgan", 0.95),
                  spread_tests(settings.assign(status="finished"), "dcgan", 0.05, unit="settings"))  # fmt: skip
    lines = study_findings(study, params_with({"settings": [1, 2, 3], "seeds": [0, 1], "fresh_seeds": [2, 3]}))
    (line,) = [line for line in lines if line.startswith("`ae_disc`")]
    best_setting = study.table.set_index("strategy").loc["ae_disc", "best_setting"]
    assert line == (f"`ae_disc` diverged in 0 and collapsed in 6 of 8 study runs: setting 2 avoids it on every seed; "
                    f"its best setting ({best_setting}), trained again on fresh seeds, failed in 2 of 2 runs.")


def test_study_findings_say_better_only_where_the_fresh_seeds_show_it():
    from aegan.report.study_text import study_findings

    rng = np.random.default_rng(2)
    runs = synthetic(rng, {"dcgan": 0.1, "good": 0.1, "same": 0.1}, n_settings=3)
    best = pd.DataFrame([{"strategy": s, "seed": seed, "status": "finished", "fid": mu + rng.normal(0, 1.0),
                          "kid_mean": 0.01, "recall": 0.6, "precision": 0.7}
                         for s, mu in (("dcgan", 30.0), ("good", 15.0), ("same", 30.0)) for seed in range(6)])  # fmt: skip
    settings = per_setting(runs)
    study = Study(runs, settings, best, summary_table(runs, settings, best), compare_with_baseline(best, "dcgan", 0.95),
                  spread_tests(settings.assign(status="finished"), "dcgan", 0.05, unit="settings"))  # fmt: skip
    p = params_with({"settings": [1, 2], "seeds": [0, 1], "fresh_seeds": [2, 3]})
    lines = study_findings(study, p)
    assert "better than `dcgan` at its best setting: `good`; worse: none" in lines[0]


def test_with_no_difference_the_study_calls_a_strategy_less_or_more_stable_at_about_the_nominal_rate():
    """300 simulated studies, every strategy's settings spread alike: the rate of any spread-over-settings call
    (Holm over 5 strategies, alpha 0.05) stays within 2 standard errors of 5% or below."""
    rng = np.random.default_rng(3)
    names = {"dcgan": 0.3, "a": 0.3, "b": 0.3, "c": 0.3, "d": 0.3, "e": 0.3}
    calls, repeats = 0, 300
    for _ in range(repeats):
        settings = per_setting(synthetic(rng, names, n_settings=5))
        tests = spread_tests(settings.assign(status="finished"), "dcgan", 0.05, unit="settings")
        calls += any(math.isfinite(t.p_adjusted) and t.p_adjusted < 0.05 for t in tests)
    rate, se = calls / repeats, math.sqrt(0.05 * 0.95 / repeats)
    assert rate <= 0.05 + 2 * se, rate


def test_a_corrupt_study_evaluation_stops_the_best_setting_stage_in_one_line(tmp_path, monkeypatch):
    from aegan import paths
    from aegan.stages.study_best import setting_scores

    monkeypatch.chdir(tmp_path)
    for k in (0, 1):
        path = paths.study_eval_file("dcgan", k, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"metrics": {"fid": 30.0}}' if k == 0 else '{"metrics": ')
    with pytest.raises(UserError, match=r"reports/eval/study/dcgan/s1-0.json: not valid JSON"):
        setting_scores("dcgan", [0, 1], [0])
    paths.study_eval_file("dcgan", 1, 0).write_text('{"metrics": {"fid": 20.0}}')
    assert setting_scores("dcgan", [0, 1], [0]) == {"0": 30.0, "1": 20.0}
