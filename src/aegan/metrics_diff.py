"""Tell a real change of the metrics from seed noise: `dvc metrics diff --all --json`, judged by the seed spread.

Give it the diff of reports/summary.json (`--targets reports/summary.json`): the DVC metrics file of the
pipeline, reports/metrics.json, holds only means (narrow enough for `dvc exp show`), no spreads.

Training floats differ across CPU types (and builds of torch), so a retrain on
another machine moves every metric a little when nothing changed. For each
metric with a mean over seeds in reports/summary.json (`<strategy>.<metric>.mean`
next to its `.std` and `.n`), the change of the mean is compared with the
standard error of a difference of two means, sqrt(std_old^2/n_old + std_new^2/n_new):
a change within `--z` (default 2) standard errors is "within seed noise",
beyond it a "real change". A mean with fewer than two seeds on a side has no
spread and is not judged; scores without a spread (the real-vs-real floor, the
untrained generator, stability measures) are listed when they changed, not judged.

    dvc metrics diff origin/main --all --json --targets reports/summary.json > metrics-diff.json
    python -m aegan.metrics_diff metrics-diff.json        # a markdown table on stdout
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WITHIN, REAL, NO_SPREAD, NEW, GONE = "within seed noise", "real change", "not judged: n < 2", "new", "removed"


@dataclass
class Verdict:
    metric: str  # "<file>: <strategy>.<metric>"
    old: float | None
    new: float | None
    noise: float | None  # z x the standard error of the difference of the means
    verdict: str


def _value(entry: dict | None, side: str) -> Any:
    return None if entry is None else entry.get(side)


def _spread(std: Any, n: Any) -> float | None:
    """std^2 / n of one side, or None when it has no spread (fewer than two seeds, or missing)."""
    if not isinstance(std, (int, float)) or not isinstance(n, (int, float)) or n < 2 or not math.isfinite(std):
        return None
    return std**2 / n


def judge(diff: dict[str, dict[str, dict]], z: float = 2.0) -> tuple[list[Verdict], list[Verdict]]:
    """(judged means, changed scores without a spread) from `dvc metrics diff --all --json` output."""
    judged, unjudged = [], []
    for file, entries in sorted(diff.items()):
        for key in sorted(entries):
            entry, base = entries[key], key.rsplit(".", 1)[0]
            old, new = _value(entry, "old"), _value(entry, "new")
            if key.endswith(".mean") and f"{base}.std" in entries:
                std, n = entries[f"{base}.std"], entries.get(f"{base}.n")
                if old is None or new is None:
                    judged.append(Verdict(f"{file}: {base}", old, new, None, NEW if old is None else GONE))
                    continue
                sides = [_spread(_value(std, side), _value(n, side)) for side in ("old", "new")]
                if None in sides:
                    judged.append(Verdict(f"{file}: {base}", old, new, None, NO_SPREAD))
                    continue
                noise = z * math.sqrt(sides[0] + sides[1])
                judged.append(Verdict(f"{file}: {base}", old, new, noise, WITHIN if abs(new - old) <= noise else REAL))
            elif key.rsplit(".", 1)[-1] not in ("std", "n") and old != new:
                unjudged.append(Verdict(f"{file}: {key}", old, new, None, "no spread: not judged"))
    return judged, unjudged


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def markdown(judged: list[Verdict], unjudged: list[Verdict], z: float) -> str:
    real = sum(v.verdict == REAL for v in judged)
    within = sum(v.verdict == WITHIN for v in judged)
    lines = [f"**{real} real change(s), {within} within seed noise** (|change of the mean| > {z:g} standard errors "
             "of the difference over seeds is a real change; training floats differ across CPU types, so a re-run "
             "elsewhere moves every metric a little).", "",
             f"| metric | before | after | change | seed noise ({z:g} SE) | verdict |", "|---|---|---|---|---|---|"]  # fmt: skip
    for v in judged:
        change = v.new - v.old if v.old is not None and v.new is not None else None
        mark = f"**{v.verdict}**" if v.verdict == REAL else v.verdict
        lines.append(f"| {v.metric} | {_fmt(v.old)} | {_fmt(v.new)} | {_fmt(change)} | {_fmt(v.noise)} | {mark} |")
    if unjudged:
        lines += ["", "Changed scores without a seed spread (single scores: not judged):", "",
                  "| metric | before | after |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {v.metric} | {_fmt(v.old)} | {_fmt(v.new)} |" for v in unjudged]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aegan.metrics_diff", description=__doc__.splitlines()[0])
    parser.add_argument("diff", help="output of `dvc metrics diff --all --json --targets reports/summary.json` ('-': stdin)")
    parser.add_argument("--z", type=float, default=2.0, help="standard errors a change must exceed to be real")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.diff == "-" else Path(args.diff).read_text()
        diff = json.loads(text) if text.strip() else {}
        if not isinstance(diff, dict) or not all(isinstance(v, dict) for v in diff.values()):
            raise ValueError("not the output of `dvc metrics diff --json`")
    except (OSError, ValueError) as err:
        print(f"error: {args.diff}: {err}: pass the output of `dvc metrics diff --all --json`", file=sys.stderr)
        return 2
    judged, unjudged = judge(diff, args.z)
    sys.stdout.write(markdown(judged, unjudged, args.z))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
