"""No-op `dvc repro` after a full run: what DVC costs to find that nothing changed, for one or more checkouts.

    python bench/noop.py [--src REPO [REPO ...]] [--repeats 5] [--keep DIR]

Copies each `--src` (default: this repo; give an older checkout too to compare
"before" and "after" in one run) into a temporary folder with the default
matrix (every strategy, every seed: the same number of stages as the default
run) but tiny budgets, runs `dvc repro` there once, then times `dvc repro`
again `--repeats` times per copy, the copies taking turns, and prints the
median, min and max of each, the number of paths in its dvc.lock, and the
ratio of each median to the first copy's. What a no-op costs depends on the
stages, their deps and params, not on the budgets, so tiny runs measure it.

Stage commands run each copy's own src/ (a shim named `aegan` first on
PATH, bench/_repo.py), so an older checkout runs its own code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _repo import command_shim, copy_repo  # bench/ is on sys.path when this file runs as a script

HERE = Path(__file__).resolve().parents[1]
TINY = dict(
    train_scorer={"steps": 20, "batch_size": 32, "width": 8, "feature_dim": 16},
    pretrain_ae={"steps": 10, "batch_size": 32}, model={"z_dim": 8, "width": 8},
    train={"budget": 20, "batch_size": 32, "log_every": 5, "eval_every": 10, "eval_samples": 64, "grid_samples": 16},
    evaluate={"num_samples": 64, "kid_subset_size": 32, "batch_size": 64},
)  # fmt: skip


def env_for(repo: Path) -> dict:
    shim = command_shim(repo, sys.executable)
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DVC_NO_ANALYTICS="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(repo / "src")
    env["PATH"] = os.pathsep.join([str(shim), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{repo / 'mlflow.db'}"
    return env


def repro(repo: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env_for(repo), capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"dvc repro failed in {repo}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, nargs="+", default=[HERE])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="aegan-noop-"))
    try:
        repos = [copy_repo(src.resolve(), tmp / f"repo{i}", TINY) for i, src in enumerate(args.src)]
        for repo in repos:
            print(f"full run in {repo}: {repro(repo):.0f} s", flush=True)
        times: list[list[float]] = [[] for _ in repos]
        print(f"{os.cpu_count()} cores, {sys.executable} (Python {sys.version.split()[0]}), load average "
              f"{os.getloadavg()[0]:.2f} at start", flush=True)  # fmt: skip
        for _ in range(args.repeats):
            for i, repo in enumerate(repos):
                times[i].append(repro(repo))
        first = statistics.median(times[0])
        print(f"{'source':<28} {'lock paths':>10} {'median s':>9} {'min s':>6} {'max s':>6} {'ratio':>6}")
        for src, repo, ts in zip(args.src, repos, times):
            paths = (repo / "dvc.lock").read_text().count("- path: ")
            med = statistics.median(ts)
            print(f"{str(src)[-28:]:<28} {paths:>10} {med:9.2f} {min(ts):6.2f} {max(ts):6.2f} {med / first:6.2f}")
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
