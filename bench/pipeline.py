"""Wall time of the pipeline run one stage after another (`dvc repro`) and with `aegan run --jobs N`, in one run.

    python bench/pipeline.py [--jobs 2] [--repeats 1] [--full] [--strategies dcgan ae_init] [--seeds 0 1] [--steps 100]

Each variant runs from scratch in its own temporary clone (src, dvc.yaml,
params.yaml, DVC config; a fresh MLflow DB each), one after the other, the
variants taking turns `--repeats` times (medians are printed):

- sequential: `dvc repro`;
- JOBS=N: `aegan run --jobs N`.

`--variants parallel` times only that one; `--against-workspace` also compares
every run's outputs with the workspace's own (the committed run when `dvc
status` is clean): how a refactor shows it changed no result.

Prints each wall time and its ratio to the sequential one, then checks that
every variant produced the same outputs as the sequential run: byte for byte,
and JSON files less the keys that record time or MLflow ids (the AE's
snapshot files hold wall times: they differ from run to run). Without
`--full` it runs a reduced matrix (the strategies, seeds and steps given).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _repo import copy_repo  # bench/ is on sys.path when this file runs as a script

HERE = Path(__file__).resolve().parents[1]
TIMING = ("seconds", "per_second", "mlflow_run_id", "mlflow_model_uri", "git_commit", "commit")
# outputs that carry wall times or the commit in prose or pixels: the numbers behind them are compared in summary.json
NOT_BYTE_EQUAL = ("reports/report.md", "reports/report.html", "reports/figures/")


def timed(cmd: list[str], repo: Path, log: Path | None = None) -> float:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}", MLFLOW_DISABLE_TELEMETRY="true",
               DVC_NO_ANALYTICS="1", PYTHONPATH=str(repo / "src"))  # fmt: skip
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}  ({took:.1f} s)\n{r.stdout}\n")
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {repo}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return took


def without_timing(obj):
    if isinstance(obj, dict):
        return {k: without_timing(v) for k, v in obj.items() if not any(t in k for t in TIMING)}
    if isinstance(obj, list):
        return [without_timing(v) for v in obj]
    return obj


def outputs(repo: Path) -> dict[str, str]:
    """Every file of every DVC output (from dvc.lock), as a digest of what must not depend on how it was run."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    paths = sorted({o["path"] for s in lock.values() for o in s.get("outs", [])})
    out = {}
    for top in paths:
        files = [repo / top] if (repo / top).is_file() else sorted(p for p in (repo / top).rglob("*") if p.is_file())
        for f in files:
            rel = f.relative_to(repo).as_posix()
            if rel.startswith(NOT_BYTE_EQUAL):
                continue
            data = f.read_bytes()
            if f.suffix == ".json":
                data = json.dumps(without_timing(json.loads(data)), sort_keys=True).encode()
            out[rel] = hashlib.sha256(data).hexdigest()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--log", type=Path, default=None, help="append each `aegan run`'s output to this file")
    ap.add_argument("--full", action="store_true", help="the default pipeline of params.yaml, unchanged")
    ap.add_argument("--strategies", nargs="+", default=["dcgan", "ae_init"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--variants", nargs="+", choices=["sequential", "parallel"], default=["sequential", "parallel"],
                    help="which runs to time (ratios are to the first)")
    ap.add_argument("--against-workspace", action="store_true", help="also compare every output with this workspace's "
                    "(with --full: the committed run, if `dvc status` is clean), e.g. to show a refactor changed none")
    ap.add_argument("--steps", type=int, default=100, help="train.budget, each strategy's own steps "
                    "(match_budget off, so every strategy trains this many; pretrain_ae and train_scorer: 2x)")
    args = ap.parse_args()
    params = {} if args.full else dict(
        strategies=args.strategies, seeds=args.seeds, train={"budget": args.steps, "match_budget": False},
        pretrain_ae={"steps": 2 * args.steps}, train_scorer={"steps": 2 * args.steps})  # fmt: skip
    matrix = "the default matrix" if args.full else f"{args.strategies} x seeds {args.seeds}, {args.steps} steps"
    every = {"sequential": ("sequential (dvc repro)", ["dvc", "repro"]),
             "parallel": (f"JOBS={args.jobs}", ["aegan", "run", "--jobs", str(args.jobs)])}  # fmt: skip
    variants = dict(every[v] for v in args.variants)
    print(f"{matrix}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="aegan-bench-") as tmp:
        walls: dict[str, list[float]] = {name: [] for name in variants}
        digests = {}
        for r in range(args.repeats):
            for i, (name, cmd) in enumerate(variants.items()):
                repo = copy_repo(HERE, Path(tmp) / f"r{r}v{i}", params)
                walls[name].append(timed(cmd, repo, args.log))
                digests[name] = outputs(repo)
                print(f"  round {r + 1}: {name:<24} {walls[name][-1]:8.1f} s", flush=True)
                shutil.rmtree(repo)
        first = statistics.median(walls[next(iter(walls))])
        for name, w in walls.items():
            print(f"{name:<24} {statistics.median(w):8.1f} s  {statistics.median(w) / first:.2f}x  (median of {len(w)})")
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        first_name = next(iter(digests))
        references = {f"the {first_name} run's": digests[first_name]}
        if args.against_workspace:
            references["this workspace's"] = outputs(HERE)
        ok = True
        for what, base in references.items():
            for name, d in digests.items():
                if d is base:
                    continue
                differ = sorted(k for k in base.keys() | d.keys() if base.get(k) != d.get(k))
                print(f"{name}: {len(base) - len(differ)} of {len(base)} output files equal to {what}"
                      + (f"; different: {differ}" if differ else ""))  # fmt: skip
                ok &= not differ
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
