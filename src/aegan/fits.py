"""Does a model fit the machine? `aegan check-params` asks before any stage allocates it.

The networks are built on PyTorch's meta device (shapes only, no memory), so the figure costs nothing even for a
model far too large to build: parameters of every network a strategy trains at once (the most: encoder, generator
and discriminator, plus one more discriminator-sized network), each held four times (weights, gradients and Adam's
two moments), and the activations of one batch through them, kept for the backward pass and matched by their
gradients. A rough upper bound, to refuse what cannot run, not to plan memory.
"""

from __future__ import annotations

from dataclasses import dataclass

BYTES = 4  # float32


@dataclass
class Estimate:
    parameters: int
    activations: int  # floats per batch

    @property
    def bytes(self) -> int:
        return BYTES * (4 * self.parameters + 2 * self.activations)


def estimate(shape, batch_size: int) -> Estimate:
    import torch
    from torch import nn

    from aegan.nets import Decoder, Discriminator, Encoder

    with torch.device("meta"):
        decoder, encoder, disc = Decoder(shape), Encoder(shape), Discriminator(shape)
        parameters = sum(p.numel() for net in (decoder, encoder, disc, disc) for p in net.parameters())
        outputs: list[int] = []
        hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o.numel()))
                 for net in (decoder, encoder, disc) for m in net.modules() if not list(m.children())
                 and not isinstance(m, nn.Identity)]  # fmt: skip
        with torch.no_grad():
            decoder(torch.empty(batch_size, shape.z_dim))
            images = torch.empty(batch_size, shape.channels, shape.image_size, shape.image_size)
            encoder(images)
            disc(images)
            disc(images)  # real and fake batches each go through D
        for h in hooks:
            h.remove()
    return Estimate(parameters, sum(outputs))


def machine_memory() -> int:
    import psutil

    return psutil.virtual_memory().total


def check_fits(params, source: str) -> None:
    """One line when training the model of `params` would need more memory than this machine has (on a GPU the
    device's memory is what counts: then this is not checked here)."""
    from aegan.errors import UserError
    from aegan.nets import NetShape

    if params.compute.device not in ("cpu", "auto"):
        return
    import torch

    if params.compute.device == "auto" and torch.cuda.is_available():
        return
    p = params.prepare
    shape = NetShape.for_data(params.model, (p.channels, p.image_size, p.image_size))
    batch = max(params.train.batch_size, params.pretrain_ae.batch_size, params.train_scorer.batch_size)
    need, have = estimate(shape, batch), machine_memory()
    if need.bytes > have:
        raise UserError(f"{source}: model.width {params.model.width} at {p.image_size} px needs about "
                        f"{need.bytes / 2**30:.1f} GiB to train ({need.parameters / 1e6:.0f} M parameters held four "
                        f"times, activations of a batch of {batch}), more than this machine's "
                        f"{have / 2**30:.1f} GiB: lower model.width or the batch sizes")  # fmt: skip
