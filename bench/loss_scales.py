"""The scales of the loss terms that the strategies' default weights balance, measured on the data at hand.

    python bench/loss_scales.py [--steps 200] [--params params.yaml]

The default lambdas of `ae_hybrid` (lambda_rec), `ae_manifold` (lambda_m) and
`vaegan` (gamma) are chosen so the extra term sits at the scale of the GAN
term it is added to. This prints both terms, unweighted and weighted, at the
start of training and after --steps steps, for the embedded digits and the
shapes in params.yaml (CPU; the AE is pretrained as `pretrain_ae` says). For
`ae_manifold` it also prints the ratio of the penalty's gradient norm on G to
L_GAN's. Numbers belong here and in notes, not in code comments.
"""

from __future__ import annotations

import argparse
import sys

import torch

from aegan.ae import AETrainer
from aegan.data.arrays import resize_images
from aegan.data.sources import load_digits_source
from aegan.images import to_unit_range
from aegan.loop import seed_everything, train_loop
from aegan.losses import bce
from aegan.nets import AutoEncoder, NetShape
from aegan.params import load_params
from aegan.strategies import get_strategy


def grad_norm(loss: torch.Tensor, module: torch.nn.Module) -> float:
    grads = torch.autograd.grad(loss, list(module.parameters()), retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.pow(2).sum() for g in grads if g is not None), torch.tensor(0.0))))


def manifold(s, real: torch.Tensor) -> str:
    fake = s.generator(s.sample_prior(len(real)))
    gan, pen = bce(s.discriminator(fake), 1.0), s.manifold_penalty(fake)
    ratio = grad_norm(pen, s.generator) / grad_norm(gan, s.generator)
    lam = s.params.lambda_m
    return (f"L_GAN {gan:.3g}, penalty on G(z) {pen:.3g} (on real images {s.manifold_penalty(real):.3g}), "
            f"lambda_m x penalty {lam * pen:.3g}; |grad penalty| / |grad L_GAN| on G {ratio:.3g} (x lambda_m: {lam * ratio:.3g})")


def hybrid(s, real: torch.Tensor) -> str:
    x_rec = s.generator(s.encoder(real))
    rec, gan = (real - x_rec).abs().mean(), bce(s.discriminator(x_rec), 1.0)
    return f"L1 reconstruction {rec:.3g} (x lambda_rec {s.params.lambda_rec * rec:.3g}), one GAN term {gan:.3g}"


def vaegan(s, real: torch.Tensor) -> str:
    out = s.losses(real)
    return f"L_llike {out['loss_llike']:.3g} (x gamma {s.params.gamma * out['loss_llike']:.3g}), L_G {out['loss_g']:.3g}"


PROBES = {"ae_manifold": manifold, "ae_hybrid": hybrid, "vaegan": vaegan}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    params = load_params(args.params)
    size = params.prepare.image_size
    data = to_unit_range(resize_images(load_digits_source()[0], size))
    shape = NetShape(size, 1, params.model.z_dim, params.model.width)
    p = params.pretrain_ae
    seed_everything(p.seed)
    ae = AutoEncoder(shape)
    train_loop(AETrainer(ae, p.optimizer.lr, (p.optimizer.beta1, p.optimizer.beta2)), [data], steps=p.steps,
               batch_size=p.batch_size, seed=p.seed, progress=False)  # fmt: skip
    ae.eval().requires_grad_(False)
    real = data[torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[: params.train.batch_size]]
    print(f"digits at {size}x{size}, {shape}, batch {params.train.batch_size}, AE pretrained {p.steps} steps")
    for name, probe in PROBES.items():
        cls = get_strategy(name)
        seed_everything(0)
        s = cls(params.strategy_params(name), shape, params.train.optimizer, ae)
        s.setup(data, ae)
        print(f"{name:<12} step 0:   {probe(s, real)}")
        train_loop(s.train_step, [data], steps=args.steps, batch_size=params.train.batch_size, seed=0, progress=False)
        print(f"{name:<12} step {args.steps}: {probe(s, real)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
