"""`ae_disc` (BEGAN): losses, the k_t controller, checkpointing and a short real run."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from pydantic import ValidationError

from torch import nn

from aegan.nets import Decoder, count_parameters
from aegan.strategies import registry
from aegan.strategies.ae_disc import AEDisc, BEGANAutoEncoder
from aegan.strategies.dcgan import DCGAN
from params_file import complete, validated


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets: one intra-op thread is as fast, and far faster when other jobs share the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


KEYS = {"loss_d", "loss_g", "k_t", "convergence_M", "energy_real", "energy_fake"}


def make(small_shape, optim, ae, seed=0, **params):
    torch.manual_seed(seed)
    return AEDisc(validated({"ae_disc": params}).ae_disc, small_shape, optim, ae)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def params_equal(module, snap):
    return all(torch.equal(p, snap[n]) for n, p in module.named_parameters())


def close(a, b):
    torch.testing.assert_close(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_registered_with_params_yaml_values_and_validation():
    from aegan.params_strategies import AEDiscParams

    assert registry()["ae_disc"] is AEDisc and AEDisc.name == "ae_disc"
    p = validated().ae_disc
    assert (p.gamma, p.lambda_k, p.disc_width, p.disc_hidden) == (0.5, 0.01, 8, 32)
    assert AEDiscParams.model_validate(complete()["ae_disc"]) == p
    for bad in ({"gamma": 0.0}, {"gamma": 1.5}, {"lambda_k": -0.1}, {"k0": 0.1}, {"init_disc_from_ae": True}):
        with pytest.raises(ValidationError):
            AEDiscParams.model_validate(complete()["ae_disc"] | bad)
    with pytest.raises(ValidationError):
        p.gamma = 0.7  # frozen


def test_generator_is_a_decoder_with_dcgans_parameter_count(small_shape, optim, pretrained_ae):
    s = make(small_shape, optim, pretrained_ae)
    assert isinstance(s.generator, Decoder) and isinstance(s.discriminator, BEGANAutoEncoder)
    assert count_parameters(s.generator) == count_parameters(DCGAN(validated().dcgan, small_shape, optim).generator)


@pytest.mark.parametrize("size, channels", [(16, 1), (32, 3), (64, 1)])
def test_discriminator_is_the_papers_autoencoder_without_batchnorm(size, channels):
    """Berthelot et al.: conv + ELU, no BatchNorm, so each image's energy depends on that image alone."""
    from aegan.nets import NetShape

    shape = NetShape(image_size=size, channels=channels, z_dim=8, width=8)
    d = BEGANAutoEncoder(shape, width=8, hidden=16)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in d.modules())
    assert any(isinstance(m, nn.ELU) for m in d.modules())
    torch.manual_seed(0)
    x = torch.randn(6, channels, size, size)
    assert d(x).shape == x.shape
    assert torch.allclose(d(x)[:1], d(x[:1]), atol=1e-6)  # the same image, alone or in a batch: the same output
    assert d.encoder(x).shape == (6, 16)


def test_step_logs_the_formulas(small_shape, optim, pretrained_ae, digits16):
    """Energies are mean |v - D(v)|; L_D, M and k_{t+1} follow the formulas from the returned energies."""
    s = make(small_shape, optim, pretrained_ae, gamma=0.7, lambda_k=0.05)
    assert float(s.k_t) == 0.0  # k_0 = 0
    real = digits16[:32]
    s.load_extra_state({"k_t": 0.3})
    d_before = copy.deepcopy(s.discriminator)  # same params and batch statistics as in the D step
    out = s.train_step(real)

    assert set(out) == KEYS
    for k, v in out.items():
        assert v.dim() == 0 and not v.requires_grad and math.isfinite(float(v)), k
    er, ef = out["energy_real"], out["energy_fake"]
    with torch.no_grad():
        close(er, (real - d_before(real)).abs().mean())
    close(out["loss_d"], er - 0.3 * ef)
    close(out["convergence_M"], er + (0.7 * er - ef).abs())
    close(out["k_t"], (0.3 + 0.05 * (0.7 * er - ef)).clamp(0, 1))
    close(s.k_t, out["k_t"])
    assert out["loss_g"] > 0


def saturate(s):
    """Push G's outputs to +-1: a fresh D (outputs near 0) then gives fakes energy near 1."""
    with torch.no_grad():
        s.generator.net[-2].weight.mul_(100.0)


def test_k_decreases_and_clips_at_zero_when_fakes_have_the_higher_energy(small_shape, optim, pretrained_ae):
    real = torch.zeros(32, 1, 16, 16)  # a fresh D reconstructs near-zero images well: low L(x)
    s = make(small_shape, optim, pretrained_ae, lambda_k=0.1)
    saturate(s)
    s.load_extra_state({"k_t": 0.5})
    out = s.train_step(real)
    er, ef = out["energy_real"], out["energy_fake"]
    assert ef > 0.5 * er + 0.3, (float(er), float(ef))  # the batch is what the test means it to be
    close(s.k_t, 0.5 + 0.1 * (0.5 * er - ef))
    assert s.k_t < 0.5
    close(out["convergence_M"], er + (ef - 0.5 * er))  # |gamma L(x) - L(G(z))| with a negative inside

    s = make(small_shape, optim, pretrained_ae, lambda_k=10.0)
    saturate(s)
    s.load_extra_state({"k_t": 0.5})
    out = s.train_step(real)
    assert float(s.k_t) == 0.0 and float(out["k_t"]) == 0.0 and s.extra_state() == {"k_t": 0.0}


def test_k_increases_by_the_formula_and_clips_at_one_when_reals_have_the_higher_energy(small_shape, optim, pretrained_ae):
    real = torch.randint(0, 2, (32, 1, 16, 16)).float() * 2 - 1  # +-1 noise: high L(x); fresh G is near 0: low L(G(z))
    s = make(small_shape, optim, pretrained_ae, gamma=1.0, lambda_k=0.1)
    out = s.train_step(real)
    er, ef = out["energy_real"], out["energy_fake"]
    assert er > ef + 0.3, (float(er), float(ef))
    close(s.k_t, 0.1 * (er - ef))  # k_0 = 0, increment lambda_k (gamma L(x) - L(G(z)))
    assert 0 < s.k_t < 1

    s = make(small_shape, optim, pretrained_ae, gamma=1.0, lambda_k=10.0)
    s.train_step(real)
    assert float(s.k_t) == 1.0


def test_one_step_changes_g_and_d(small_shape, optim, pretrained_ae, digits16):
    s = make(small_shape, optim, pretrained_ae)
    g, d = snapshot(s.generator), snapshot(s.discriminator)
    s.train_step(digits16[:32])
    assert all(not torch.equal(p, g[n]) for n, p in s.generator.named_parameters())
    assert all(not torch.equal(p, d[n]) for n, p in s.discriminator.named_parameters())


def test_each_update_moves_only_its_own_network(small_shape, optim, pretrained_ae, digits16, monkeypatch):
    s = make(small_shape, optim, pretrained_ae)
    ids = lambda ps: sorted(id(p) for p in ps)  # noqa: E731
    assert ids(p for grp in s.opt_g.param_groups for p in grp["params"]) == ids(s.generator.parameters())
    assert ids(p for grp in s.opt_d.param_groups for p in grp["params"]) == ids(s.discriminator.parameters())
    g, d = snapshot(s.generator), snapshot(s.discriminator)
    g_grads_at_d_step = []
    d_step = s.opt_d.step

    def recording_d_step(*a, **k):
        g_grads_at_d_step.append([p.grad for p in s.generator.parameters()])
        return d_step(*a, **k)

    monkeypatch.setattr(s.opt_d, "step", recording_d_step)
    monkeypatch.setattr(s.opt_g, "step", lambda *a, **k: None)
    s.train_step(digits16[:32])
    assert all(grad is None for grad in g_grads_at_d_step[0])  # L_D does not backpropagate into G
    assert params_equal(s.generator, g) and not params_equal(s.discriminator, d)

    s = make(small_shape, optim, pretrained_ae)
    g, d = snapshot(s.generator), snapshot(s.discriminator)
    monkeypatch.setattr(s.opt_d, "step", lambda *a, **k: None)
    s.train_step(digits16[:32])
    assert params_equal(s.discriminator, d) and not params_equal(s.generator, g)


def test_short_run_on_digits_lowers_the_real_energy_and_keeps_k_in_unit_interval(small_shape, optim, pretrained_ae, digits16):
    s = make(small_shape, optim, pretrained_ae)
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(200):
        out = s.train_step(digits16[torch.randint(0, len(digits16), (32,), generator=g)])
        rows.append({k: float(v) for k, v in out.items()})
    assert all(math.isfinite(v) for r in rows for v in r.values())
    assert all(0.0 <= r["k_t"] <= 1.0 for r in rows)
    first = sum(r["energy_real"] for r in rows[:20]) / 20
    last = sum(r["energy_real"] for r in rows[-20:]) / 20
    assert last < 0.7 * first, (first, last)


def test_k_stays_in_unit_interval_with_a_fast_controller(small_shape, optim, pretrained_ae, digits16):
    s = make(small_shape, optim, pretrained_ae, lambda_k=0.5)
    g = torch.Generator().manual_seed(1)
    ks = [float(s.train_step(digits16[torch.randint(0, len(digits16), (32,), generator=g)])["k_t"]) for _ in range(30)]
    assert all(0.0 <= k <= 1.0 for k in ks) and max(ks) > 0


def test_uses_no_pretrained_ae():
    """The paper's D has its own architecture: it does not start from the shared AE, so no AE cost is charged."""
    assert not AEDisc.uses_ae


def test_k_moves_off_zero_within_a_few_hundred_steps_on_digits(optim, digits16):
    """With the committed controller and the committed shapes (params.yaml), k_t leaves 0 and stays off it within a few
    hundred steps on the embedded digits; the paper's lambda_k = 0.001 would barely move it at this budget."""
    from aegan.loop import train_loop
    from aegan.nets import NetShape

    shape = NetShape(image_size=16, channels=1, z_dim=32, width=32)
    torch.manual_seed(0)
    s = AEDisc(validated().ae_disc, shape, optim, None)
    res = train_loop(s.train_step, [digits16], steps=300, batch_size=64, seed=0, log_every=50, progress=False)
    ks = [row["k_t"] for row in res.history]
    assert ks[-1] > 0.005 and all(0.0 <= k <= 1.0 for k in ks), ks
