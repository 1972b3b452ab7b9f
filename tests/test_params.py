"""params.yaml validation: wrong types, unknown keys and impossible values stop at once, in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aegan.errors import UserError
from aegan.params import load_params, validate_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_are_valid():
    p = load_params(REPO / "params.yaml")
    assert "dcgan" in p.strategies
    assert p.seeds == [0, 1, 2]


def shipped_params() -> dict:
    """params.yaml as committed (a researcher's local edits do not count), else the file."""
    out = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=REPO, capture_output=True, text=True)
    return yaml.safe_load(out.stdout if out.returncode == 0 else (REPO / "params.yaml").read_text())


def test_code_defaults_are_the_shipped_params():
    """The report lists what differs from the defaults: that only means something if both agree."""
    from aegan.params import differences_from_defaults

    assert differences_from_defaults(validate_params(shipped_params())) == [], (
        "params.yaml and the defaults in src/aegan/params.py (or a strategy's Params) disagree: change both together"
    )
    changed = validate_params({"train": {"budget": 700}, "ae_manifold": {"lambda_m": 2.5}, "seeds": [4]})
    assert differences_from_defaults(changed) == [("ae_manifold.lambda_m", 2.5, 10.0), ("seeds", [4], [0, 1, 2]),
                                                  ("train.budget", 700, 1000)]  # fmt: skip


def test_empty_params_give_the_defaults():
    p = validate_params({})
    assert p.train.optimizer.lr == pytest.approx(2e-4)
    assert (p.train.optimizer.beta1, p.train.optimizer.beta2) == (0.5, 0.999)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"train": {"optimizer": {"lr": -0.1}}}, "train.optimizer.lr = -0.1 is not allowed: Input should be greater than 0"),
        ({"train": {"batch_size": 0}}, "train.batch_size = 0 is not allowed: Input should be greater than or equal to 1"),
        ({"train": {"budget": "many"}}, "train.budget = 'many' is not allowed"),
        ({"train": {"steps": 300}}, "unknown key 'train.steps'"),
        ({"train": {"budget": 400}}, "train.budget (400) must exceed pretrain_ae.steps (500)"),
        ({"train": {"stpes": 10}}, "unknown key 'train.stpes'"),
        ({"trian": {}}, "unknown key 'trian'"),
        ({"strategies": ["dcgan", "nope"]}, "strategies[1] = 'nope' is not a strategy (available: "),
        ({"prepare": {"image_size": 24}}, "prepare.image_size = 24 is not allowed"),
        ({"evaluate": {"num_samples": 100, "kid_subset_size": 200}}, "kid_subset_size (200) must be <= num_samples (100)"),
        ({"compute": {"device": "tpu"}}, "compute.device = 'tpu' is not allowed"),
        ({"seeds": [0, 0]}, "seeds lists a seed twice"),
        ({"dcgan": {"unknown_knob": 1}}, "unknown key 'dcgan.unknown_knob'"),
        ({"report": {"baseline": "gan"}}, "report.baseline = 'gan' is not a strategy (available: "),
        ({"report": {"confidence": 1.0}}, "report.confidence = 1.0 is not allowed"),
    ],
)
def test_bad_values_are_refused_in_one_line(raw, expected):
    with pytest.raises(UserError) as err:
        validate_params(raw, "params.yaml")
    msg = str(err.value)
    assert expected in msg
    assert "\n" not in msg
    assert msg.startswith("params.yaml: ")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {steps: [1,\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_params(bad)


def _aegan(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "aegan.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_cli_bad_params_exit_2_one_line_no_traceback(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["optimizer"]["lr"] = -1.0
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    r = _aegan("check-params", "--params", str(bad))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.optimizer.lr" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_cli_unknown_strategy_exit_2(tmp_path):
    r = _aegan("train", "--strategy", "nope", "--seed", "0", "--params", str(REPO / "params.yaml"), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == r.stderr.strip().splitlines()[0]
    assert "unknown strategy 'nope'" in r.stderr and "Traceback" not in r.stderr


def test_importing_the_cli_imports_neither_torch_nor_mlflow():
    code = "import sys, aegan.cli; print(sorted(m for m in ('torch', 'mlflow') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr
