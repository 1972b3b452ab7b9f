"""Stage start-up: a stage's modules import no heavy library it does not need at import time (torch-fidelity and
torchvision load only when a metric is computed, MLflow only when a run is logged), and the grid that replaced
torchvision's make_grid draws the same pixels."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from aegan.images import image_grid

HEAVY = ("torch", "torchvision", "torch_fidelity", "mlflow", "matplotlib")
ALLOWED = {"prepare": set(), "train_scorer": {"torch"}, "pretrain_ae": {"torch"}, "train": {"torch"},
           "reference": {"torch"}, "evaluate": {"torch"}}  # fmt: skip


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_a_stage_module_imports_only_what_it_needs_up_front(stage):
    code = (f"import sys, json; import aegan.cli; import aegan.stages.{stage}; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert set(json.loads(out)) == ALLOWED[stage]


@pytest.mark.parametrize("n, channels, size", [(64, 1, 16), (10, 3, 32), (7, 1, 8), (1, 3, 8), (400, 1, 16)])
def test_image_grid_draws_what_torchvisions_make_grid_draws(n, channels, size):
    from torchvision.utils import make_grid

    images = torch.randint(0, 256, (n, channels, size, size), generator=torch.Generator().manual_seed(n), dtype=torch.uint8)
    expected = make_grid(images.float() / 255, nrow=int(np.ceil(np.sqrt(n))), padding=1)
    expected = (expected.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    got = image_grid(images)
    assert got.dtype == np.uint8 and got.shape == expected.shape and np.array_equal(got, expected)
