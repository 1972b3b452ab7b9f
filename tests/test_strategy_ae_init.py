"""ae_init: G starts as the pretrained decoder, z from a Gaussian fitted to the encoder codes."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from aegan.nets import Decoder, count_parameters
from aegan.strategies import registry
from aegan.strategies.ae_init import AEInit
from aegan.strategies.dcgan import DCGAN
from params_file import complete, validated


def make(small_shape, optim, ae, seed=0, **params):
    torch.manual_seed(seed)
    return AEInit(validated({"ae_init": params}).ae_init, small_shape, optim, ae)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_registered_and_params_strict():
    import aegan.strategies.ae_init  # noqa: F401

    assert AEInit.name == "ae_init" and AEInit.uses_ae
    assert registry()["ae_init"] is AEInit
    from aegan.params_strategies import AEInitParams

    assert validated().ae_init == AEInitParams(latent_prior="fitted", init_disc_from_encoder=False)
    with pytest.raises(ValidationError):
        AEInitParams.model_validate(complete()["ae_init"] | {"latent_prior": "gaussian"})
    with pytest.raises(ValidationError):
        AEInitParams.model_validate(complete()["ae_init"] | {"lambda_m": 1.0})
    with pytest.raises(ValidationError):
        AEInitParams(latent_prior="fitted")  # no defaults: params.yaml states every key


def test_needs_the_ae(small_shape, optim):
    with pytest.raises(ValueError, match="autoencoder"):
        AEInit(validated().ae_init, small_shape, optim, None)


def test_generator_starts_as_the_decoder(small_shape, optim, pretrained_ae):
    s = make(small_shape, optim, pretrained_ae)
    assert type(s.generator) is Decoder
    assert count_parameters(s.generator) == count_parameters(DCGAN(validated().dcgan, small_shape, optim).generator)
    assert same(snapshot(s.generator), snapshot(pretrained_ae.decoder))  # weights and BN running stats
    # a copy, trainable although the fixture's AE is frozen, sharing no storage with it
    assert all(p.requires_grad for p in s.generator.parameters())
    ae_ptrs = {p.data_ptr() for p in pretrained_ae.parameters()}
    assert not ae_ptrs & {p.data_ptr() for p in s.parameters()}
    # the AE is not kept as a submodule: only G, D and the prior are checkpointed
    assert {k.split(".")[0] for k in s.state_dict()} == {"generator", "discriminator", "prior"}


def test_fitted_prior_matches_the_codes(small_shape, optim, pretrained_ae, digits16):
    s = make(small_shape, optim, pretrained_ae)
    s.setup(digits16, pretrained_ae)
    with torch.no_grad():
        codes = pretrained_ae.encoder.eval()(digits16).double()
    cov = s.prior.scale_tril.double() @ s.prior.scale_tril.double().T
    torch.testing.assert_close(s.prior.mean.double(), codes.mean(0), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cov, torch.cov(codes.T), atol=1e-3, rtol=1e-3)
    assert not torch.allclose(s.prior.mean, torch.zeros_like(s.prior.mean), atol=1e-2)  # really fitted
    # the prior is stored with the module, so evaluation samples from it
    assert torch.equal(s.state_dict()["prior.mean"], s.prior.mean)
    torch.manual_seed(1)
    z = s.sample_prior(20000).double()
    torch.testing.assert_close(z.mean(0), codes.mean(0), atol=0.05 * codes.std(0).max().item(), rtol=0)


def test_standard_prior_stays_standard(small_shape, optim, pretrained_ae, digits16):
    s = make(small_shape, optim, pretrained_ae, latent_prior="standard")
    s.setup(digits16, pretrained_ae)
    assert torch.equal(s.prior.mean, torch.zeros(small_shape.z_dim))
    assert torch.equal(s.prior.scale_tril, torch.eye(small_shape.z_dim))


def test_train_step_draws_z_from_the_prior(small_shape, optim, pretrained_ae, digits16):
    s = make(small_shape, optim, pretrained_ae)
    s.setup(digits16, pretrained_ae)
    s.prior.mean.fill_(100.0)  # unmistakable
    seen = []
    s.generator.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    s.train_step(digits16[:32])
    assert seen and abs(seen[0].mean().item() - 100.0) < 5.0


@pytest.mark.parametrize("on", [True, False])
def test_discriminator_trunk_from_encoder(small_shape, optim, pretrained_ae, on):
    s = make(small_shape, optim, pretrained_ae, init_disc_from_encoder=on)
    assert same(snapshot(s.discriminator.trunk), snapshot(pretrained_ae.encoder.trunk)) is on
    assert all(p.requires_grad for p in s.discriminator.parameters())


def test_steps_train_g_and_d_and_leave_the_ae_alone(small_shape, optim, pretrained_ae, digits16):
    ae_before, ae_training = snapshot(pretrained_ae), [m.training for m in pretrained_ae.modules()]
    s = make(small_shape, optim, pretrained_ae, init_disc_from_encoder=True)
    s.setup(digits16, pretrained_ae)
    g0, d0 = snapshot(s.generator), snapshot(s.discriminator)
    torch.manual_seed(0)
    for i in range(3):
        out = s.train_step(digits16[i * 64 : (i + 1) * 64])
        assert {"loss_d", "loss_g"} <= out.keys()
        assert all(v.ndim == 0 and not v.requires_grad and math.isfinite(v.item()) for v in out.values())
    assert not same(snapshot(s.generator), g0) and not same(snapshot(s.discriminator), d0)
    assert same(snapshot(pretrained_ae), ae_before)
    assert [m.training for m in pretrained_ae.modules()] == ae_training
    assert set(s.optimizers()) == {"opt_g", "opt_d"}
