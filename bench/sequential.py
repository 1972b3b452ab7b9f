"""Error rates and seeds used by the group-sequential plan (aegan.report.sequential), on synthetic runs.

    python bench/sequential.py [--repeats 5000] [--seed 0]

Repeats the WHOLE procedure (every look, then the replication) on synthetic seeds: the five strategies against
the baseline dcgan, start 4, batch 4, max_seeds 20, alpha 0.05 per claim, replicate 4. For FID, log FID per
run ~ Normal(log mu_s, sigma_s^2) with sigma_s the std of log FID over the 4 committed seeds (SIGMAS) and a known
true ratio mu_s / mu_dcgan: every strategy at 1.00, 1.05, 1.10 (the margin) or 1.20, and one mixed scenario
(MIXED); margin log(1.1). For the failure rate (kind "proportion", margin 0.25), each run fails with a known
probability: all at 0.1, all at 0, and the strategies at 0.35 against 0.1 (a difference at the margin).

Prints per scenario: the family-wise rate of false verdicts (at least one of the five wrong: "better" when the
strategy is truly no better, "worse" when truly no worse, "equivalent" when the true difference is at or beyond
the margin) with its Monte Carlo standard error, to set against alpha = 0.05; the shares of the verdicts; the
seeds per side the looks used, on average (strategy, baseline; the replication adds 4 a side to each decided
one); and the share of decided verdicts the replication confirmed or contradicted.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

from aegan.report.sequential import Plan, replay

SIGMAS = {"dcgan": 0.036, "ae_init": 0.12, "ae_disc": 0.44, "ae_hybrid": 0.067, "ae_manifold": 0.18, "vaegan": 0.16}
BASELINE = "dcgan"
STRATEGIES = tuple(s for s in SIGMAS if s != BASELINE)
MIXED = {"ae_init": 0.8, "ae_disc": 1.2, "ae_hybrid": 1.0, "ae_manifold": 1.05, "vaegan": 1.1}
FID_MARGIN, FAILURE_MARGIN = math.log(1.1), 0.25
SEEDS_DRAWN = 24  # max_seeds + replicate: everything a run of the procedure can read


def plan(kind: str, margin: float) -> Plan:
    return Plan(BASELINE, STRATEGIES, {"claim": ("m", kind, margin)}, start=4, batch=4, max_seeds=20, alpha=0.05,
                replicate=4)  # fmt: skip


def fid_scenario(ratios: dict[str, float]):
    """(true difference per strategy on the comparison scale, a draw of every run's log FID)."""
    truth = {s: math.log(ratios[s]) for s in STRATEGIES}

    def draw(rng):
        return {s: {"m": list((truth.get(s, 0.0)) + sd * rng.standard_normal(SEEDS_DRAWN))} for s, sd in SIGMAS.items()}

    return truth, draw


def failure_scenario(p_strategy: float, p_baseline: float):
    truth = {s: p_strategy - p_baseline for s in STRATEGIES}

    def draw(rng):
        return {s: {"m": list((rng.random(SEEDS_DRAWN) < (p_baseline if s == BASELINE else p_strategy)).astype(float))}
                for s in SIGMAS}  # fmt: skip

    return truth, draw


def wrong(word: str, truth: float, margin: float) -> bool:
    return ((word == "better" and truth >= 0) or (word == "worse" and truth <= 0)
            or (word == "equivalent" and abs(truth) >= margin - 1e-12))  # fmt: skip


def run(name: str, kind: str, margin: float, scenario, repeats: int, rng) -> None:
    truth, draw = scenario
    the_plan = plan(kind, margin)
    false_any, words, seeds, seeds_base, replicated, contradicted = 0, [], [], [], 0, 0
    t0 = time.perf_counter()
    for _ in range(repeats):
        outcome = replay(the_plan, draw(rng))
        assert outcome.done, outcome.needs
        false_any += any(wrong(v.word, truth[s], margin) for (s, _), v in outcome.verdicts.items())
        words += [v.word for v in outcome.verdicts.values()]
        seeds += [v.n for v in outcome.verdicts.values()]
        seeds_base.append(outcome.looks[-1].n[BASELINE])
        replicated += sum(r.word == "replicated" for r in outcome.replication.values())
        contradicted += sum(r.word == "contradicted" for r in outcome.replication.values())
    rate = false_any / repeats
    share = {w: words.count(w) / len(words) for w in ("better", "worse", "equivalent", "undecided")}
    decided = len(words) - words.count("undecided")
    rep = f"{replicated / decided:>6.0%} {contradicted / decided:>6.1%}" if decided else f"{'-':>6} {'-':>6}"
    print(f"{name:<26} {rate:>6.3f} ± {math.sqrt(rate * (1 - rate) / repeats):.3f} "
          f"{share['better']:>6.0%} {share['worse']:>6.0%} {share['equivalent']:>6.0%} {1 - share['undecided']:>7.0%} "
          f"{np.mean(seeds):>6.1f} {np.mean(seeds_base):>6.1f} {rep} {time.perf_counter() - t0:>6.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5000, help="repeats of the whole procedure per scenario")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    scenarios = [(f"FID ratio {r:.2f}", "mean", FID_MARGIN, fid_scenario(dict.fromkeys(STRATEGIES, r)))
                 for r in (1.0, 1.05, 1.10, 1.20)]  # fmt: skip
    scenarios.append(("FID mixed (see MIXED)", "mean", FID_MARGIN, fid_scenario(MIXED)))
    scenarios += [(f"failures {p:g} vs {pb:g}", "proportion", FAILURE_MARGIN, failure_scenario(p, pb))
                  for p, pb in ((0.1, 0.1), (0.0, 0.0), (0.35, 0.1))]  # fmt: skip
    print(f"{args.repeats} repeats per scenario, seed {args.seed}; 5 strategies vs {BASELINE}, start 4, batch 4, "
          f"max 20, alpha 0.05 (Bonferroni: 0.01 each), replicate 4; {os.cpu_count()} cores")
    print(f"{'scenario':<26} {'false (FWER)':>14} {'better':>6} {'worse':>6} {'equiv':>6} {'decided':>7} "
          f"{'seeds':>6} {'base':>6} {'repl':>6} {'contra':>6} {'sec':>6}")
    for name, kind, margin, scenario in scenarios:
        run(name, kind, margin, scenario, args.repeats, rng)
    print("false: share of repeats with at least one false verdict among the five; better..decided: shares of all "
          "verdicts; seeds/base: seeds per side the looks used (mean); repl/contra: share of decided verdicts the "
          "replication (4 fresh seeds a side) confirmed / contradicted")


if __name__ == "__main__":
    main()
