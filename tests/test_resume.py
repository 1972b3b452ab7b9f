"""Issue 6: a killed train stage resumes bit-identically; divergence is a result; foreign files are refused.

The kill tests SIGKILL a real `aegan train` subprocess at chosen points (tests/kill_at.py patches
them in; the production code has no test hook) and compare the resumed run's generator.pt and
history.csv with an uninterrupted run's.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from aegan.checkpoint import read_checkpoint

from aegan.errors import UserError
from aegan.loop import seed_everything, train_loop
from aegan.strategies.dcgan import DCGAN
from params_file import validated
from pipeline import TINY, copy_repo, edit_params

STRATEGY, SEED = "ae_manifold", 0  # extra state (its step counter) to restore, and the AE is loaded too
STEPS, CKPT_EVERY, AE_STEPS = 30, 10, 30  # ae_manifold uses the AE: it trains budget - AE_STEPS = STEPS steps


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS="1", AEGAN_CHECKPOINT_EVERY=str(CKPT_EVERY), **extra)
    return env


def _train(repo: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = _env(MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}")
    args = ["train", "--strategy", STRATEGY, "--seed", str(SEED)]
    cmd = [sys.executable, str(Path(__file__).with_name("kill_at.py")), kill_at, "--", *args] if kill_at else ["aegan", *args]
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A repo copy with prepared data, scorer and AE, all tiny, and the uninterrupted reference run's outputs
    in reference/: one subprocess for the four stages (each start costs ~10 s of imports on a small machine)."""
    repo = copy_repo(tmp_path_factory.mktemp("resume") / "repo")
    edit_params(repo, **TINY)
    edit_params(repo, train={"budget": AE_STEPS + STEPS, "log_every": 4, "eval_every": 10},
                pretrain_ae={"steps": AE_STEPS}, ae_manifold={"warmup_steps": 15})  # fmt: skip
    code = ("from aegan.params import load_params; from aegan.stages import prepare, pretrain_ae, train, train_scorer; "
            "p = load_params(); prepare.run_prepare(p); train_scorer.run_train_scorer(p, progress=False); "
            f"pretrain_ae.run_pretrain_ae(p, {SEED}, progress=False); train.main('params.yaml', {STRATEGY!r}, {SEED}, progress=False)")  # fmt: skip
    env = _env(MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert not (repo / "checkpoints").exists(), "a finished run removes its checkpoint"
    (repo / "reference").mkdir()
    for name in ("generator.pt", "history.csv", "run.json"):
        (repo / "models" / "runs" / f"{STRATEGY}-{SEED}" / name).rename(repo / "reference" / name)
    return repo


def _temp_files(repo: Path) -> list[Path]:
    return [p for d in ("models", "checkpoints") if (repo / d).exists() for p in (repo / d).rglob(".*") if p.is_file()]


def test_killed_train_resumes_to_the_uninterrupted_result(repo):
    run_dir, ckpt = repo / "models" / "runs" / f"{STRATEGY}-{SEED}", repo / "checkpoints" / f"{STRATEGY}-{SEED}.pt"
    reference = torch.load(repo / "reference" / "generator.pt", weights_only=True)
    reference_history = pd.read_csv(repo / "reference" / "history.csv")

    # before the first checkpoint: nothing to resume from yet
    out = _train(repo, kill_at="step:5")
    assert out.returncode == -signal.SIGKILL and not ckpt.exists()
    # during the write of the step-20 checkpoint: the step-10 one survives, plus a stale temp file
    out = _train(repo, kill_at=f"checkpoint-write:{2 * CKPT_EVERY}")
    assert out.returncode == -signal.SIGKILL
    saved = read_checkpoint(ckpt)
    assert saved["step"] == CKPT_EVERY and _temp_files(repo)
    run_id = saved["mlflow_run_id"]
    # right after a checkpoint
    out = _train(repo, kill_at=f"step:{2 * CKPT_EVERY + 1}")
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    assert f"resuming at step {CKPT_EVERY}" in out.stderr
    assert read_checkpoint(ckpt)["step"] == 2 * CKPT_EVERY
    # and to the end
    out = _train(repo)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"resuming at step {2 * CKPT_EVERY}" in out.stderr

    resumed = torch.load(run_dir / "generator.pt", weights_only=True)
    for part in ("decoder", "prior"):
        assert resumed[part].keys() == reference[part].keys()
        for k in reference[part]:
            assert torch.equal(resumed[part][k], reference[part][k]), f"{part}.{k} differs after resuming"
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "history.csv"), reference_history)
    assert not ckpt.exists() and not _temp_files(repo)
    import json

    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["steps"] == STEPS
    assert info["mlflow_run_id"] == run_id, "the resumed run continues the same MLflow run"

    # a checkpoint whose bytes changed after the kill (one bit of a tensor) is not resumed: the run starts fresh
    out = _train(repo, kill_at=f"step:{2 * CKPT_EVERY + 1}")
    assert out.returncode == -signal.SIGKILL and read_checkpoint(ckpt)["step"] == 2 * CKPT_EVERY
    data = bytearray(ckpt.read_bytes())
    data[-len(data) // 3] ^= 0x10  # one byte inside the payload (the zip test in test_integrity.py: torch.load would not notice)
    ckpt.write_bytes(bytes(data))
    out = _train(repo)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "corrupt checkpoint" in out.stderr and "starting fresh" in out.stderr and "resuming" not in out.stderr
    fresh = torch.load(run_dir / "generator.pt", weights_only=True)
    assert all(torch.equal(fresh["decoder"][k], reference["decoder"][k]) for k in reference["decoder"])


def _dcgan(shape, optim, seed):
    seed_everything(seed)
    return DCGAN(validated().dcgan, shape, optim)


def _roundtrip(obj):
    """Through torch.save / torch.load(weights_only=True), as a checkpoint file would go."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_loop_state_continues_bit_identically_in_process(digits16, small_shape, optim):
    """log_every 4 with checkpoints every 10: the partial log window is restored too."""
    kw = dict(steps=30, batch_size=32, seed=5, log_every=4, progress=False)
    full = _dcgan(small_shape, optim, 5)
    ref = train_loop(full.train_step, [digits16], **kw)

    first = _dcgan(small_shape, optim, 5)
    saved = {}

    def on_checkpoint(step, state):
        if step == 10:
            saved.update(_roundtrip({"loop": state, "strategy": first.checkpoint_state()}))
            raise KeyboardInterrupt  # stands in for the kill

    with pytest.raises(KeyboardInterrupt):
        train_loop(first.train_step, [digits16], checkpoint_every=10, on_checkpoint=on_checkpoint, **kw)
    second = _dcgan(small_shape, optim, 99)  # other initial weights: everything must come from the checkpoint
    second.load_checkpoint_state(saved["strategy"])
    res = train_loop(second.train_step, [digits16], checkpoint_every=10, on_checkpoint=lambda s, st: None,
                     state=saved["loop"], **kw)  # fmt: skip
    assert res.steps_done == 30 and res.history == ref.history
    a, b = full.state_dict(), second.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_other_params_starts_fresh_and_other_strategy_is_refused(tmp_path, small_shape, capsys):
    from aegan.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "checkpoints" / "dcgan-0.pt"
    save_checkpoint(path, {"strategy": "dcgan", "seed": 0, "shape": small_shape.as_dict(), "fingerprint": "aaa",
                           "mlflow_run_id": "x", "step": 10, "loop_state": {}, "strategy_state": {}})  # fmt: skip
    assert load_checkpoint(path, "dcgan", small_shape, "aaa")["step"] == 10
    assert load_checkpoint(path, "dcgan", small_shape, "bbb") is None
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "starting fresh" in err
    with pytest.raises(UserError, match="checkpoint of strategy 'dcgan', not 'ae_disc'"):
        load_checkpoint(path, "ae_disc", small_shape, "aaa")
    path.write_bytes(b"garbage")
    assert load_checkpoint(path, "dcgan", small_shape, "aaa") is None


# ------------------------------------------------------------------ divergence
def test_divergence_bound_stops_the_loop(digits16):
    huge = lambda x: {"loss": torch.tensor(1e6)}  # noqa: E731
    res = train_loop(huge, [digits16], steps=20, batch_size=32, seed=0, log_every=5, divergence_bound=1e4, progress=False)
    assert res.diverged and res.diverged_at == 5 and res.steps_done == 5
    res = train_loop(huge, [digits16], steps=20, batch_size=32, seed=0, log_every=5, progress=False)
    assert not res.diverged and res.steps_done == 20


def test_diverged_run_is_recorded_evaluated_and_counted(repo, monkeypatch):
    import json

    from aegan.params import load_params
    from aegan.report.tables import aggregate, collect_runs
    from aegan.stages.evaluate import run_evaluate
    from aegan.stages.train import main as train
    from aegan.tracking import Run

    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow.db'}")
    real_step, calls = DCGAN.train_step, []

    def poisoned(self, real):
        out = real_step(self, real)
        calls.append(1)
        return out | {"loss_d": torch.tensor(math.nan)} if len(calls) >= 3 else out

    monkeypatch.setattr(DCGAN, "train_step", poisoned)
    params = load_params()
    info = train("params.yaml", "dcgan", 7, progress=False)  # no exception: divergence is a result
    assert info["status"] == "diverged" and info["diverged_at"] == 4  # first log window (log_every 4) holding the NaN
    on_disk = json.loads(Path("models/runs/dcgan-7/run.json").read_text())
    assert on_disk["status"] == "diverged"
    mlflow_run = Run.finished(info["mlflow_run_id"]).client.get_run(info["mlflow_run_id"])
    assert mlflow_run.data.tags["diverged"] == "true"
    assert not Path("checkpoints/dcgan-7.pt").exists()

    result = run_evaluate(params, "dcgan", 7)
    assert result["status"] == "diverged" and result["metrics"] == {}
    runs = collect_runs(["dcgan"], [7])
    row = aggregate(runs, ae_seconds={}).iloc[0]
    assert row["n"] == 0 and row["diverged"] == 1
    finished = runs.iloc[0].to_dict() | {"seed": 8, "status": "finished", "fid": 10.0, "kid_mean": 0.1, "is_mean": 1.5,
                                         "precision": 0.5, "recall": 0.5, "diverged_at": None}  # fmt: skip
    row = aggregate(pd.concat([runs, pd.DataFrame([finished])], ignore_index=True), ae_seconds={}).iloc[0]
    assert row["n"] == 1 and row["diverged"] == 1 and row["fid_mean"] == 10.0


# ------------------------------------------------------------------ refusing foreign files
@pytest.mark.parametrize("change", [{"z_dim": 16}, {"width": 16}, {"image_size": 32}, {"channels": 3}])
def test_generator_and_ae_of_another_shape_are_refused(tmp_path, small_shape, optim, change):
    from aegan.ae import load_ae, save_ae
    from aegan.generator import load_generator, save_generator
    from aegan.nets import AutoEncoder, NetShape

    other = NetShape(**(small_shape.as_dict() | change))
    save_generator(DCGAN(validated().dcgan, small_shape, optim), tmp_path / "generator.pt")
    save_ae(AutoEncoder(small_shape), tmp_path / "ae.pt")
    for load in (load_generator, load_ae):
        path = tmp_path / ("generator.pt" if load is load_generator else "ae.pt")
        with pytest.raises(UserError) as err:
            load(path, other)
        msg = str(err.value)
        assert len(msg.splitlines()) == 1 and str(small_shape) in msg and str(other) in msg


def test_a_checkpoint_is_not_a_generator(tmp_path, small_shape):
    from aegan.ae import load_ae
    from aegan.checkpoint import save_checkpoint
    from aegan.generator import load_generator

    path = tmp_path / "x.pt"
    save_checkpoint(path, {"strategy": "dcgan", "step": 1, "shape": small_shape.as_dict()})
    with pytest.raises(UserError, match="not a valid generator file"):
        load_generator(path, small_shape)
    with pytest.raises(UserError, match="not a valid autoencoder"):
        load_ae(path, small_shape)


def test_the_fid_curve_starts_at_budget_0_with_the_charged_ae_steps(repo):
    """ae_manifold is charged the AE's 30 pretraining steps: its curve has them at own steps -30, -20, -10 (the AE
    snapshots every eval_every = 10 steps), scored as the generator it would have had then. Its generator does not
    come from the AE, so that is its untrained generator throughout: the charged point at AE step 0 (latents
    drawn with seed 0) equals its own evaluation at step 0 (seed 0), and so do the others up to the sample seed."""
    history = pd.read_csv(repo / "reference" / "history.csv")
    curve = history[["step", "fid_small"]].dropna()
    assert curve["step"].tolist()[:4] == [-AE_STEPS, -20, -10, 0] and curve["step"].iloc[-1] == STEPS
    at = dict(zip(curve["step"], curve["fid_small"]))
    assert at[-AE_STEPS] == at[0]
    assert max(at[-20], at[-10]) < 1.2 * at[0] and min(at[-20], at[-10]) > 0.8 * at[0]  # same generator, other latents
    ae_info = json.loads((repo / "models" / "ae" / f"ae-{SEED}.json").read_text())
    assert sorted(map(int, ae_info["snapshot_seconds"])) == [0, 10, 20]  # the wall axis of the charged part


def test_snapshots_of_another_kind_or_shape_are_refused_in_one_line(repo):
    from aegan.ae import load_snapshots
    from aegan.nets import NetShape

    ae_file = repo / "models" / "ae" / f"ae-{SEED}.pt"
    snapshots = repo / "models" / "ae" / f"ae-{SEED}-snapshots.pt"
    shape = NetShape(**torch.load(snapshots, weights_only=True)["shape"])
    assert [step for step, _ in load_snapshots(snapshots, shape)] == [0, 10, 20]
    with pytest.raises(UserError, match=r"ae-0\.pt: not a valid autoencoder snapshots file \(ValueError\): re-run"):
        load_snapshots(ae_file, shape)  # the AE itself, not its snapshots
    other = NetShape(shape.image_size, shape.channels, shape.z_dim, shape.width * 2)
    with pytest.raises(UserError, match=r"built for .* but params.yaml asks for .*: re-run `aegan pretrain-ae`"):
        load_snapshots(snapshots, other)
    with pytest.raises(UserError, match=r"autoencoder snapshots not found: run `aegan pretrain-ae"):
        load_snapshots(repo / "nothing.pt", shape)


def test_the_checkpoint_cadence_comes_from_the_environment_and_a_bad_one_is_one_line(monkeypatch):
    from aegan.errors import UserError
    from aegan.stages.train import CHECKPOINT_EVERY, CHECKPOINT_EVERY_UNSET, checkpoint_every

    monkeypatch.delenv(CHECKPOINT_EVERY, raising=False)
    assert checkpoint_every() == CHECKPOINT_EVERY_UNSET
    monkeypatch.setenv(CHECKPOINT_EVERY, "0")
    assert checkpoint_every() == 0
    for bad in ("-5", "ten", "2.5", ""):
        monkeypatch.setenv(CHECKPOINT_EVERY, bad)
        with pytest.raises(UserError, match=rf"^AEGAN_CHECKPOINT_EVERY={bad!r} is not a number of steps: give a whole"):
            checkpoint_every()
