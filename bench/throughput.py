"""Training throughput: the shared loop (MLflow logging on) against a bare PyTorch loop, in one run.

    python bench/throughput.py [--steps 200] [--repeats 3] [--strategies dcgan ...]

Prints images/second of the shared loop for every strategy and, for `dcgan`,
the ratio shared/bare over the same networks, batch and optimizers (target
>= 0.95). Both loops run interleaved `--repeats` times; medians are reported.
Uses the repo's params.yaml for sizes (model, train.batch_size) on the CPU
unless --device says otherwise. Evaluation (small-sample FID) is off in both:
this measures training.
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
from aegan.data.arrays import resize_images  # noqa: E402
from aegan.data.sources import load_digits_source  # noqa: E402
from aegan.images import to_unit_range  # noqa: E402
from aegan.loop import seed_everything, train_loop  # noqa: E402
from aegan.losses import bce  # noqa: E402
from aegan.nets import AutoEncoder, NetShape  # noqa: E402
from aegan.params import load_params  # noqa: E402
from aegan.strategies import registry  # noqa: E402
from aegan.tracking import Run  # noqa: E402


def bare_dcgan(strategy, data: torch.Tensor, steps: int, batch_size: int) -> float:
    """The textbook loop (pytorch/examples dcgan): no logging, no averaging, no hooks. Returns images/s."""
    G, D, opt_g, opt_d = strategy.generator, strategy.discriminator, strategy.opt_g, strategy.opt_d
    gen = torch.Generator().manual_seed(0)
    n = len(data)
    perm, pos = torch.randperm(n, generator=gen), 0
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
    if data.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def shared(strategy, data: torch.Tensor, steps: int, batch_size: int, run: Run, log_every: int) -> float:
    result = train_loop(strategy.train_step, [data], steps=steps, batch_size=batch_size, seed=0,
                        log_every=log_every, on_log=run.log_metrics, progress=False)  # fmt: skip
    run.flush()
    if data.device.type == "cuda":
        torch.cuda.synchronize()
    return result.images_per_second


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strategies", nargs="*", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()

    params = load_params(args.params)
    device = torch.device(args.device)
    shape = NetShape(16, 1, params.model.z_dim, params.model.width)
    data = to_unit_range(resize_images(load_digits_source()[0], 16), device)
    bs, log_every = params.train.batch_size, params.train.log_every
    strategies = args.strategies or list(registry())

    seed_everything(0)
    ae = AutoEncoder(shape).to(device)
    train_loop(AETrainer(ae, 1e-3, (0.9, 0.999)), [data], steps=50, batch_size=bs, seed=0, progress=False)
    ae.eval().requires_grad_(False)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'bench.db'}"
        run = Run.start("bench", {"stage": "bench"})
        print(f"device {device}, threads {torch.get_num_threads()}, shape {shape}, batch {bs}, steps {args.steps}, "
              f"repeats {args.repeats}, MLflow logging every {log_every} steps")  # fmt: skip
        print(f"{'strategy':<12} {'shared img/s':>13} {'bare img/s':>11} {'ratio':>7}")
        for name in strategies:
            cls = registry()[name]
            seed_everything(0)
            s = cls(getattr(params, name), shape, params.train.optimizer, ae).to(device)
            s.setup(data, ae)
            shared(s, data, 20, bs, run, log_every)  # warm-up
            ours, bare = [], []
            for _ in range(args.repeats):
                ours.append(shared(s, data, args.steps, bs, run, log_every))
                if name == "dcgan":
                    bare.append(bare_dcgan(s, data, args.steps, bs))
            o = statistics.median(ours)
            if bare:
                b = statistics.median(bare)
                print(f"{name:<12} {o:13.0f} {b:11.0f} {o / b:7.3f}")
            else:
                print(f"{name:<12} {o:13.0f} {'':>11} {'':>7}")
        run.end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
