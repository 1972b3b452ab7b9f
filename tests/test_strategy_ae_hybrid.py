"""`ae_hybrid`: starts from (copies of) the pretrained AE, never touches it, and trains on the losses in docs/design.md."""

from __future__ import annotations

import copy

import pydantic
import pytest
import torch

from aegan.losses import bce
from aegan.nets import AutoEncoder, Decoder, count_parameters
from aegan.strategies.ae_hybrid import AEHybrid, moment_penalty
from aegan.strategies.dcgan import DCGAN
from params_file import complete, validated
from tensors import batch, same_state

LOGGED = {"loss_d", "loss_g", "loss_rec", "loss_lat"}


def make(shape, optim, ae, seed=0, **params) -> AEHybrid:
    torch.manual_seed(seed)
    return AEHybrid(validated({"ae_hybrid": params}).ae_hybrid, shape, optim, ae)


def test_params_are_strict():
    from aegan.params_strategies import AEHybridParams

    p = validated().ae_hybrid
    assert (p.lambda_rec, p.lambda_lat, p.latent_reg) == (10.0, 1.0, "adversarial")
    with pytest.raises(pydantic.ValidationError):
        AEHybridParams.model_validate(complete()["ae_hybrid"] | {"lamda_rec": 1.0})  # typo: unknown key
    with pytest.raises(pydantic.ValidationError):
        AEHybridParams.model_validate(complete()["ae_hybrid"] | {"latent_reg": "kl"})
    with pytest.raises(pydantic.ValidationError):
        p.lambda_rec = 1.0  # frozen


def test_needs_the_ae(small_shape, optim):
    assert AEHybrid.uses_ae
    with pytest.raises(ValueError, match="autoencoder"):
        AEHybrid(validated().ae_hybrid, small_shape, optim, None)


def test_starts_as_the_ae_and_never_changes_it(small_shape, optim, pretrained_ae, digits16):
    before = copy.deepcopy(pretrained_ae.state_dict())
    flags = [p.requires_grad for p in pretrained_ae.parameters()], pretrained_ae.training
    s = make(small_shape, optim, pretrained_ae)
    assert same_state(s.encoder.state_dict(), pretrained_ae.encoder.state_dict())
    assert same_state(s.generator.state_dict(), pretrained_ae.decoder.state_dict())
    ae_storage = {p.data_ptr() for p in pretrained_ae.parameters()}
    assert not ae_storage & {p.data_ptr() for p in s.parameters()}, "E/G share tensors with the caller's AE"
    assert all(p.requires_grad for p in s.parameters())

    x = batch(digits16)
    for _ in range(2):
        s.train_step(x)
    assert same_state(pretrained_ae.state_dict(), before), "training changed the caller's AE"
    assert ([p.requires_grad for p in pretrained_ae.parameters()], pretrained_ae.training) == flags
    assert not same_state(s.encoder.state_dict(), pretrained_ae.encoder.state_dict()), "E did not train"
    assert not same_state(s.generator.state_dict(), pretrained_ae.decoder.state_dict()), "G did not train"


@pytest.mark.parametrize("latent_reg", ["adversarial", "moments"])
def test_both_latent_regs_train_with_finite_losses(small_shape, optim, pretrained_ae, digits16, latent_reg):
    s = make(small_shape, optim, pretrained_ae, latent_reg=latent_reg)
    out = s.train_step(batch(digits16))
    adversarial = latent_reg == "adversarial"
    assert set(out) >= LOGGED and ("loss_dz" in out) == adversarial
    assert ("opt_dz" in s.optimizers()) == adversarial
    assert all(v.dim() == 0 and not v.requires_grad and torch.isfinite(v) for v in out.values())
    # loss_g is the full E/G objective
    p = s.params
    assert float(out["loss_g"]) > p.lambda_rec * float(out["loss_rec"]) + p.lambda_lat * float(out["loss_lat"])


def test_moment_penalty_is_zero_for_the_prior_and_large_off_it():
    torch.manual_seed(0)
    z = torch.randn(8192, 8)
    assert float(moment_penalty(z)) < 0.02
    assert float(moment_penalty(z + 2.0)) > 3.0  # shifted mean: ||mean||^2 / d = 4
    assert float(moment_penalty(3.0 * z)) > 30.0  # too wide: ||9I - I||_F^2 / d = 64
    assert float(moment_penalty(torch.cat([z[:, :4], z[:, :4]], 1))) > 0.5  # correlated dims: 8 unit off-diagonals / d


