"""All strategies together: one registry, identical generators, one sampling path, finite losses."""

from __future__ import annotations

import math

import pytest
import torch

from aegan.generator import LoadedGenerator, fixed_latents, save_generator, load_generator
from aegan.nets import Decoder, count_parameters
from aegan.strategies import get_strategy, registry

from params_file import complete, validated
from tensors import batch, restore_through_bytes, same_state

SIX = {"dcgan", "ae_init", "ae_disc", "ae_hybrid", "ae_manifold", "vaegan"}


def test_the_six_strategies_are_registered():
    assert set(registry()) == SIX


@pytest.fixture(scope="module")
def built(small_shape, optim, pretrained_ae):
    torch.manual_seed(0)
    params = validated()
    return {name: cls(getattr(params, name), small_shape, optim, pretrained_ae) for name, cls in registry().items()}


def test_all_generators_have_the_same_architecture_and_parameter_count(built, small_shape):
    counts = {name: count_parameters(s.generator) for name, s in built.items()}
    assert len(set(counts.values())) == 1, counts
    assert counts["dcgan"] == count_parameters(Decoder(small_shape))
    assert all(type(s.generator) is Decoder for s in built.values())


def test_one_step_of_every_strategy_gives_finite_scalar_losses(built, digits16, pretrained_ae):
    for name, s in built.items():
        s.setup(digits16[:256], pretrained_ae)
        out = s.train_step(digits16[:32])
        assert out and all(v.dim() == 0 and math.isfinite(float(v)) for v in out.values()), name


def test_saved_generator_samples_like_the_strategy(built, tmp_path):
    """Evaluation goes through the saved decoder + prior, whatever the strategy's prior."""
    eps = fixed_latents(8, built["dcgan"].shape.z_dim, seed=1)
    for name, s in built.items():
        save_generator(s, tmp_path / f"{name}.pt")
        gen, meta = load_generator(tmp_path / f"{name}.pt", s.shape)
        assert isinstance(gen, LoadedGenerator) and meta["strategy"] == name
        torch.testing.assert_close(gen.generate(eps), s.generate(eps))


# params that give each strategy's own checkpointed state a non-default value worth restoring
ROUND_TRIP_PARAMS = {
    "ae_disc": {"lambda_k": 0.05},  # k_t moves every step
    "ae_manifold": {"lambda_m": 4.0, "warmup_steps": 8},  # lambda_m follows the restored step counter
    "ae_hybrid": {"latent_reg": "adversarial"},
}
ROUND_TRIP_CASES = [(name, ROUND_TRIP_PARAMS.get(name, {})) for name in sorted(SIX)] + [("ae_hybrid", {"latent_reg": "moments"})]


def test_the_round_trip_covers_every_registered_strategy():
    assert {name for name, _ in ROUND_TRIP_CASES} == set(registry())


@pytest.mark.parametrize(("name", "overrides"), ROUND_TRIP_CASES, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.values())))
def test_checkpoint_round_trip_restores_state_and_the_next_step(name, overrides, small_shape, optim, pretrained_ae, digits16):
    """A strategy rebuilt from another seed (no setup) and given a checkpoint, loaded weights_only as a resume
    does, takes the same next step: networks, optimizers, prior and extra state all come from the checkpoint."""
    cls = get_strategy(name)

    def build(seed):
        torch.manual_seed(seed)
        params = getattr(validated({name: overrides}), name)
        return cls(params, small_shape, optim, pretrained_ae if cls.uses_ae else None)

    a = build(0)
    a.setup(digits16[:256], pretrained_ae)
    torch.manual_seed(0)
    for i in range(3):
        a.train_step(batch(digits16, n=32, seed=i))
    b = build(123)
    restore_through_bytes(a, b)
    assert same_state(a.state_dict(), b.state_dict()) and b.extra_state() == a.extra_state()

    x = batch(digits16, n=32, seed=10)
    outs = []
    for s in (a, b):
        torch.manual_seed(7)
        outs.append(s.train_step(x))
    assert outs[0].keys() == outs[1].keys() and all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])
    assert same_state(a.state_dict(), b.state_dict()) and b.extra_state() == a.extra_state()


def test_unknown_strategy_is_a_one_line_user_error():
    from aegan.errors import UserError

    with pytest.raises(UserError, match="unknown strategy 'nope': choose one of ae_disc, ae_hybrid"):
        get_strategy("nope")


