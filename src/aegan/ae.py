"""The pretrained autoencoder: ||Dec(E(x)) - x||^2, one per training seed (models/ae-<seed>.pt)."""

from __future__ import annotations

from pathlib import Path

import torch

from aegan.errors import UserError
from aegan.nets import AutoEncoder, NetShape


def save_ae(ae: AutoEncoder, path: Path) -> None:
    from aegan.atomic import torch_save

    torch_save({"kind": "aegan-ae", "shape": ae.shape.as_dict(), "state_dict": ae.state_dict()}, path)


def load_ae(path: str | Path, shape: NetShape, device: torch.device | str = "cpu") -> AutoEncoder:
    """Load the pretrained AE, refusing one built for another architecture."""
    bundle = _read(Path(path), "aegan-ae", "autoencoder", shape)
    ae = AutoEncoder(shape)
    ae.load_state_dict(bundle["state_dict"])
    return ae.to(device).eval()


def save_snapshots(shape: NetShape, snapshots: list[tuple[int, float, dict]], path: Path) -> None:
    """The AE's state at some of its training steps: [(step, seconds, state_dict)], ascending."""
    from aegan.atomic import torch_save

    torch_save({"kind": "aegan-ae-snapshots", "shape": shape.as_dict(),
                "snapshots": [{"step": k, "seconds": t, "state_dict": sd} for k, t, sd in snapshots]}, path)  # fmt: skip


def load_snapshots(path: str | Path, shape: NetShape) -> list[tuple[int, AutoEncoder]]:
    """(step, AE in eval mode on the CPU) of every snapshot `save_snapshots` wrote, refusing another architecture."""
    out = []
    for snap in _read(Path(path), "aegan-ae-snapshots", "autoencoder snapshots", shape)["snapshots"]:
        ae = AutoEncoder(shape)
        ae.load_state_dict(snap["state_dict"])
        out.append((int(snap["step"]), ae.eval()))
    return out


def _read(path: Path, kind: str, what: str, shape: NetShape) -> dict:
    """A file `pretrain_ae` wrote, of `kind` and built for `shape`; a one-line error naming the fix otherwise."""
    if not path.is_file():
        raise UserError(f"{path}: {what} not found: run `aegan pretrain-ae --seed N` (or `dvc repro pretrain_ae`)")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
        if bundle.get("kind") != kind:  # a generator, scorer, checkpoint, or the other AE file
            raise ValueError(f"not {what}")
        saved = NetShape(**bundle["shape"])
    except Exception as err:
        raise UserError(f"{path}: not a valid {what} file ({type(err).__name__}): re-run `aegan pretrain-ae`") from None
    if saved != shape:
        raise UserError(f"{path}: built for {saved}, but params.yaml asks for {shape}: re-run `aegan pretrain-ae`")
    return bundle


class AETrainer:
    """One reconstruction step per call; the shared loop drives it."""

    def __init__(self, ae: AutoEncoder, lr: float, betas: tuple[float, float]):
        self.ae = ae
        self.opt = torch.optim.Adam(ae.parameters(), lr=lr, betas=betas)
        self.steps = 0  # updates made

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.steps += 1
        loss = (self.ae(x) - x).pow(2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss_rec": loss.detach()}


@torch.no_grad()
def reconstruction_mse(ae: AutoEncoder, x: torch.Tensor, batch_size: int = 512) -> float:
    ae.eval()
    total = sum(float((ae(b) - b).pow(2).sum()) for b in x.split(batch_size))
    return total / x.numel()
