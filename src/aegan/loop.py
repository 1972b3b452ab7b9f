"""The one shared training loop: used by every strategy, the AE and the scorer.

It knows nothing of any strategy: it draws batches from tensors held on the
device (no per-sample DataLoader for small datasets), calls `step_fn(*batch)`,
averages what it returns over `log_every` steps, and hands the averages to
`on_log`. Every `eval_every` steps it calls `on_eval`. A non-finite loss stops
the run at once and marks it diverged: for a stability study that is a
result, not a crash.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

StepFn = Callable[..., dict[str, torch.Tensor]]


def resolve_device(name: str) -> torch.device:
    from aegan.errors import UserError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("compute.device is 'cuda' but no CUDA device is available: set compute.device to auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Same seed, same weights on CPU: seeds every RNG the networks and batches draw from."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class LoopResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one row per log window (+ eval rows)
    steps_done: int = 0
    diverged: bool = False
    diverged_at: int | None = None
    seconds: float = 0.0  # wall time of the whole loop
    eval_seconds: float = 0.0  # of which spent in on_eval
    images_seen: int = 0

    @property
    def images_per_second(self) -> float:
        """Training throughput, evaluation time excluded."""
        train_seconds = self.seconds - self.eval_seconds
        return self.images_seen / train_seconds if train_seconds > 0 else 0.0


class BatchSampler:
    """Shuffled epochs over in-memory tensors, seeded; the last incomplete batch is dropped."""

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int, seed: int):
        n = len(tensors[0])
        if batch_size > n:
            from aegan.errors import UserError

            raise UserError(f"batch_size {batch_size} is larger than the training split ({n} images): lower it")
        self.tensors, self.batch_size, self.n = tensors, batch_size, n
        self.generator = torch.Generator().manual_seed(seed)
        self._order: torch.Tensor | None = None
        self._pos = n

    def next(self) -> tuple[torch.Tensor, ...]:
        if self._pos + self.batch_size > self.n:
            self._order = torch.randperm(self.n, generator=self.generator).to(self.tensors[0].device)
            self._pos = 0
        idx = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return tuple(t[idx] for t in self.tensors)


def train_loop(
    step_fn: StepFn,
    data: Sequence[torch.Tensor],
    *,
    steps: int,
    batch_size: int,
    seed: int,
    log_every: int = 10,
    on_log: Callable[[dict[str, float], int], None] | None = None,
    eval_every: int = 0,
    on_eval: Callable[[int], dict[str, float]] | None = None,
    divergence_bound: float = math.inf,
    desc: str = "train",
    progress: bool = True,
) -> LoopResult:
    sampler = BatchSampler(data, batch_size, seed)
    result = LoopResult()
    sums: dict[str, torch.Tensor] = {}
    window = 0
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, disable=not progress, mininterval=1.0, dynamic_ncols=True)
    for step in range(1, steps + 1):
        out = step_fn(*sampler.next())
        for k, v in out.items():
            sums[k] = sums[k] + v if k in sums else v.detach().float().clone()
        window += 1
        result.images_seen += batch_size
        if step % log_every == 0 or step == steps:
            # one host sync per window, not per step
            means = {k: float(v) / window for k, v in sums.items()}
            sums, window = {}, 0
            bad = [k for k, v in means.items() if not math.isfinite(v) or abs(v) > divergence_bound]
            row = {"step": step, **means}
            result.history.append(row)
            if on_log:
                on_log(means, step)
            bar.update(step - bar.n)
            bar.set_postfix({k: f"{v:.3g}" for k, v in list(means.items())[:3]}, refresh=False)
            if bad:
                result.diverged, result.diverged_at = True, step
                result.steps_done = step
                break
        if on_eval and eval_every and (step % eval_every == 0 or step == steps):
            t0 = time.perf_counter()
            result.history.append({"step": step, **on_eval(step)})
            result.eval_seconds += time.perf_counter() - t0
        result.steps_done = step
    bar.close()
    result.seconds = time.perf_counter() - start
    return result
