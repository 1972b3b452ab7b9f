"""Start-up overhead of every pipeline stage: process wall time minus the stage's own work.

    python bench/overhead.py [--src REPO [REPO ...]] [--repeats 3] [--keep DIR]

Copies each `--src` (default: this repo; give an older checkout too to compare
"before" and "after" in one run) into a temporary folder, runs `dvc repro`
there once with small parameters, then for one stage of each kind (the first
item of a matrix), the sources taking turns run by run:

- wall: the stage's command (`aegan ...` from dvc.yaml) as a fresh process,
  median of `--repeats` runs, timed from outside;
- work: the same command called in one warm Python process (`aegan.cli.app`,
  imports done, tracking store open, caches filled), median of `--repeats`
  calls after one warm-up call;
- overhead = wall - work: what starting a process for the stage costs.

Each copy runs its own code (its `src/` first on PYTHONPATH), one torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _repo import command_shim, copy_repo  # bench/ is on sys.path when this file runs as a script

HERE = Path(__file__).resolve().parents[1]
SMALL = dict(
    strategies=["dcgan", "ae_init"], seeds=[0],
    train_scorer={"steps": 50}, pretrain_ae={"steps": 50},
    train={"budget": 50, "match_budget": False, "eval_every": 25},
    evaluate={"num_samples": 200, "kid_subset_size": 100},
)  # fmt: skip

WARM = """
import contextlib, io, json, shlex, statistics, sys, time
from aegan.cli import app
cmd, repeats = shlex.split(sys.argv[1])[1:], int(sys.argv[2])
def once():
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        app(cmd, standalone_mode=False)
    return time.perf_counter() - t0
once()
print(json.dumps(statistics.median(once() for _ in range(repeats))))
"""


def env_for(repo: Path) -> dict:
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DVC_NO_ANALYTICS="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(repo / "src")
    env["PATH"] = os.pathsep.join([str(command_shim(repo, sys.executable)), str(Path(sys.executable).parent),
                                   env.get("PATH", "")])  # fmt: skip
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{repo / 'mlflow.db'}"
    return env


def stage_commands(repo: Path) -> dict[str, str]:
    """One command per stage kind (matrix stages: their first item), in pipeline order."""
    from dvc.repo import Repo

    firsts: dict[str, str] = {}
    with Repo(str(repo)) as dvc_repo:
        for stage in dvc_repo.index.stages:
            firsts.setdefault(stage.name.split("@")[0], (stage.name, stage.cmd))
    return dict(firsts.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, nargs="+", default=[HERE])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="aegan-overhead-"))
    try:
        repos = [copy_repo(src.resolve(), tmp / f"repo{i}", SMALL) for i, src in enumerate(args.src)]
        for repo in repos:
            subprocess.run(["dvc", "repro", "-q"], cwd=repo, env=env_for(repo), check=True, capture_output=True)
        variants = [(str(src)[-22:], repo) for src, repo in zip(args.src, repos)]
        print(f"{os.cpu_count()} cores, repeats {args.repeats}, load average {os.getloadavg()[0]:.2f} at start")
        print(f"{'stage':<16} {'variant':<24} {'wall s':>7} {'work s':>7} {'overhead s':>11}")
        for stage, cmd in stage_commands(repos[0]).items():
            walls: list[list[float]] = [[] for _ in variants]
            for _ in range(args.repeats):
                for i, (_, repo) in enumerate(variants):
                    t0 = time.perf_counter()
                    subprocess.run(shlex.split(cmd), cwd=repo, env=env_for(repo), check=True, capture_output=True)
                    walls[i].append(time.perf_counter() - t0)
            works = {}
            for label, repo in variants:
                if repo not in works:
                    warm = subprocess.run([sys.executable, "-c", WARM, cmd, str(args.repeats)], cwd=repo,
                                          env=env_for(repo), check=True, capture_output=True, text=True)  # fmt: skip
                    works[repo] = json.loads(warm.stdout.strip().splitlines()[-1])
            for i, (label, repo) in enumerate(variants):
                wall, work = statistics.median(walls[i]), works[repo]
                print(f"{stage:<16} {label:<24} {wall:7.2f} {work:7.2f} {wall - work:11.2f}", flush=True)
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
