"""What the small-sample FID curve costs a pipeline run: evaluation seconds against training seconds, per strategy.

    python bench/eval_cost.py [WORKSPACE]      (default: this checkout, after `make run`)

Reads every models/runs/<strategy>-<seed>/run.json the last run wrote: `train_seconds` (the loop without its
evaluations), `eval_seconds` (the evaluations during training, step 0 included) and `charged_eval_seconds`
(scoring the generators a strategy would have had over its charged AE pretraining steps, before training).
Prints per strategy the mean seconds of each and the evaluations' share of the stage's compute, and the same
over all runs: the figure docs/pipeline.md quotes for `train.eval_every`.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def main(workspace: Path) -> None:
    runs = sorted((workspace / "models" / "runs").glob("*-*/run.json"))
    if not runs:
        sys.exit(f"{workspace}/models/runs: no run.json: run the pipeline first (`make run`)")
    by: dict[str, list[tuple[float, float, float, int]]] = defaultdict(list)
    for path in runs:
        info = json.loads(path.read_text())
        evals = len(info.get("seconds_at_eval") or {})
        by[info["strategy"]].append((info["train_seconds"], info["eval_seconds"], info.get("charged_eval_seconds", 0.0), evals))
    print(f"{'strategy':<12} {'runs':>4} {'train s':>8} {'eval s':>7} {'charged s':>9} {'evals':>5} {'eval share':>10}")
    total = [0.0, 0.0, 0.0]
    for strategy, rows in by.items():
        train, evals, charged = (sum(r[i] for r in rows) for i in range(3))
        total = [total[0] + train, total[1] + evals, total[2] + charged]
        n = len(rows)
        print(f"{strategy:<12} {n:>4} {train / n:>8.1f} {evals / n:>7.1f} {charged / n:>9.1f} {rows[0][3]:>5} "
              f"{(evals + charged) / (train + evals + charged):>10.0%}")  # fmt: skip
    train, evals, charged = total
    print(f"all runs: evaluation is {(evals + charged) / (train + evals + charged):.0%} of the train stages' compute "
          f"({evals + charged:.0f} s of {train + evals + charged:.0f} s)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("."))
