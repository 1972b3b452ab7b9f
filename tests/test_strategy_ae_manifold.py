"""ae_manifold: L_G = L_GAN + lambda_m ||G(z) - Q(G(z))||^2 with Q the frozen pretrained AE."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from aegan.loop import BatchSampler
from aegan.nets import Decoder, count_parameters
from aegan.strategies import registry
from aegan.params_strategies import AEManifoldParams
from aegan.strategies.ae_manifold import AEManifold, lambda_at
from aegan.strategies.dcgan import DCGAN
from params_file import complete, validated


def P(**overrides) -> AEManifoldParams:
    """The committed params.yaml's ae_manifold section with `overrides`, validated as that section."""
    return AEManifoldParams.model_validate(complete()["ae_manifold"] | overrides)


def make(small_shape, optim, ae, seed=0, **params):
    torch.manual_seed(seed)
    return AEManifold(validated({"ae_manifold": params}).ae_manifold, small_shape, optim, ae)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_registered_and_params_validated():
    assert AEManifold.name == "ae_manifold" and AEManifold.uses_ae
    assert registry()["ae_manifold"] is AEManifold
    p = validated().ae_manifold
    assert p == P() and p.lambda_m > 0 and lambda_at(p, 0) == p.lambda_m == lambda_at(p, 10**6)
    for bad in [
        dict(lambda_m=-1.0),
        dict(warmup_steps=-1),
        dict(decay="linear", decay_start=10, decay_end=10),
        dict(decay="cosine", decay_start=10, decay_end=5),
        dict(decay="none", decay_end=100),  # a schedule that would silently do nothing
        dict(decay="exp", decay_end=100),
        dict(lambda_g=1.0),
    ]:
        with pytest.raises(ValidationError):
            P(**bad)


def test_schedule_values():
    p = P(lambda_m=2.0, warmup_steps=10, decay="linear", decay_start=20, decay_end=30)
    got = [lambda_at(p, t) for t in (0, 5, 10, 15, 20, 25, 30, 1000)]
    assert got == pytest.approx([0.0, 1.0, 2.0, 2.0, 2.0, 1.0, 0.0, 0.0])
    c = P(lambda_m=2.0, decay="cosine", decay_start=20, decay_end=30)
    got = [lambda_at(c, t) for t in (0, 20, 25, 30, 40)]
    assert got == pytest.approx([2.0, 2.0, 1.0, 0.0, 0.0])
    assert lambda_at(c, 22) == pytest.approx(1.0 + math.cos(math.pi * 0.2))
    assert lambda_at(P(lambda_m=3.0, warmup_steps=4), 1) == pytest.approx(0.75)


def test_networks(small_shape, optim, pretrained_ae):
    s = make(small_shape, optim, pretrained_ae)
    assert type(s.generator) is Decoder
    assert count_parameters(s.generator) == count_parameters(DCGAN(validated().dcgan, small_shape, optim).generator)
    assert same(snapshot(s.q), snapshot(pretrained_ae))  # Q = the pretrained AE ...
    ae_ptrs = {p.data_ptr() for p in pretrained_ae.parameters()}
    assert not ae_ptrs & {p.data_ptr() for p in s.parameters()}  # ... as a copy
    assert not any(p.requires_grad for p in s.q.parameters())
    optimized = {id(p) for o in s.optimizers().values() for g in o.param_groups for p in g["params"]}
    assert not optimized & {id(p) for p in s.q.parameters()}
    assert set(s.optimizers()) == {"opt_g", "opt_d"}


def test_q_never_changes(small_shape, optim, pretrained_ae, digits16):
    ae_before = snapshot(pretrained_ae)
    s = make(small_shape, optim, pretrained_ae, lambda_m=5.0).train()
    q_before = snapshot(s.q)  # parameters AND batch-norm running stats
    assert not any(m.training for m in s.q.modules()) and s.generator.training
    torch.manual_seed(0)
    for i in range(4):
        out = s.train_step(digits16[i * 32 : (i + 1) * 32])
        assert all(v.ndim == 0 and not v.requires_grad and math.isfinite(v.item()) for v in out.values())
    assert {"loss_d", "loss_g", "penalty_manifold", "lambda_m"} <= out.keys()
    assert not any(m.training for m in s.q.modules())
    assert same(snapshot(s.q), q_before) and same(snapshot(pretrained_ae), ae_before)


def test_penalty_gradient_flows_through_q_into_g(small_shape, optim, pretrained_ae):
    s = make(small_shape, optim, pretrained_ae)
    fake = s.generator(s.sample_prior(16))
    assert s.manifold_penalty(fake).item() == pytest.approx((fake - pretrained_ae(fake)).pow(2).mean().item(), rel=1e-5)
    s.manifold_penalty(fake).backward(retain_graph=True)
    w = s.generator.net[0].weight
    through_q = w.grad.clone()
    assert through_q.abs().sum() > 0
    assert all(p.grad is None for p in s.q.parameters())
    # not the same as treating Q(G(z)) as a constant target
    w.grad = None
    (fake - s.q(fake).detach()).pow(2).mean().backward()
    assert not torch.allclose(through_q, w.grad, rtol=1e-3, atol=0)


def test_step_trains_g_and_d_and_follows_the_schedule(small_shape, optim, pretrained_ae, digits16):
    s = make(small_shape, optim, pretrained_ae, lambda_m=2.0, warmup_steps=4)
    g0, d0 = snapshot(s.generator), snapshot(s.discriminator)
    torch.manual_seed(0)
    logged = [s.train_step(digits16[:32]) for _ in range(5)]
    assert [o["lambda_m"].item() for o in logged] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    for o in logged:
        expected = o["loss_gan"] + o["lambda_m"] * o["penalty_manifold"]
        assert o["loss_g"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert s.step == 5 and s.extra_state() == {"step": 5}
    assert not same(snapshot(s.generator), g0) and not same(snapshot(s.discriminator), d0)


def test_penalty_alone_pulls_g_onto_the_ae_manifold(small_shape, optim, pretrained_ae):
    s = make(small_shape, optim, pretrained_ae)
    history = []
    for _ in range(80):
        penalty = s.manifold_penalty(s.generator(s.sample_prior(64)))
        s.update(s.opt_g, penalty)
        history.append(penalty.item())
    assert sum(history[-10:]) / 10 < 0.6 * sum(history[:10]) / 10  # ~0.19 vs ~0.40


def test_penalty_lowers_the_manifold_error_of_gan_training(small_shape, optim, pretrained_ae, digits16):
    """Same seed, same batches: the penalized run ends closer to the AE manifold than plain GAN training."""
    last = {}
    for lam in (0.0, 100.0):
        s = make(small_shape, optim, pretrained_ae, lambda_m=lam)
        batches = BatchSampler([digits16], 64, seed=0)
        torch.manual_seed(0)
        penalties = [s.train_step(*batches.next())["penalty_manifold"].item() for _ in range(60)]
        assert all(math.isfinite(p) for p in penalties)
        last[lam] = sum(penalties[-10:]) / 10
    assert last[100.0] < 0.85 * last[0.0]  # ~0.26 vs ~0.35