@pytest.mark.parametrize("latent_reg", ["adversarial", "moments"])
def test_step_follows_the_formulas(small_shape, optim, pretrained_ae, digits16, latent_reg):
    """Recompute one step on an identical twin: D gets x real, G(z_p) and G(E(x)) fake; D_z gets z_p real, E(x)
    fake; E/G get all four terms. Each recomputed update must land on exactly the parameters train_step produced."""
    s = make(small_shape, optim, pretrained_ae, latent_reg=latent_reg, lambda_lat=2.0)
    twin = copy.deepcopy(s)
    params = lambda m: dict(m.named_parameters())  # noqa: E731 (BN running stats move again in the E/G pass)
    x = batch(digits16)
    torch.manual_seed(1)
    out = s.train_step(x)

    torch.manual_seed(1)
    z = twin.encoder(x)
    z_p = twin.sample_prior(len(x))
    x_p, x_rec = twin.generator(torch.cat([z_p, z])).chunk(2)  # one pass over both kinds of codes
    d_real = twin.discriminator(x)
    d_p, d_rec = twin.discriminator(torch.cat([x_p, x_rec]).detach()).chunk(2)
    loss_d = bce(d_real, 1.0) + 0.5 * (bce(d_p, 0.0) + bce(d_rec, 0.0))
    without_recs = bce(d_real, 1.0) + bce(d_p, 0.0)
    assert abs(float(loss_d.detach() - without_recs.detach())) > 1e-3, "the test could not tell the two apart"
    torch.testing.assert_close(out["loss_d"], loss_d.detach())
    twin.update(twin.opt_d, loss_d)
    assert same_state(params(s.discriminator), params(twin.discriminator)), "D was updated on another loss"

    if latent_reg == "adversarial":
        loss_dz = bce(twin.latent_disc(z_p), 1.0) + bce(twin.latent_disc(z.detach()), 0.0)
        torch.testing.assert_close(out["loss_dz"], loss_dz.detach())
        twin.update(twin.opt_dz, loss_dz)
        assert same_state(params(s.latent_disc), params(twin.latent_disc)), "D_z was updated on another loss"
        loss_lat = bce(twin.latent_disc(z), 1.0)
    else:
        loss_lat = moment_penalty(z)
    g_p, g_rec = twin.discriminator(torch.cat([x_p, x_rec])).chunk(2)
    loss_rec = (x - x_rec).abs().mean()
    loss_g = 10.0 * loss_rec + bce(g_p, 1.0) + bce(g_rec, 1.0) + 2.0 * loss_lat
    for k, v in {"loss_rec": loss_rec, "loss_lat": loss_lat, "loss_g": loss_g}.items():
        torch.testing.assert_close(out[k], v.detach(), msg=k)
    twin.update(twin.opt_eg, loss_g)
    assert same_state(s.state_dict(), twin.state_dict())


def test_short_run_learns_to_reconstruct(small_shape, digits16):
    """From an untrained AE, 20 steps cut mean|x - G(E(x))| to < 0.85x (~0.77x; with lambda_rec = 0 it stays ~0.92x)."""
    torch.manual_seed(0)
    s = make(small_shape, validated({"train": {"optimizer": {"lr": 1e-3}}}).train.optimizer, AutoEncoder(small_shape))
    x = batch(digits16, 256, seed=1)

    def rec() -> float:
        with torch.no_grad():
            return float((s.generator(s.encoder(x)) - x).abs().mean())

    start = rec()
    for i in range(20):
        s.train_step(batch(digits16, seed=10 + i))
    assert rec() < 0.85 * start


def test_generator_is_the_shared_decoder(small_shape, optim, pretrained_ae):
    s = make(small_shape, optim, pretrained_ae)
    assert isinstance(s.generator, Decoder)
    assert count_parameters(s.generator) == count_parameters(DCGAN(validated().dcgan, small_shape, optim).generator)
    eps = torch.randn(5, small_shape.z_dim)
    assert s.generate(eps).shape == (5, 1, 16, 16)
    assert torch.equal(s.prior.mean, torch.zeros(small_shape.z_dim))  # samples from the standard normal
