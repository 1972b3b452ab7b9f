"""Shared fixtures: tiny shapes, real digits in [-1, 1], a quickly pretrained AE. Nothing is downloaded."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def digits16():
    """All 1797 sklearn digits at 16x16, float in [-1, 1], (N, 1, 16, 16)."""
    from aegan.data.arrays import resize_images
    from aegan.data.sources import load_digits_source
    from aegan.images import to_unit_range

    images, _ = load_digits_source()
    return to_unit_range(resize_images(images, 16))


@pytest.fixture(scope="session")
def small_shape():
    from aegan.nets import NetShape

    return NetShape(image_size=16, channels=1, z_dim=8, width=8)


@pytest.fixture(scope="session")
def optim():
    from params_file import validated

    return validated().train.optimizer


@pytest.fixture(scope="session")
def pretrained_ae(digits16, small_shape):
    """A small AE trained for a few hundred steps: good enough to reconstruct digits roughly."""

    from aegan.ae import AETrainer
    from aegan.loop import seed_everything, train_loop
    from aegan.nets import AutoEncoder

    seed_everything(0)
    ae = AutoEncoder(small_shape)
    train_loop(AETrainer(ae, 1e-3, (0.9, 0.999)), [digits16], steps=200, batch_size=64, seed=0, progress=False)
    return ae.eval().requires_grad_(False)


@pytest.fixture()
def tmp_tracking(tmp_path, monkeypatch):
    """MLflow tracking into a throwaway sqlite DB."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors on a shared 2-core machine: torch's thread pool only adds contention (up to 18x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
