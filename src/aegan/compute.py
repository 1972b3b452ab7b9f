"""Where and how fast the networks run: device, CPU threads, and the optional faster training step on CUDA.

`setup(params.compute)` is every torch stage's first step: the device, and on
the CPU a fixed number of torch threads (`compute.cpu_threads`), because
oneDNN's convolutions give different float results for different thread
counts: a fixed count keeps results equal whatever the machine and however
many stages `aegan run --jobs` runs at once (0: cores / stages at once, from
OMP_NUM_THREADS, which `aegan run` sets).

Today's training step is the default; each speed-up is a switch of its own,
so it can be measured against it (bench/throughput.py):

- `fused_optimizer`: Adam's fused kernel (one launch per step for all tensors);
- `channels_last`: NHWC layout for networks and batches, cudnn autotuning on;
- `compile`: `torch.compile` of every network (compile time is counted in the
  run's train_seconds: for long runs);
- `cuda_graphs`: the whole training step captured once as a CUDA graph and
  replayed (no Python or launch overhead per step), for strategies whose step
  has no host sync and no per-step Python state (`Strategy.cuda_graph_safe`).
"""

from __future__ import annotations

import os
from typing import Callable

import torch

from aegan.errors import UserError
from aegan.loop import resolve_device


def setup(compute) -> torch.device:
    """The device `compute.device` names; torch threads on the CPU; cudnn autotuning for `channels_last`."""
    device = resolve_device(compute.device)
    threads = compute.cpu_threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or (os.cpu_count() or 1)
    torch.set_num_threads(max(1, threads))
    if device.type == "cuda" and compute.channels_last:
        torch.backends.cudnn.benchmark = True
    return device


def check(compute, strategy, device: torch.device) -> None:
    """One line, before any training, when the switches do not fit the device or the strategy."""
    if compute.cuda_graphs:
        if device.type != "cuda":
            raise UserError("compute.cuda_graphs needs CUDA (compute.device is cpu here): set it to false")
        if compute.amp:
            raise UserError("compute.cuda_graphs does not work with compute.amp (autocast caches): turn one off")
        if not getattr(strategy, "cuda_graph_safe", False):
            raise UserError(f"compute.cuda_graphs: strategy {strategy.name!r} does not declare its training step "
                            "graph-safe (no host sync, no per-step Python state): set compute.cuda_graphs to false")  # fmt: skip


def accelerate(strategy, compute, device: torch.device) -> Callable:
    """Apply the switches to a built (and, when resuming, restored) strategy; returns the step function to train with."""
    check(compute, strategy, device)
    for opt in strategy.optimizers().values():
        configure_adam(opt, fused=compute.fused_optimizer, capturable=compute.cuda_graphs)
    step = strategy.train_step
    if compute.channels_last:
        strategy.to(memory_format=torch.channels_last)
        step = _channels_last(step)
    if compute.compile:
        for module in strategy.children():
            if any(True for _ in module.parameters()):
                module.compile()
    if compute.cuda_graphs:
        step = GraphedStep(step)
    return step


def configure_adam(opt: torch.optim.Optimizer, fused: bool, capturable: bool) -> None:
    """Switch an existing Adam between today's implementation and the fused / graph-capturable one.

    Set after a checkpoint is restored (its param groups carry the settings it was saved with);
    a step count kept on the CPU moves to the parameters' device, where the fused and capturable kernels want it.
    """
    for group in opt.param_groups:
        group.update(fused=True if fused else None, foreach=False if fused else None, capturable=capturable)
        if fused or capturable:
            for p in group["params"]:
                state = opt.state.get(p)
                if state and torch.is_tensor(state.get("step")):
                    state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


def _channels_last(step: Callable) -> Callable:
    def step_channels_last(*batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return step(*(b.contiguous(memory_format=torch.channels_last) if b.dim() == 4 else b for b in batch))

    return step_channels_last


class CudaGraphs:
    """The CUDA calls GraphedStep makes (one place, so the logic around them is testable without a GPU)."""

    def side_stream(self):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        return torch.cuda.stream(stream), lambda: torch.cuda.current_stream().wait_stream(stream)

    def capture(self, fn: Callable, *inputs: torch.Tensor):
        """Record fn(*inputs) into a graph (nothing runs yet); returns (graph, its outputs)."""
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            out = fn(*inputs)
        return graph, out

    def replay(self, graph) -> None:
        graph.replay()


class GraphedStep:
    """One training step per call, the same steps as `fn`: the first `warmup` calls run `fn` on a side stream
    (lazy initialisations happen there); the next call captures `fn` on fixed input tensors and replays it; every
    later call copies its batch into those tensors and replays. Returns the graph's (fixed) output tensors."""

    def __init__(self, fn: Callable, warmup: int = 3, backend: CudaGraphs | None = None):
        self.fn, self.warmup, self.backend = fn, warmup, backend or CudaGraphs()
        self.calls = 0
        self.graph = None
        self.inputs: tuple[torch.Tensor, ...] = ()
        self.outputs: dict[str, torch.Tensor] = {}

    def __call__(self, *batch: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            context, join = self.backend.side_stream()
            with context:
                out = self.fn(*batch)
            join()
            return out
        if self.graph is None:
            self.inputs = tuple(b.clone() for b in batch)
            self.graph, self.outputs = self.backend.capture(self.fn, *self.inputs)
        else:
            for fixed, b in zip(self.inputs, batch):
                fixed.copy_(b)
        self.backend.replay(self.graph)
        return self.outputs
