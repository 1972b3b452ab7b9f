"""params.yaml validation: a missing key, a wrong type, an unknown key or an impossible value stops at once, in one
line; the committed file is the default comparison and the models hold no defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aegan.errors import UserError
from aegan.params import Params, load_params, validate_params
from params_file import committed_text, complete

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_are_valid():
    """The working params.yaml validates whatever preset was applied; the committed one is the default comparison."""
    assert "dcgan" in load_params(REPO / "params.yaml").strategies
    shipped = validate_params(complete())
    assert "dcgan" in shipped.strategies and shipped.seeds == [0, 1, 2, 3]


def required_everywhere(model: type, prefix: str = "") -> list[str]:
    """Every field of `model` and of the models inside it that has a default (none should)."""
    from pydantic import BaseModel

    out = []
    for name, field in model.model_fields.items():
        out += [] if field.is_required() else [f"{prefix}{name}"]
        kinds = [field.annotation, *getattr(field.annotation, "__args__", ())]
        out += [n for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)
                for n in required_everywhere(k, f"{prefix}{name}.")]  # fmt: skip
    return out


def test_the_models_hold_no_defaults():
    """params.yaml is the one place a value lives: no field of the models (strategy sections included) has one."""
    assert required_everywhere(Params) == []


def without(data: dict, key: str) -> dict:
    """`data` with the dotted `key` removed."""
    *sections, last = key.split(".")
    inner = data
    for s in sections:
        inner = inner[s]
    del inner[last]
    return data


@pytest.mark.parametrize("key", ["train", "train.optimizer.lr", "prepare.path", "ae_hybrid.lambda_rec", "study.vaegan",
                                 "report.equivalence.fid", "seeds", "dcgan"])  # fmt: skip
def test_a_missing_key_is_named_in_one_line(key):
    with pytest.raises(UserError) as err:
        validate_params(without(complete(), key), "params.yaml")
    assert str(err.value) == (f"params.yaml: key '{key}' is missing: state it (the committed params.yaml states every "
                              "key: `git show HEAD:params.yaml`)")  # fmt: skip


def test_an_empty_file_is_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(UserError) as err:
        load_params(path)
    assert str(err.value).startswith(f"{path}: expected a mapping of sections at the top level, got nothing: ")


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
        validate_params(complete(raw), "params.yaml")
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
    params = complete({"train": {"optimizer": {"lr": -1.0}}})
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


# ------------------------------------------------------------------ issue 13: ambiguous or hostile params
@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"train": {"budget": "40"}}, "train.budget = '40' is not allowed: Input should be a valid integer (a number in "
                                     "quotes is a string: remove the quotes)"),
        ({"train": {"optimizer": {"lr": "1e-3"}}}, "train.optimizer.lr = '1e-3' is not allowed: Input should be a valid number"),
        ({"train": {"budget": 40.0}}, "train.budget = 40.0 is not allowed: Input should be a valid integer"),
        ({"train": {"budget": True}}, "train.budget: true is a boolean: give a value of the field's own type"),
        ({"seeds": [True]}, "seeds.0 = True is not allowed: Input should be a valid integer"),
        ({"prepare": {"channels": True}}, "prepare.channels: true is a boolean"),
        ({"compute": {"amp": 1}}, "compute.amp = 1 is not allowed: Input should be a valid boolean"),
        ({"compute": {"amp": "yes"}}, "compute.amp = 'yes' is not allowed: Input should be a valid boolean"),
        ({"seeds": [73786976294838206464]}, "seeds.0 = 73786976294838206464 is not allowed: Input should be less than "
                                            "or equal to 4294967295"),
        ({"seeds": [-1]}, "seeds.0 = -1 is not allowed: Input should be greater than or equal to 0"),
        ({"prepare": {"split_seed": -1}}, "prepare.split_seed = -1 is not allowed: Input should be greater than or equal to 0"),
        ({"evaluate": {"sample_seed": -1}}, "evaluate.sample_seed = -1 is not allowed"),
        ({"evaluate": {"sample_seed": 2**32}}, "evaluate.sample_seed = 4294967296 is not allowed"),
        ({"train": {"grid_seed": 2**40}}, "train.grid_seed = 1099511627776 is not allowed"),
        ({"pretrain_ae": {"seed": 0}}, "unknown key 'pretrain_ae.seed'"),  # the AE's seed is the training seed
        ({"train_scorer": {"seed": 2**64}}, "train_scorer.seed = 18446744073709551616 is not allowed"),
        ({"ae_hybrid": {"latent_disc_width": "128"}}, "ae_hybrid.latent_disc_width = '128' is not allowed"),
        ({"ae_disc": {"disc_width": "8"}}, "ae_disc.disc_width = '8' is not allowed"),
        ({"train": {"match_budget": "false"}}, "train.match_budget = 'false' is not allowed"),
    ],
)
def test_strings_booleans_and_out_of_range_seeds_are_refused(raw, expected):
    with pytest.raises(UserError) as err:
        validate_params(complete(raw), "params.yaml")
    assert str(err.value).startswith(f"params.yaml: {expected}") and "\n" not in str(err.value)


def test_floats_take_integers_and_the_seed_range_ends_are_valid():
    p = validate_params(complete({"train": {"optimizer": {"lr": 1}}, "ae_manifold": {"lambda_m": 3},
                                  "seeds": [0, 2**32 - 1], "evaluate": {"sample_seed": 2**32 - 1}}))  # fmt: skip
    assert p.train.optimizer.lr == 1.0 and isinstance(p.train.optimizer.lr, float)
    assert p.ae_manifold.lambda_m == 3.0 and p.seeds == [0, 2**32 - 1]


def _params_file(tmp_path, data: bytes) -> Path:
    path = tmp_path / "params.yaml"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "text, expected",
    [
        (b"train:\n  steps: 40\n  batch_size: 8\nseeds: [0]\ntrain:\n  log_every: 2\n",
         "key 'train' is given twice in the mapping that starts on line 1 (again on line 5): keep one, the second "
         "would silently replace the first"),
        (b"train:\n  steps: 40\n  steps: 50\n", "key 'steps' is given twice in the mapping that starts on line 2 "
                                                "(again on line 3)"),
        (b"train: {optimizer: {lr: 0.1, lr: 0.2}}\n", "key 'lr' is given twice"),
        ("report:\n  title: R\u00e9sum\u00e9\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 on line 2): save it as UTF-8"),
        (b"train:\n\tsteps: 40\n", "not valid YAML (line 2): fix the syntax"),
        (b"[" * 5000, "not valid YAML"),
    ],
)  # fmt: skip
def test_duplicate_keys_encoding_and_syntax_are_one_line_errors(tmp_path, text, expected):
    path = _params_file(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_params(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: {expected}") and "\n" not in msg


def test_yaml_is_read_as_dvc_reads_it(tmp_path):
    """YAML 1.2 (ruamel.yaml, like DVC): 1e-3 is a number, `yes` is a string (refused for a boolean), a BOM is fine."""
    text = committed_text()
    lr = "optimizer: {lr: 0.0002, beta1: 0.5"
    assert text.count(lr) == 1 and text.count("  amp: false") == 1
    p = load_params(_params_file(tmp_path, ("\ufeff" + text.replace(lr, "optimizer: {lr: 1e-3, beta1: 0.5")).encode()))
    assert p.train.optimizer.lr == pytest.approx(1e-3)
    with pytest.raises(UserError, match="compute.amp = 'yes' is not allowed"):
        load_params(_params_file(tmp_path, text.replace("  amp: false", "  amp: yes").encode()))


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("seed", ["-1", "4294967296", "73786976294838206464"])
def test_cli_seed_out_of_range_is_one_line(tmp_path, monkeypatch, command, seed):
    from typer.testing import CliRunner

    from aegan.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seeds: [0]\n")
    r = CliRunner().invoke(app, [command, "--strategy", "dcgan", "--seed", seed])
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.stderr == f"error: --seed {seed} is out of range: give a seed from 0 to 4294967295\n"
