"""Tell a real change of the metrics from seed noise: `dvc metrics diff --all --json`, judged by the seed spread.

Give it the diff of reports/summary.json (`--targets reports/summary.json`): the DVC metrics file of the
pipeline, reports/metrics.json, holds only means (narrow enough for `dvc exp show`), no spreads.

Training floats differ across CPU types (and builds of torch), so a retrain on another machine moves every
metric a little when nothing changed. Each metric with a mean over seeds in reports/summary.json
(`<strategy>.<metric>.mean` next to its `.std` and `.n`) that changed is tested with Welch's t test from those
summaries (scipy), and the p-values of every test in the table are Holm-adjusted together: the chance that
any mean is called a "real change" when nothing but seed noise moved is at most `--alpha` (default 0.05)
for the whole table, not per line. A strategy whose stages did not re-run (given two dvc.lock files:
`--locks OLD NEW`, its train and evaluate entries identical) is "not re-run" and not tested. A mean with fewer
than two seeds on a side has no spread and is not judged; scores without a spread (the real-vs-real floor, the
untrained generator, stability measures) are listed when they changed, not judged.

    dvc metrics diff origin/main --all --json --targets reports/summary.json > metrics-diff.json
    git show origin/main:dvc.lock > base.lock
    python -m aegan.metrics_diff metrics-diff.json --locks base.lock dvc.lock     # a markdown table on stdout
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WITHIN, REAL, NO_SPREAD, NEW, GONE, NOT_RERUN, SAME, NOT_FINITE = (
    "within seed noise", "real change", "not judged: n < 2", "new", "removed", "not re-run", "unchanged",
    "not judged: not a finite number")  # fmt: skip
CORRECTION = "Holm"


@dataclass
class Verdict:
    metric: str  # "<file>: <strategy>.<metric>"
    old: float | None
    new: float | None
    verdict: str
    p: float = math.nan  # Welch t test, two-sided
    p_adjusted: float = math.nan  # Holm, over every test of the table


def _value(entry: dict | None, side: str) -> Any:
    return None if entry is None else entry.get(side)


def _has_spread(std: Any, n: Any) -> bool:
    return isinstance(std, (int, float)) and isinstance(n, (int, float)) and n >= 2 and math.isfinite(std)


def welch_p(old: tuple[float, float, float], new: tuple[float, float, float]) -> float:
    """Two-sided p of Welch's t test from (mean, std, n) of each side; 1 when neither side has any spread and the
    means are equal, 0 when they differ (no noise can explain it)."""
    from scipy import stats

    (m1, s1, n1), (m2, s2, n2) = old, new
    if s1 == 0 and s2 == 0:
        return 1.0 if m1 == m2 else 0.0
    return float(stats.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue)


def not_rerun(old_lock: dict, new_lock: dict) -> set[str]:
    """Strategies whose `train@<s>-*` and `evaluate@<s>-*` entries are the same in both dvc.lock files: nothing
    of theirs re-ran, so their metrics did not move for any reason worth testing."""
    def entries(lock: dict) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for name, entry in (lock.get("stages") or {}).items():
            stage, _, item = name.partition("@")
            if stage in ("train", "evaluate") and item:
                out.setdefault(item.rsplit("-", 1)[0], {})[name] = entry
        return out

    old, new = entries(old_lock), entries(new_lock)
    return {s for s in old.keys() & new.keys() if old[s] == new[s]}


def judge(diff: dict[str, dict[str, dict]], alpha: float = 0.05, unchanged: set[str] = frozenset()
          ) -> tuple[list[Verdict], list[Verdict]]:  # fmt: skip
    """(judged means, changed scores without a spread) from `dvc metrics diff --all --json` output; the means of
    strategies in `unchanged` (see `not_rerun`) are "not re-run", the others tested together (Holm)."""
    from aegan.report.comparison import holm

    judged, unjudged = [], []
    for file, entries in sorted(diff.items()):
        for key in sorted(entries):
            entry, base = entries[key], key.rsplit(".", 1)[0]
            old, new = _value(entry, "old"), _value(entry, "new")
            if key.split(".", 1)[0] in unchanged:  # its stages did not re-run: listed once, nothing of it tested
                if key.endswith(".mean"):
                    judged.append(Verdict(f"{file}: {base}", old, new, NOT_RERUN))
                continue
            if key.endswith(".mean") and f"{base}.std" in entries:
                name = f"{file}: {base}"
                std, n = entries[f"{base}.std"], entries.get(f"{base}.n")
                if old is None or new is None:
                    judged.append(Verdict(name, old, new, NEW if old is None else GONE))
                elif not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (old, new)):
                    judged.append(Verdict(name, old, new, NOT_FINITE))  # a NaN mean is no evidence either way
                elif not all(_has_spread(_value(std, side), _value(n, side)) for side in ("old", "new")):
                    judged.append(Verdict(name, old, new, NO_SPREAD))
                elif old == new and _value(std, "old") == _value(std, "new"):
                    judged.append(Verdict(name, old, new, SAME))
                else:
                    sides = [(v, _value(std, side), _value(n, side)) for v, side in ((old, "old"), (new, "new"))]
                    judged.append(Verdict(name, old, new, "", p=welch_p(*sides)))
            elif key.rsplit(".", 1)[-1] not in ("std", "n") and old != new:
                unjudged.append(Verdict(f"{file}: {key}", old, new, "no spread: not judged"))
    tested = [v for v in judged if not v.verdict]
    for v, p_adj in zip(tested, holm([v.p for v in tested])):
        v.p_adjusted = p_adj
        v.verdict = REAL if p_adj < alpha else WITHIN
    return judged, unjudged


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def markdown(judged: list[Verdict], unjudged: list[Verdict], alpha: float) -> str:
    count = {k: sum(v.verdict == k for v in judged) for k in (REAL, WITHIN, NOT_RERUN)}
    tested = count[REAL] + count[WITHIN]
    strategies = sorted({v.metric.split(": ", 1)[1].split(".")[0] for v in judged if v.verdict == NOT_RERUN})
    if tested:
        head = (f"**{count[REAL]} real change(s), {count[WITHIN]} within seed noise** of {tested} tested mean(s): "
                f"Welch t test of each changed mean over seeds, {CORRECTION}-adjusted across all {tested} at "
                f"alpha = {alpha:g} (a table of noise alone shows a false real change with probability at most "
                f"{alpha:g}; training floats differ across CPU types, so a re-run elsewhere moves every metric a "
                "little).")  # fmt: skip
    else:
        head = "**No mean tested**: none changed with at least 2 seeds on each side."
    if strategies:
        head += f" Not re-run (their stages' inputs did not change), not tested: {', '.join(f'`{s}`' for s in strategies)}."
    lines = [head]
    rows = [v for v in judged if v.verdict != NOT_RERUN]
    if rows:
        lines += ["", f"| metric | before | after | change | p | p ({CORRECTION}) | verdict |", "|---|---|---|---|---|---|---|"]
    for v in rows:
        change = v.new - v.old if v.old is not None and v.new is not None else None
        mark = f"**{v.verdict}**" if v.verdict == REAL else v.verdict
        lines.append(f"| {v.metric} | {_fmt(v.old)} | {_fmt(v.new)} | {_fmt(change)} | {_fmt(v.p)} | "
                     f"{_fmt(v.p_adjusted)} | {mark} |")  # fmt: skip
    if unjudged:
        lines += ["", "Changed scores without a seed spread (single scores: not judged):", "",
                  "| metric | before | after |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {v.metric} | {_fmt(v.old)} | {_fmt(v.new)} |" for v in unjudged]
    return "\n".join(lines) + "\n"


def check_diff(diff: dict) -> None:
    """ValueError naming the first entry that is not `dvc metrics diff --json`'s {file: {metric: {old, new, ...}}}."""
    for file, entries in diff.items():
        if not isinstance(entries, dict):
            raise ValueError(f"{file!r} holds a {type(entries).__name__}, not a mapping of metrics")
        for key, entry in entries.items():
            if not isinstance(entry, dict) or not {"old", "new"} & entry.keys():
                shown = json.dumps(entry)[:40]
                hint = " (`dvc metrics show` output?)" if key == "data" or file == "" else ""
                raise ValueError(f"{file}: {key} is {shown}, not an old/new pair{hint}")
            for side in ("old", "new"):
                value = entry.get(side)
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise ValueError(f"{file}: {key}: {side} is {json.dumps(value)[:40]}, not a number")


def _read_json(path: str, what: str) -> dict:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    data = json.loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise ValueError(f"not {what}")
    return data


def _read_lock(path: str) -> dict:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError:
        raise ValueError("not a dvc.lock file (not YAML)") from None
    if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
        raise ValueError("not a dvc.lock file")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aegan.metrics_diff", description=__doc__.splitlines()[0])
    parser.add_argument("diff", help="output of `dvc metrics diff --all --json --targets reports/summary.json` ('-': stdin)")
    parser.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate of the whole table")
    parser.add_argument("--locks", nargs=2, metavar=("OLD", "NEW"), help="dvc.lock of each side: strategies whose "
                        "stages did not re-run are listed, not tested")  # fmt: skip
    args = parser.parse_args(argv)
    if not 0 < args.alpha < 1:
        print(f"error: --alpha {args.alpha:g}: give a level between 0 and 1, e.g. 0.05", file=sys.stderr)
        return 2
    try:
        diff = _read_json(args.diff, "the output of `dvc metrics diff --json`")
        check_diff(diff)
    except (OSError, ValueError) as err:
        print(f"error: {args.diff}: {err}: pass the output of `dvc metrics diff --all --json`", file=sys.stderr)
        return 2
    unchanged: set[str] = set()
    if args.locks:
        try:
            unchanged = not_rerun(*(_read_lock(p) for p in args.locks))
        except (OSError, ValueError) as err:
            print(f"error: --locks {' '.join(args.locks)}: {err}: pass two dvc.lock files (e.g. `git show "
                  "origin/main:dvc.lock > base.lock`)", file=sys.stderr)  # fmt: skip
            return 2
    judged, unjudged = judge(diff, args.alpha, unchanged)
    sys.stdout.write(markdown(judged, unjudged, args.alpha))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
