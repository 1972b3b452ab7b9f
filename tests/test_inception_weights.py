"""Issue 13, item 1: the Inception weights file is checked before torch-fidelity (weights_only=False) sees it.

A crafted torch.save file whose pickle runs code must be refused in one line without the code running,
through the CLI as a user would meet it; a file of the right layout must still work.
"""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from aegan.cli import app
from aegan.errors import UserError
from aegan.metrics import INCEPTION, check_inception_file, inception_layout
from params_file import validated, write_params


class Payload:
    """Pickled, it calls exec(code) on load: what a malicious weights file does."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return builtins.exec, (self.code,)


def _run_reference(tmp_path: Path, weights: str) -> tuple[int, str]:
    """`aegan reference` with Inception features, on prepared digits: without the check, torch-fidelity would load
    the weights in the first `score` call."""
    from aegan.stages.prepare import run_prepare

    run_prepare(validated(), track=False)
    write_params(tmp_path, {"evaluate": {"feature_extractor": "inception", "feature_extractor_weights_path": weights}})
    result = CliRunner().invoke(app, ["reference", "--params", str(tmp_path / "params.yaml")])
    assert result.stdout == "" and "Traceback" not in result.output
    return result.exit_code, result.stderr


@pytest.mark.parametrize("where", ["weights_path", "hub_cache"])
def test_a_weights_file_that_runs_code_is_refused_and_its_code_does_not_run(tmp_path, monkeypatch, where):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "payload-ran"
    crafted = {"Conv2d_1a_3x3.conv.weight": torch.zeros(1), "x": Payload(f"open({str(marker)!r}, 'w').write('ran')")}
    if where == "weights_path":
        path = tmp_path / "weights.pth"
        weights = str(path)
    else:  # the file docs/report.md tells users to put into torch hub's cache
        monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
        path = tmp_path / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
        path.parent.mkdir(parents=True)
        weights = None
    torch.save(crafted, path)
    code, err = _run_reference(tmp_path, weights)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: {path}: refused: not a plain file of tensors (UnpicklingError: ")
    assert err.rstrip().endswith("weights-inception-2015-12-05-6726825d.pth)")
    assert not marker.exists(), "the pickle's payload ran"
    assert not (tmp_path / "reports").exists()  # nothing written
    assert (tmp_path / "data" / "prepared" / "dataset.npz").is_file()  # the earlier output is untouched


@pytest.mark.parametrize("content, expected", [
    ({"fc.weight": torch.zeros(1008, 2048)}, "not the inception-v3-compat weights (565 tensors missing, 0 unexpected, "
                                             "0 of another shape; first: "),
    (torch.zeros(3), "not a state dict of named tensors (Tensor)"),
    ({"a": [1, 2]}, "not a state dict of named tensors (dict)"),
])  # fmt: skip
def test_files_of_another_layout_are_refused(tmp_path, content, expected):
    path = tmp_path / "w.pth"
    torch.save(content, path)
    with pytest.raises(UserError) as err:
        check_inception_file(path)
    assert str(err.value).startswith(f"{path}: refused: {expected}") and "\n" not in str(err.value)
    path.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="refused: not a plain file of tensors"):
        check_inception_file(path, 1)  # another (size, mtime) key: not the cached verdict


def test_the_right_layout_passes_and_torch_fidelity_loads_it_with_weights_only(tmp_path):
    """A file with every tensor of the right shape (zeros: the real weights cannot be downloaded here) passes,
    and torch-fidelity's own loader accepts it under the forced weights_only loads the Evaluator uses."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from aegan.metrics import _weights_only_loads

    layout = inception_layout()
    assert len(layout) > 500 and layout["fc.weight"] == (1008, 2048)
    path = tmp_path / "w.pth"
    torch.save({k: torch.zeros(shape, dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
                for k, shape in layout.items()}, path)  # fmt: skip
    check_inception_file(path)  # no error
    with _weights_only_loads():
        net = FeatureExtractorInceptionV3(INCEPTION, ["2048"], feature_extractor_weights_path=str(path))
    assert float(net.fc.weight.abs().sum()) == 0.0
    torch.save({"x": Payload("pass")}, path)
    with _weights_only_loads(), pytest.raises(Exception, match="Unsupported global"):
        torch.load(path, weights_only=False)  # what torch-fidelity calls: forced to weights_only
