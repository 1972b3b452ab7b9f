"""The winner the registry may call `best`: the best mean of the primary measure, decided only when the report's own
test (Welch over seeds on log FID, Holm across the others) finds it better than every other strategy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aegan.report.winner import choose


def runs_of(fids: dict[str, list[float]], status: dict[str, list[str]] | None = None) -> pd.DataFrame:
    rows = [{"strategy": s, "seed": i, "fid": f, "kid_mean": f / 100,
             "status": (status or {}).get(s, ["finished"] * len(v))[i]} for s, v in fids.items() for i, f in enumerate(v)]  # fmt: skip
    return pd.DataFrame(rows)


def test_a_clear_winner_is_decided_and_names_the_closest_other():
    runs = runs_of({"dcgan": [50, 55, 60, 58], "ae_init": [20, 21, 19, 20.5], "vaegan": [30, 31, 29, 32]})
    w = choose(runs, "fid", 0.95)
    assert (w.strategy, w.decided, w.closest, w.strategies) == ("ae_init", True, "vaegan", 3)
    assert w.ratio == pytest.approx(np.exp(np.mean(np.log([20, 21, 19, 20.5])) - np.mean(np.log([30, 31, 29, 32]))))
    assert w.mean == pytest.approx(np.exp(np.mean(np.log([20, 21, 19, 20.5]))))
    assert w.p_holm < 0.05 and "better than each of the other 2 strategies" in w.words


def test_a_winner_not_told_apart_from_the_runner_up_is_undecided():
    runs = runs_of({"dcgan": [50, 55, 60, 58], "ae_init": [20, 24, 19, 23], "vaegan": [21, 25, 20, 22]})
    w = choose(runs, "fid", 0.95)
    assert (w.strategy, w.decided, w.closest) == ("ae_init", False, "vaegan")
    assert w.words.startswith("undecided: `ae_init` has the best mean FID but is not shown better than `vaegan`")


def test_an_other_strategy_with_too_few_finished_seeds_leaves_it_undecided():
    runs = runs_of({"dcgan": [50, 55, 60], "ae_init": [20, 21, 19], "ae_disc": [200, 1e9, 1e9]},
                   {"ae_disc": ["finished", "diverged", "diverged"]})  # fmt: skip
    w = choose(runs, "fid", 0.95)
    assert (w.strategy, w.decided, w.closest) == ("ae_init", False, "ae_disc")
    assert "n too small" in w.words


def test_the_winner_is_chosen_on_the_primary_measure():
    runs = runs_of({"a": [10, 11, 12], "b": [13, 14, 15]})
    runs.loc[runs["strategy"] == "a", "kid_mean"] = [0.5, 0.6, 0.55]  # b has the lower KID, a the lower FID
    assert choose(runs, "fid", 0.95).strategy == "a" and choose(runs, "kid_mean", 0.95).strategy == "b"
    assert choose(runs[runs["strategy"] == "a"], "fid", 0.95).words.endswith("nothing to decide")
    assert choose(runs.assign(status="diverged"), "fid", 0.95) is None


def test_on_simulated_nulls_a_winner_is_decided_at_most_at_the_nominal_rate():
    """Six strategies of one distribution, 4 seeds each: whichever has the best mean is decided in at most 5% of
    comparisons (it must beat every other one, each test Holm-adjusted)."""
    rng = np.random.default_rng(0)
    strategies = ["dcgan", "ae_init", "ae_disc", "ae_hybrid", "ae_manifold", "vaegan"]
    trials, decided = 400, 0
    for _ in range(trials):
        fids = {s: list(np.exp(rng.normal(np.log(30), 0.1, 4))) for s in strategies}
        decided += choose(runs_of(fids), "fid", 0.95).decided
    assert decided / trials <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / trials), decided
