"""The shared loop: it trains, it is deterministic on CPU, and divergence is data, not a crash."""

from __future__ import annotations

import math

import pytest
import torch

from aegan.ae import AETrainer
from aegan.errors import UserError
from aegan.loop import seed_everything, train_loop
from aegan.nets import AutoEncoder
from aegan.strategies.dcgan import DCGAN
from params_file import validated


def test_a_few_steps_lower_the_reconstruction_loss(digits16, small_shape):
    seed_everything(0)
    ae = AutoEncoder(small_shape)
    res = train_loop(AETrainer(ae, 1e-3, (0.9, 0.999)), [digits16], steps=100, batch_size=64, seed=0,
                     log_every=10, progress=False)  # fmt: skip
    losses = [row["loss_rec"] for row in res.history]
    assert len(losses) == 10 and res.steps_done == 100 and not res.diverged
    assert losses[-1] < 0.5 * losses[0]


def _train_dcgan(digits, shape, optim, seed, steps=15):
    seed_everything(seed)
    s = DCGAN(validated().dcgan, shape, optim)
    train_loop(s.train_step, [digits], steps=steps, batch_size=32, seed=seed, progress=False)
    return {k: v.clone() for k, v in s.state_dict().items()}


def test_same_seed_gives_identical_weights_on_cpu(digits16, small_shape, optim):
    a = _train_dcgan(digits16, small_shape, optim, seed=3)
    b = _train_dcgan(digits16, small_shape, optim, seed=3)
    c = _train_dcgan(digits16, small_shape, optim, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_non_finite_loss_stops_the_run_and_marks_it_diverged(digits16):
    calls = []

    def step(x):
        calls.append(1)
        return {"loss": torch.tensor(math.nan if len(calls) >= 7 else 1.0)}

    res = train_loop(step, [digits16], steps=100, batch_size=8, seed=0, log_every=5, progress=False)
    assert res.diverged and res.diverged_at == 10 and res.steps_done == 10
    assert len(calls) == 10  # stopped at the end of the window that saw the NaN


def test_divergence_bound(digits16):
    res = train_loop(lambda x: {"loss": torch.tensor(1e6)}, [digits16], steps=20, batch_size=8, seed=0,
                     log_every=1, divergence_bound=1e3, progress=False)  # fmt: skip
    assert res.diverged and res.diverged_at == 1


def test_eval_hook_is_called_and_timed(digits16):
    seen = []
    res = train_loop(lambda x: {"loss": x.mean()}, [digits16], steps=10, batch_size=8, seed=0, eval_every=4,
                     on_eval=lambda step: seen.append(step) or {"fid_small": 1.0}, progress=False)  # fmt: skip
    assert seen == [0, 4, 8, 10]  # 0: the curve starts before the first step
    assert [r["step"] for r in res.history if "fid_small" in r] == [0, 4, 8, 10]
    assert [step for step, _ in res.eval_times] == [0, 4, 8, 10]
    seconds = [t for _, t in res.eval_times]
    assert seconds[0] < 0.1 and seconds == sorted(seconds)  # training seconds before each evaluation: the wall axis


def test_an_evaluation_before_the_first_step_changes_no_training_step(digits16):
    """Step 0's evaluation draws from no shared RNG: the losses equal those of a run without evaluations."""

    from aegan.generator import sample_uint8

    def step(x):
        return {"loss": x.mean() + torch.randn(())}  # each step draws from the global RNG

    def sampling_eval(step):  # the train stage's evaluation draws its latents as this does
        images = sample_uint8(lambda z: torch.tanh(z[:, :4].reshape(-1, 1, 2, 2)), 8, 4, seed=step, device="cpu")
        return {"fid_small": float(images.float().mean())}

    torch.manual_seed(0)
    plain = train_loop(step, [digits16], steps=12, batch_size=8, seed=0, log_every=4, progress=False)
    torch.manual_seed(0)
    evaluated = train_loop(step, [digits16], steps=12, batch_size=8, seed=0, log_every=4, eval_every=4,
                           on_eval=sampling_eval, progress=False)  # fmt: skip
    assert [r for r in evaluated.history if "loss" in r] == plain.history


def test_batches_cover_each_epoch_once(digits16):
    data = torch.arange(40).float()
    seen = []
    train_loop(lambda x: seen.append(x.clone()) or {}, [data], steps=5, batch_size=8, seed=0, progress=False)
    assert sorted(torch.cat(seen).tolist()) == list(range(40))


def test_batch_larger_than_data_is_a_user_error_naming_the_key():
    with pytest.raises(UserError, match=r"^train\.batch_size = 64 is larger than the training split \(10 images\): "
                                        r"lower train\.batch_size, or lower prepare\.heldout_fraction"):
        train_loop(lambda x: {}, [torch.zeros(10, 1)], steps=1, batch_size=64, seed=0, batch_key="train.batch_size",
                   progress=False)


def test_without_a_terminal_progress_is_a_plain_line_at_each_tenth_with_losses_and_fid(digits16, capsys):
    def step(x):
        return {"loss": x.mean()}

    train_loop(step, [digits16], steps=95, batch_size=8, seed=0, log_every=5, eval_every=20,
               on_eval=lambda s: {"fid_small": 100.0 / max(s, 1)}, desc="dcgan-0")  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()  # captured: not a terminal
    steps = [int(line.split("step ")[1].split("/")[0]) for line in lines]
    assert steps == [10, 20, 30, 40, 50, 60, 70, 80, 90, 95]  # every ceil(95 / 10) = 10 steps, and the last
    assert all(line.startswith("dcgan-0: step ") and "loss " in line for line in lines)
    assert "fid_small 100 " in lines[0] and "fid_small 5 " in lines[1]  # step 0's evaluation, then step 20's
    assert "(100%)" in lines[-1]


def test_resumed_progress_continues_at_the_next_tenth(digits16, capsys):
    def step(x):
        return {"loss": x.mean()}

    seen = {}
    train_loop(step, [digits16], steps=40, batch_size=8, seed=0, log_every=4, progress=False,
               checkpoint_every=20, on_checkpoint=lambda s, state: seen.setdefault(s, state))  # fmt: skip
    train_loop(step, [digits16], steps=40, batch_size=8, seed=0, log_every=4, state=seen[20], desc="x")
    steps = [int(line.split("step ")[1].split("/")[0]) for line in capsys.readouterr().err.strip().splitlines()]
    assert steps == [24, 28, 32, 36, 40]
