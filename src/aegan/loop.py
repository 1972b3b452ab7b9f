"""The one shared training loop: used by every strategy, the AE and the scorer.

It knows nothing of any strategy: it draws batches from tensors held on the
device (no per-sample DataLoader for small datasets), calls `step_fn(*batch)`,
averages what it returns over `log_every` steps, and hands the averages to
`on_log`. Every `eval_every` steps, and once before the first step (step 0: the
curve starts where training starts), it calls `on_eval`. A non-finite loss (or
one larger than `divergence_bound`) stops the run at once and marks it
diverged: for a stability study that is a result, not a crash.

Every `checkpoint_every` steps, and after the last step, it hands
`on_checkpoint(step, loop_state)` everything of its own needed to continue
bit-identically: step, history, the partial log window, the batch sampler and
every RNG. `train_loop(..., state=loop_state)` continues from there; what the
step function owns (networks, optimizers) the caller saves and restores.

Progress: a tqdm bar on a terminal; otherwise (a log file, CI) a plain line at
each tenth of the steps, with the latest losses and small-sample FID.
"""

from __future__ import annotations

import math
import random
import sys
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
    eval_times: list[tuple[int, float]] = field(default_factory=list)  # (step, training seconds before it): wall axis

    @property
    def images_per_second(self) -> float:
        """Training throughput, evaluation time excluded."""
        train_seconds = self.seconds - self.eval_seconds
        return self.images_seen / train_seconds if train_seconds > 0 else 0.0


class BatchSampler:
    """Shuffled epochs over in-memory tensors, seeded; the last incomplete batch is dropped."""

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int, seed: int, batch_key: str = "batch_size"):
        n = len(tensors[0])
        if batch_size > n:
            from aegan.errors import UserError

            raise UserError(f"{batch_key} = {batch_size} is larger than the training split ({n} images): lower "
                            f"{batch_key}, or lower prepare.heldout_fraction and run prepare again")  # fmt: skip
        self.tensors, self.batch_size, self.n = tensors, batch_size, n
        self.generator = torch.Generator().manual_seed(seed)
        self._order: torch.Tensor | None = None
        self._pos = n

    def state(self) -> dict:
        order = None if self._order is None else self._order.cpu()
        return {"generator": self.generator.get_state(), "order": order, "pos": self._pos}

    def load_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        order = state["order"]
        self._order = None if order is None else order.to(self.tensors[0].device)
        self._pos = state["pos"]

    def next(self) -> tuple[torch.Tensor, ...]:
        if self._pos + self.batch_size > self.n:
            self._order = torch.randperm(self.n, generator=self.generator).to(self.tensors[0].device)
            self._pos = 0
        idx = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return tuple(t[idx] for t in self.tensors)


def rng_state() -> dict:
    """torch (CPU and CUDA), numpy and python RNG states, in types `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


class PlainProgress:
    """One line on stderr at each tenth of the steps (where no terminal shows a bar): step, time, latest values."""

    def __init__(self, desc: str, steps: int, start_step: int, started: float, parts: int = 10):
        self.desc, self.steps, self.started = desc, steps, started
        self.every = max(1, math.ceil(steps / parts))
        self.next = (start_step // self.every + 1) * self.every
        self.latest: dict[str, float] = {}

    def at(self, step: int) -> None:
        if step < self.next and step != self.steps:
            return
        self.next = (step // self.every + 1) * self.every
        values = " ".join(f"{k} {v:.4g}" for k, v in self.latest.items())
        print(f"{self.desc}: step {step}/{self.steps} ({100 * step // self.steps}%), "
              f"{time.perf_counter() - self.started:.0f} s{', ' + values if values else ''}",
              file=sys.stderr, flush=True)  # fmt: skip


def train_loop(
    step_fn: StepFn,
    data: Sequence[torch.Tensor],
    *,
    steps: int,
    batch_size: int,
    seed: int,
    batch_key: str = "batch_size",
    log_every: int = 10,
    on_log: Callable[[dict[str, float], int], None] | None = None,
    eval_every: int = 0,
    on_eval: Callable[[int], dict[str, float]] | None = None,
    divergence_bound: float = math.inf,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[int, dict], None] | None = None,
    state: dict | None = None,
    desc: str = "train",
    progress: bool = True,
) -> LoopResult:
    """Run steps 1..`steps`, or, given a `state` from `on_checkpoint`, the steps after it."""
    sampler = BatchSampler(data, batch_size, seed, batch_key)
    result = LoopResult()
    sums: dict[str, torch.Tensor] = {}
    window = 0
    start_step, spent = 0, 0.0
    if state is not None:
        start_step, spent = state["step"], state["seconds"]
        result.history = [dict(row) for row in state["history"]]
        result.steps_done, result.images_seen, result.eval_seconds = start_step, state["images_seen"], state["eval_seconds"]
        result.eval_times = [tuple(t) for t in state.get("eval_times", [])]
        device = data[0].device
        sums, window = {k: v.to(device) for k, v in state["sums"].items()}, state["window"]
        sampler.load_state(state["sampler"])
        set_rng_state(state["rng"])

    def loop_state(step: int) -> dict:
        return {
            "step": step, "history": [dict(row) for row in result.history],
            "sums": {k: v.detach().cpu() for k, v in sums.items()}, "window": window,
            "images_seen": result.images_seen, "eval_seconds": result.eval_seconds,
            "seconds": spent + time.perf_counter() - start, "sampler": sampler.state(), "rng": rng_state(),
            "eval_times": list(result.eval_times),
        }  # fmt: skip

    def evaluate(step: int) -> None:
        t0 = time.perf_counter()
        result.eval_times.append((step, spent + t0 - start - result.eval_seconds))
        scores = on_eval(step)
        result.history.append({"step": step, **scores})
        result.eval_seconds += time.perf_counter() - t0
        if lines:
            lines.latest |= scores

    start = time.perf_counter()
    plain = progress and not sys.stderr.isatty()
    bar = tqdm(total=steps, initial=start_step, desc=desc, disable=not progress or plain, mininterval=1.0,
               dynamic_ncols=True)  # fmt: skip
    lines = PlainProgress(desc, steps, start_step, start - spent) if plain else None
    if on_eval and eval_every and state is None:
        evaluate(0)  # the generator before its first step: no RNG is drawn, so training is unchanged
    for step in range(start_step + 1, steps + 1):
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
            if lines:
                lines.latest |= means
            if bad:
                result.diverged, result.diverged_at = True, step
                result.steps_done = step
                break
        if on_eval and eval_every and (step % eval_every == 0 or step == steps):
            evaluate(step)
        if lines:
            lines.at(step)
        result.steps_done = step
        if on_checkpoint and ((checkpoint_every and step % checkpoint_every == 0) or step == steps):
            on_checkpoint(step, loop_state(step))
    bar.close()
    result.seconds = spent + time.perf_counter() - start
    return result
