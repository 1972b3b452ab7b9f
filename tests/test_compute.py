"""compute.py on the CPU: fixed threads, and every speed-up switch runs and trains as today's step does.

CUDA graphs cannot run on a CPU: their capture and replay go through a fake
backend here (the calls GraphedStep makes are the only CUDA-specific part).
Nothing here measures speed on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from aegan.compute import GraphedStep, accelerate, check, configure_adam, setup
from aegan.errors import UserError
from aegan.loop import seed_everything, train_loop
from aegan.strategies import get_strategy
from params_file import validated

STEPS = 12


def compute(**overrides):
    """params.yaml's compute section with `overrides`, validated."""
    return validated({"compute": overrides}).compute


@pytest.fixture()
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cpu_threads_are_fixed_by_params_or_follow_the_stages_at_once(threads, monkeypatch):
    assert setup(compute(device="cpu", cpu_threads=1)).type == "cpu" and torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # what `aegan run --jobs` sets: cores / stages at once
    setup(compute(device="cpu", cpu_threads=0))
    assert torch.get_num_threads() == 2
    setup(compute(device="cpu", cpu_threads=3))
    assert torch.get_num_threads() == 3


def build(name: str, small_shape, pretrained_ae):
    cls = get_strategy(name)
    seed_everything(0)
    params = validated()
    return cls(getattr(params, name), small_shape, params.train.optimizer, pretrained_ae if cls.uses_ae else None)


def train(step, digits16, steps: int = STEPS):
    return train_loop(step, [digits16], steps=steps, batch_size=32, seed=0, log_every=4, progress=False).history


def weights(strategy) -> list[torch.Tensor]:
    return [p.detach().clone() for p in strategy.parameters()]


@pytest.mark.parametrize("switch", ["fused_optimizer", "channels_last"])
@pytest.mark.parametrize("name", ["dcgan", "vaegan"])
def test_each_switch_trains_like_todays_step(name, switch, digits16, small_shape, pretrained_ae, threads):
    torch.set_num_threads(1)
    today = build(name, small_shape, pretrained_ae)
    train(accelerate(today, compute(), torch.device("cpu")), digits16)
    fast = build(name, small_shape, pretrained_ae)
    step = accelerate(fast, compute(**{switch: True}), torch.device("cpu"))
    train(step, digits16)
    if switch == "fused_optimizer":
        assert all(g["fused"] for o in fast.optimizers().values() for g in o.param_groups)
    for a, b in zip(weights(today), weights(fast)):
        assert torch.allclose(a, b, atol=1e-4), "a speed-up changed more than the last digits"


def test_todays_step_is_unchanged_by_default(digits16, small_shape, pretrained_ae, threads):
    torch.set_num_threads(1)
    a = build("dcgan", small_shape, pretrained_ae)
    train(a.train_step, digits16)
    b = build("dcgan", small_shape, pretrained_ae)
    step = accelerate(b, compute(), torch.device("cpu"))
    assert step == b.train_step
    train(step, digits16)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))


def test_adam_switched_after_a_restored_checkpoint_keeps_going():
    """A checkpoint restores the param groups it was saved with; the switch is applied after, step counts moved."""
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(4, 3)).sum().backward()
    opt.step()
    state = opt.state_dict()
    opt2 = torch.optim.Adam(net.parameters())
    opt2.load_state_dict(state)
    configure_adam(opt2, fused=True, capturable=False)
    net(torch.ones(4, 3)).sum().backward()
    opt2.step()
    assert all(g["fused"] and not g["foreach"] for g in opt2.param_groups)
    assert float(opt2.state[net.weight]["step"]) == 2.0
    configure_adam(opt2, fused=False, capturable=False)
    assert all(g["fused"] is None for g in opt2.param_groups)


class FakeGraphs:
    """CPU stand-in for CudaGraphs: capture records (runs nothing), replay runs the recorded step on the fixed inputs."""

    def __init__(self):
        self.captures, self.replays, self.side = 0, 0, 0

    def side_stream(self):
        import contextlib

        self.side += 1
        return contextlib.nullcontext(), lambda: None

    def capture(self, fn, *inputs):
        self.captures += 1
        return (fn, inputs), {}

    def replay(self, graph):
        self.replays += 1
        fn, inputs = graph
        self.last_outputs.clear()
        self.last_outputs.update(fn(*inputs))


def test_graphed_step_is_one_training_step_per_call(digits16, small_shape, pretrained_ae, threads):
    torch.set_num_threads(1)
    eager = build("dcgan", small_shape, pretrained_ae)
    eager_history = train(eager.train_step, digits16)
    graphed = build("dcgan", small_shape, pretrained_ae)
    fake = FakeGraphs()
    step = GraphedStep(graphed.train_step, warmup=3, backend=fake)
    original_capture = fake.capture

    def capture(fn, *inputs):  # the outputs dict the replays fill is the one GraphedStep returns
        graph, fake.last_outputs = original_capture(fn, *inputs)
        return graph, fake.last_outputs

    fake.capture = capture
    history = train(step, digits16)
    assert (fake.side, fake.captures, fake.replays) == (3, 1, STEPS - 3)
    assert history == eager_history
    assert all(torch.equal(a, b) for a, b in zip(weights(eager), weights(graphed)))


def test_switches_that_cannot_work_here_are_one_line_errors(small_shape, pretrained_ae):
    dcgan, manifold = build("dcgan", small_shape, pretrained_ae), build("ae_manifold", small_shape, pretrained_ae)
    cuda = torch.device("cuda")  # only named: nothing runs on it
    with pytest.raises(UserError, match="needs CUDA"):
        check(compute(cuda_graphs=True), dcgan, torch.device("cpu"))
    with pytest.raises(UserError, match="compute.amp"):
        check(compute(cuda_graphs=True, amp=True), dcgan, cuda)
    with pytest.raises(UserError, match="'ae_manifold' does not declare"):
        check(compute(cuda_graphs=True), manifold, cuda)
    check(compute(cuda_graphs=True), dcgan, cuda)


@pytest.mark.e2e
def test_compiled_networks_train_like_todays_step(digits16, small_shape, pretrained_ae, threads):
    """torch.compile (inductor, C++ on the CPU): slow to compile, hence e2e."""
    torch.set_num_threads(1)
    today = build("dcgan", small_shape, pretrained_ae)
    train(today.train_step, digits16, steps=6)
    compiled = build("dcgan", small_shape, pretrained_ae)
    train(accelerate(compiled, compute(compile=True), torch.device("cpu")), digits16, steps=6)
    for a, b in zip(weights(today), weights(compiled)):
        assert torch.allclose(a, b, atol=1e-4)
    assert set(compiled.state_dict()) == set(today.state_dict()), "compiling renamed the saved weights"
