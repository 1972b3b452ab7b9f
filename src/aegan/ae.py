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
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: pretrained autoencoder not found: run `aegan pretrain-ae --seed N` (or `dvc repro pretrain_ae`)")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
        if bundle.get("kind") != "aegan-ae":  # a generator, scorer or checkpoint
            raise ValueError("not an autoencoder")
        saved = NetShape(**bundle["shape"])
    except Exception as err:
        raise UserError(f"{path}: not a valid autoencoder checkpoint ({type(err).__name__}): re-run `aegan pretrain-ae`") from None
    if saved != shape:
        raise UserError(f"{path}: built for {saved}, but params.yaml asks for {shape}: re-run `aegan pretrain-ae`")
    ae = AutoEncoder(shape)
    ae.load_state_dict(bundle["state_dict"])
    return ae.to(device).eval()


class AETrainer:
    """One reconstruction step per call; the shared loop drives it."""

    def __init__(self, ae: AutoEncoder, lr: float, betas: tuple[float, float]):
        self.ae = ae
        self.opt = torch.optim.Adam(ae.parameters(), lr=lr, betas=betas)

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
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
