"""Training throughput: the shared loop (MLflow logging on) under each compute path, against a bare PyTorch loop.

    python bench/throughput.py [--device cuda] [--size 32 --channels 3 --width 64 --batch 256]
                               [--paths standard fused graphs ...] [--strategies dcgan ...] [--steps 200] [--repeats 3]

Prints images/second of every strategy under every compute path (the
`compute` switches of params.yaml, compute.py), its ratio to today's path
(`standard`) and, for `dcgan`, to the textbook loop (pytorch/examples dcgan:
no logging, no hooks, today's optimizer) over the same networks and batch.
Paths and the bare loop run interleaved `--repeats` times; medians are
reported. A path's first steps (torch.compile's compilation, CUDA graph
capture) are timed apart as its set-up. Data: random images of the given
shape (throughput does not depend on them). Evaluation is off: this measures
training. Default paths: on CUDA every one, on the CPU those that run there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import torch  # noqa: E402

from aegan.ae import AETrainer  # noqa: E402
from aegan.compute import accelerate  # noqa: E402
from aegan.errors import UserError  # noqa: E402
from aegan.loop import seed_everything, train_loop  # noqa: E402
from aegan.losses import bce  # noqa: E402
from aegan.nets import AutoEncoder, NetShape, set_autocast  # noqa: E402
from aegan.params import load_params  # noqa: E402
from aegan.strategies import registry  # noqa: E402
from aegan.tracking import Run  # noqa: E402

PATHS = {
    "standard": {},
    "fused": {"fused_optimizer": True},
    "fused+cl": {"fused_optimizer": True, "channels_last": True},
    "graphs": {"fused_optimizer": True, "cuda_graphs": True},
    "compile": {"fused_optimizer": True, "compile": True},
    "amp": {"amp": True},
    "amp+fused+cl": {"amp": True, "fused_optimizer": True, "channels_last": True},
}
CPU_PATHS = ("standard", "fused", "fused+cl")


def bare_dcgan(strategy, data: torch.Tensor, steps: int, batch_size: int) -> float:
    """The textbook loop (pytorch/examples dcgan): no logging, no averaging, no hooks. Returns images/s."""
    G, D, opt_g, opt_d = strategy.generator, strategy.discriminator, strategy.opt_g, strategy.opt_d
    gen = torch.Generator().manual_seed(0)
    n = len(data)
    perm, pos = torch.randperm(n, generator=gen), 0
    sync(data.device)
    start = time.perf_counter()
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        real = data[perm[pos : pos + batch_size].to(data.device)]
        pos += batch_size
        fake = G(torch.randn(batch_size, strategy.shape.z_dim, device=data.device))
        loss_d = bce(D(real), 1.0) + bce(D(fake.detach()), 0.0)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = bce(D(fake), 1.0)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    sync(data.device)
    return steps * batch_size / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def shared(step, data: torch.Tensor, steps: int, batch_size: int, run: Run, log_every: int) -> float:
    sync(data.device)
    t0 = time.perf_counter()
    train_loop(step, [data], steps=steps, batch_size=batch_size, seed=0, log_every=log_every, on_log=run.log_metrics,
               progress=False)  # fmt: skip
    run.flush()
    sync(data.device)
    return steps * batch_size / (time.perf_counter() - t0)


def build(cls, params, shape, ae, data, device, path: str):
    """The strategy under one compute path, its step function and its set-up seconds (first 5 steps); None: n/a."""
    compute = params.compute.model_copy(update={"device": device.type, **PATHS[path]})
    seed_everything(0)
    s = cls(getattr(params, cls.name), shape, params.train.optimizer, ae).to(device)
    set_autocast(s, "cuda" if compute.amp and device.type == "cuda" else None)
    s.setup(data, ae)
    try:
        step = accelerate(s, compute, device)
    except UserError:
        return None
    sync(device)
    t0 = time.perf_counter()
    train_loop(step, [data], steps=5, batch_size=params.train.batch_size, seed=0, progress=False)  # compile, capture
    sync(device)
    return s, step, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strategies", nargs="*", default=None)
    ap.add_argument("--paths", nargs="*", default=None, choices=list(PATHS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--width", type=int, default=None, help="model.width (default: params.yaml's)")
    ap.add_argument("--batch", type=int, default=None, help="train.batch_size (default: params.yaml's)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the stages' compute.cpu_threads)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    params = load_params(args.params)
    params = params.model_copy(update={"train": params.train.model_copy(update={"batch_size": args.batch or params.train.batch_size})})
    device = torch.device(args.device)
    shape = NetShape(args.size, args.channels, params.model.z_dim, args.width or params.model.width)
    bs, log_every = params.train.batch_size, params.train.log_every
    data = torch.rand(max(2048, 4 * bs), args.channels, args.size, args.size, generator=torch.Generator().manual_seed(0))
    data = (data * 2 - 1).to(device)
    strategies = args.strategies or list(registry())
    paths = args.paths or (list(PATHS) if device.type == "cuda" else list(CPU_PATHS))

    seed_everything(0)
    ae = AutoEncoder(shape).to(device)
    train_loop(AETrainer(ae, 1e-3, (0.9, 0.999)), [data], steps=20, batch_size=bs, seed=0, progress=False)
    ae.eval().requires_grad_(False)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'bench.db'}"
        run = Run.start("bench", {"stage": "bench"})
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} cores"
        print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}, {shape}, "
              f"batch {bs}, steps {args.steps}, repeats {args.repeats}, MLflow logging every {log_every} steps")  # fmt: skip
        print(f"{'strategy':<12} {'path':<14} {'img/s':>9} {'x standard':>11} {'x bare':>7} {'set-up s':>9}")
        for sname in strategies:
            cls = registry()[sname]
            built = {p: build(cls, params, shape, ae, data, device, p) for p in paths}
            rates: dict[str, list[float]] = {p: [] for p in paths if built[p]}
            bare: list[float] = []
            for _ in range(args.repeats):
                for p in rates:
                    rates[p].append(shared(built[p][1], data, args.steps, bs, run, log_every))
                if sname == "dcgan" and built.get("standard"):
                    bare.append(bare_dcgan(built["standard"][0], data, args.steps, bs))
            base = statistics.median(rates["standard"]) if "standard" in rates else None
            b = statistics.median(bare) if bare else None
            for p in paths:
                if not built[p]:
                    print(f"{sname:<12} {p:<14} {'n/a':>9}")
                    continue
                r = statistics.median(rates[p])
                vs_std = f"{r / base:11.3f}" if base else f"{'':>11}"
                vs_bare = f"{r / b:7.3f}" if b else f"{'':>7}"
                print(f"{sname:<12} {p:<14} {r:9.0f} {vs_std} {vs_bare} {built[p][2]:9.2f}", flush=True)
            if b:
                print(f"{sname:<12} {'bare loop':<14} {b:9.0f}")
        run.end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
