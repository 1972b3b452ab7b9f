"""`vaegan`: each of the three updates sees exactly the losses Larsen et al. 2016 allow it, and nothing else moves."""

from __future__ import annotations

import copy

import pydantic
import pytest
import torch

from aegan.nets import Decoder, count_parameters
from aegan.strategies.dcgan import DCGAN
from aegan.strategies.vaegan import VAEGAN, kl_standard_normal
from params_file import complete, validated
from tensors import batch, same_state

LOGGED = {"loss_d", "loss_g", "kl", "loss_llike", "loss_enc", "loss_dec"}
GROUPS = {"encoder": "opt_enc", "generator": "opt_dec", "discriminator": "opt_d"}


def make(shape, optim, seed=0, **params) -> VAEGAN:
    torch.manual_seed(seed)
    return VAEGAN(validated({"vaegan": params}).vaegan, shape, optim, None)


def grads(loss, module):
    return torch.autograd.grad(loss, list(module.parameters()), retain_graph=True, allow_unused=True)


def close(a, b) -> bool:
    def same(x, y):
        return x is None and y is None or x is not None and y is not None and torch.allclose(x, y, rtol=1e-4, atol=1e-7)

    return all(same(x, y) for x, y in zip(a, b))


def test_params_and_no_ae(small_shape, optim):
    assert not VAEGAN.uses_ae
    from aegan.params_strategies import VAEGANParams

    p = validated().vaegan
    assert (p.beta, p.gamma) == (1.0, 0.01)
    with pytest.raises(pydantic.ValidationError):
        VAEGANParams.model_validate(complete()["vaegan"] | {"lambda_rec": 1.0})
    s = make(small_shape, optim)  # no AE needed: it trains its own VAE
    assert s.encoder.out_dim == 2 * small_shape.z_dim
    assert set(s.optimizers()) == set(GROUPS.values())


def test_kl_matches_the_closed_form():
    torch.manual_seed(0)
    mu, logvar = torch.randn(16, 8), torch.randn(16, 8)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    expected = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1).mean()
    torch.testing.assert_close(kl_standard_normal(mu, logvar), expected)
    assert float(kl_standard_normal(torch.zeros(4, 8), torch.zeros(4, 8))) == 0.0
    # one dim with mu = 2, sigma = 1: KL = mu^2 / 2 = 2 per sample
    torch.testing.assert_close(kl_standard_normal(torch.tensor([[2.0, 0.0]]), torch.zeros(1, 2)), torch.tensor(2.0))


def test_each_update_sees_exactly_its_losses(small_shape, optim, digits16):
    """The gradients train_step applies are those of Enc: beta KL + L_llike, Dec: gamma L_llike + L_G, D: L_GAN.

    Recomputed on an identical twin; each check also shows the forbidden term does reach the group in the graph,
    so a wrong update (e.g. one backward of the summed losses) could not pass.
    """
    s = make(small_shape, optim, beta=0.5, gamma=0.3)
    twin = copy.deepcopy(s)
    x = batch(digits16)
    torch.manual_seed(1)
    out = s.train_step(x)
    assert set(out) >= LOGGED and all(v.dim() == 0 and not v.requires_grad and torch.isfinite(v) for v in out.values())
    torch.manual_seed(1)
    L = twin.losses(x)

    allowed = {
        "encoder": 0.5 * L["kl"] + L["loss_llike"],
        "generator": 0.3 * L["loss_llike"] + L["loss_g"],
        "discriminator": L["loss_d"],
    }
    forbidden = {"encoder": L["loss_g"], "generator": L["loss_d"], "discriminator": L["loss_llike"]}
    for name, loss in allowed.items():
        module = getattr(twin, name)
        applied = [p.grad for p in getattr(s, name).parameters()]
        assert close(applied, grads(loss, module)), f"{name} was updated with the wrong loss"
        assert not close(applied, grads(loss + forbidden[name], module)), f"test blind to the forbidden term ({name})"


def test_gan_loss_sends_no_gradient_into_the_encoder(small_shape, optim, digits16):
    """With beta = 0 and L_llike zeroed out (gamma irrelevant), the encoder's gradient must vanish."""
    s = make(small_shape, optim, beta=0.0)
    original = s.losses

    def losses_without_llike(real):
        L = original(real)
        return L | {"loss_llike": L["loss_llike"] * 0.0}

    s.losses = losses_without_llike
    torch.manual_seed(1)
    s.train_step(batch(digits16))
    assert all(p.grad is None or not p.grad.any() for p in s.encoder.parameters())
    assert any(p.grad is not None and p.grad.any() for p in s.generator.parameters())


@pytest.mark.parametrize("group", GROUPS)
def test_each_update_changes_only_its_own_network(small_shape, optim, digits16, group):
    s = make(small_shape, optim)
    for name, opt in GROUPS.items():
        if name != group:
            for g in getattr(s, opt).param_groups:
                g["lr"] = 0.0
    before = {n: dict((k, v.clone()) for k, v in getattr(s, n).named_parameters()) for n in GROUPS}
    s.train_step(batch(digits16))
    for name in GROUPS:
        unchanged = same_state(before[name], dict(getattr(s, name).named_parameters()))
        assert unchanged == (name != group), f"{GROUPS[group]} step {'left' if unchanged else 'changed'} {name}"


def test_short_run_learns_feature_reconstruction(small_shape, digits16):
    """Against a fixed D (its optimizer off), 50 steps cut the feature reconstruction error L_llike on a fixed batch
    by more than 10%, and the encoder's objective KL + L_llike with it (the KL grows from ~0 as the codes get used;
    D_l(x) and D_l(x~) come from D's real and fake passes, each with its own batch statistics)."""
    s = make(small_shape, validated({"train": {"optimizer": {"lr": 1e-3}}}).train.optimizer)
    for g in s.opt_d.param_groups:
        g["lr"] = 0.0
    x = batch(digits16, 128, seed=1)

    def terms() -> tuple[float, float]:
        torch.manual_seed(0)
        with torch.no_grad():
            L = s.losses(x)
        return float(L["kl"]), float(L["loss_llike"])

    kl0, llike0 = terms()
    for i in range(50):
        out = s.train_step(batch(digits16, seed=10 + i))
        assert all(torch.isfinite(v) for v in out.values())
    kl, llike = terms()
    assert llike < 0.9 * llike0 and kl + llike < kl0 + llike0


def test_generator_is_the_shared_decoder(small_shape, optim):
    s = make(small_shape, optim)
    assert isinstance(s.generator, Decoder)
    assert count_parameters(s.generator) == count_parameters(DCGAN(validated().dcgan, small_shape, optim).generator)
    assert s.generate(torch.randn(5, small_shape.z_dim)).shape == (5, 1, 16, 16)
