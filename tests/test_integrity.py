"""Corrupt bytes are caught, not trained on or scored: a checkpoint carries the sha256 of its payload, and run.json the
sha256 of the generator its training wrote (torch.load checks no checksum of its zip, so neither would be noticed).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aegan.errors import UserError


def flip_inside(path, marker: bytes) -> None:
    """Flip one byte in the middle of `marker`'s bytes in the file (a tensor's storage: the zip stays readable)."""
    data = bytearray(path.read_bytes())
    at = data.index(marker) + len(marker) // 2
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_checkpoint_whose_tensor_bytes_changed_is_not_resumed(tmp_path, small_shape, capsys):
    from aegan.checkpoint import load_checkpoint, save_checkpoint

    weights = torch.arange(4096, dtype=torch.float32)
    path = tmp_path / "checkpoints" / "dcgan-0.pt"
    save_checkpoint(path, {"strategy": "dcgan", "seed": 0, "shape": small_shape.as_dict(), "fingerprint": "aaa",
                           "mlflow_run_id": "x", "step": 120, "loop_state": {}, "strategy_state": {"w": weights}})  # fmt: skip
    loaded = load_checkpoint(path, "dcgan", small_shape, "aaa")
    assert loaded["step"] == 120 and torch.equal(loaded["strategy_state"]["w"], weights)
    assert capsys.readouterr().err == ""

    flip_inside(path, weights.numpy().tobytes())
    # what torch alone makes of it: the file loads, with a different tensor (the silent resume this guards against)
    payload = path.read_bytes().partition(b"\n")[2]
    import io

    damaged = torch.load(io.BytesIO(payload), weights_only=True)["strategy_state"]["w"]
    assert not torch.equal(damaged, weights)

    assert load_checkpoint(path, "dcgan", small_shape, "aaa") is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt checkpoint" in err[0] and "starting fresh" in err[0], err


def test_a_checkpoint_of_the_old_format_starts_fresh(tmp_path, small_shape, capsys):
    from aegan.checkpoint import load_checkpoint

    path = tmp_path / "dcgan-0.pt"
    torch.save({"format": "aegan-checkpoint/1", "strategy": "dcgan", "fingerprint": "aaa", "step": 3}, path)
    assert load_checkpoint(path, "dcgan", small_shape, "aaa") is None
    assert "unreadable checkpoint" in capsys.readouterr().err


@pytest.fixture
def trained_run(tmp_path, monkeypatch, small_shape):
    """A run directory as the train stage leaves it: generator.pt and a run.json recording its sha256."""
    from aegan import paths
    from aegan.data.packed import file_sha256
    from aegan.generator import save_generator
    from aegan.strategies import get_strategy
    from params_file import validated

    monkeypatch.chdir(tmp_path)
    params = validated()
    dcgan = get_strategy("dcgan")
    torch.manual_seed(0)
    strategy = dcgan(params.dcgan, small_shape, params.train.optimizer)
    run_dir = paths.run_dir("dcgan", 0)
    run_dir.mkdir(parents=True)
    save_generator(strategy, run_dir / "generator.pt")
    record = {"strategy": "dcgan", "seed": 0, "status": "finished", "generator_sha256": file_sha256(run_dir / "generator.pt")}
    (run_dir / "run.json").write_text(json.dumps(record))
    return params, run_dir, strategy


def test_evaluate_refuses_a_generator_that_is_not_the_one_trained(trained_run):
    from aegan.stages.evaluate import run_evaluate

    params, run_dir, strategy = trained_run
    first = next(iter(strategy.generator.state_dict().values())).detach().numpy()
    flip_inside(run_dir / "generator.pt", np.ascontiguousarray(first).tobytes()[:64])
    with pytest.raises(UserError) as err:
        run_evaluate(params, "dcgan", 0)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and "generator.pt: not the bytes its training wrote" in msg
    assert "aegan train --strategy dcgan --seed 0" in msg
    assert not (run_dir.parent.parent.parent / "reports").exists()  # nothing written


@pytest.mark.parametrize("content, says", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "a JSON list, not the train stage's record"),
    ('{"status": "finished"}', "no generator_sha256"),
    ('{"generator_sha256": "ab"}', "no status"),
    ('{"status": "running", "generator_sha256": "ab"}', "status 'running' is neither"),
    (b"\xff\xfe", "not valid JSON"),
])  # fmt: skip
def test_evaluate_refuses_a_run_record_it_cannot_read_in_one_line(trained_run, content, says):
    from aegan.stages.evaluate import run_evaluate

    params, run_dir, _ = trained_run
    path = run_dir / "run.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError) as err:
        run_evaluate(params, "dcgan", 0)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and msg.startswith(str(path)) and says in msg, msg
    assert "aegan train --strategy dcgan --seed 0" in msg