def test_a_new_strategy_is_one_module_and_its_params_section(tmp_path, monkeypatch):
    """Discovery by file name: a module dropped into the package is a strategy. Its params are a section of
    params.yaml, modelled in aegan.params_strategies as a field of Params and of StudyParams: the strategy modules,
    those fields and the sections of the committed params.yaml are the same set."""
    import sys

    import aegan.strategies as package
    from aegan.params import Params
    from aegan.params_sections import Knobs, StudyParams
    from aegan.params_base import StrategyParams

    (tmp_path / "toy.py").write_text(
        "from aegan.strategies.base import NonSaturatingGAN\n"
        "class Toy(NonSaturatingGAN):\n    name = 'toy'\n"
        "STRATEGY = Toy\n"
    )
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    try:
        assert "toy" in package.names() and get_strategy("toy").name == "toy"
    finally:
        sys.modules.pop("aegan.strategies.toy", None)
    monkeypatch.undo()

    names = set(package.names())
    assert names == SIX
    fields = Params.model_fields.items()
    assert {k for k, f in fields if isinstance(f.annotation, type) and issubclass(f.annotation, StrategyParams)} == names
    assert {k for k, f in StudyParams.model_fields.items() if f.annotation == Knobs} == names
    raw = complete()
    assert names <= set(raw) and names <= set(raw["study"])
    params = validated()
    assert all(isinstance(getattr(params, n), StrategyParams) for n in names)


def test_a_strategy_section_is_strict():
    """An unknown key in a strategy's section is a one-line error naming it; so is a missing one."""
    from aegan.errors import UserError
    from aegan.params import validate_params

    with pytest.raises(UserError, match="unknown key 'ae_disc.gama'"):
        validated({"ae_disc": {"gama": 0.5}})
    with pytest.raises(UserError, match="unknown key 'nope'"):
        validated({"nope": {}})
    raw = complete()
    del raw["ae_disc"]["gamma"]
    with pytest.raises(UserError, match="key 'ae_disc.gamma' is missing"):
        validate_params(raw, "params.yaml")


@pytest.mark.parametrize("name", ["ae_hybrid", "vaegan"])
def test_the_generator_sees_both_kinds_of_codes_in_one_pass(name, small_shape, optim, pretrained_ae, digits16):
    """docs/design.md: prior codes and encoder codes go through G as one batch, so G's BatchNorm running statistics
    after a step are exactly those of a single pass over the concatenated codes."""
    import copy

    cls = get_strategy(name)
    torch.manual_seed(0)
    s = cls(getattr(validated(), name), small_shape, optim, pretrained_ae)
    before = copy.deepcopy(s.generator).train()
    inputs = []
    s.generator.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach().clone()))
    real = digits16[:32]
    s.train_step(real)
    assert len(inputs) == 1 and inputs[0].shape[0] == 2 * len(real)
    with torch.no_grad():
        before(inputs[0])
    stats_after = {k: v for k, v in s.generator.state_dict().items() if "running" in k or "num_batches" in k}
    assert stats_after and all(torch.equal(before.state_dict()[k], v) for k, v in stats_after.items())


def test_vaegan_feature_loss_comes_from_the_passes_the_logits_come_from(small_shape, optim, digits16):
    """D runs once on the real batch and once on the fakes [x~, x_p]; D_l(x) and D_l(x~) come from those passes."""
    import copy

    cls = get_strategy("vaegan")
    torch.manual_seed(0)
    s = cls(validated().vaegan, small_shape, optim, None)
    d_before = copy.deepcopy(s.discriminator).train()
    seen = []
    s.discriminator.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    real = digits16[:16]
    out = s.train_step(real)
    assert [x.shape[0] for x in seen] == [16, 32] and torch.equal(seen[0], real)
    with torch.no_grad():
        f_real, logits_real = d_before.features_and_logits(seen[0])
        f_fake, _ = d_before.features_and_logits(seen[1])
    torch.testing.assert_close(out["loss_llike"], 0.5 * (f_real - f_fake[:16]).pow(2).sum(1).mean())
    torch.testing.assert_close(out["d_real"], torch.sigmoid(logits_real).mean())
    assert all(torch.equal(d_before.state_dict()[k], v) for k, v in s.discriminator.state_dict().items() if "running" in k)
