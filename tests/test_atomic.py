"""Issue 13, items 5 and 8: outputs are byte-stable, follow the umask, and an unwritable folder is one line.

Same tensors, same bytes: otherwise DVC hashes, dvc.lock and the scorer's extractor name (a hash of
scorer.pt) change on every run for nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from aegan.atomic import FILE_MODE, atomic_path, ensure_writable, torch_save, write_json
from aegan.errors import UserError
from perms import file_modes_enforced


def test_two_saves_of_the_same_weights_are_byte_identical(tmp_path, small_shape, optim):
    from aegan.ae import save_ae
    from aegan.checkpoint import save_checkpoint
    from aegan.generator import save_generator
    from aegan.loop import seed_everything
    from aegan.nets import AutoEncoder
    from aegan.scorer import ScorerNet, save_scorer
    from aegan.strategies.dcgan import DCGAN
    from params_file import validated

    seed_everything(0)
    strategy, ae, scorer = DCGAN(validated().dcgan, small_shape, optim), AutoEncoder(small_shape), ScorerNet(1, 16, 4, 8, 10)
    for name, save in [("generator", lambda p: save_generator(strategy, p)), ("ae", lambda p: save_ae(ae, p)),
                       ("scorer", lambda p: save_scorer(scorer, "classes", p)),
                       ("checkpoint", lambda p: save_checkpoint(p, {"step": 3, "state": strategy.checkpoint_state()}))]:
        first, second = tmp_path / "a" / f"{name}.pt", tmp_path / "b" / f"{name}.pt"
        save(first)
        save(second)
        assert first.read_bytes() == second.read_bytes(), name
        save(first)  # the same path again: a new temp file name, the same bytes
        assert first.read_bytes() == second.read_bytes(), name
    digests = {save_scorer(scorer, "classes", tmp_path / f"s{i}.pt") for i in range(2)}
    assert len(digests) == 1  # the extractor name torch-fidelity caches under does not churn


def test_torch_saves_of_different_tensors_differ(tmp_path):
    torch_save({"w": torch.zeros(3)}, tmp_path / "a.pt")
    torch_save({"w": torch.ones(3)}, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() != (tmp_path / "b.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "b.pt", weights_only=True)["w"], torch.ones(3))


def test_outputs_follow_this_process_umask(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    assert FILE_MODE == 0o666 & ~mask
    write_json(tmp_path / "x.json", {"a": 1})
    torch_save({"w": torch.zeros(1)}, tmp_path / "x.pt")
    for name in ("x.json", "x.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == FILE_MODE, name


@pytest.mark.parametrize("umask, mode", [(0o002, 0o664), (0o077, 0o600), (0o022, 0o644)])
def test_outputs_follow_the_users_umask(tmp_path, umask, mode):
    """The umask of the process that writes (a fresh interpreter per umask: the module reads it at import)."""
    code = f"from aegan.atomic import write_json; write_json({str(tmp_path / 'o.json')!r}, [1])"
    subprocess.run([sys.executable, "-c", code], check=True, preexec_fn=lambda: os.umask(umask), timeout=60)
    assert (tmp_path / "o.json").stat().st_mode & 0o777 == mode


def test_an_unwritable_folder_is_one_line_and_leaves_nothing(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "old.json").write_text("{}")
    folder.chmod(0o555)
    try:
        with file_modes_enforced():
            with pytest.raises(UserError) as err:
                write_json(folder / "old.json", {"new": True})
            with pytest.raises(UserError):
                ensure_writable(folder)
            with pytest.raises(UserError):
                with atomic_path(folder / "sub" / "x.csv"):
                    pass
    finally:
        folder.chmod(0o755)
    assert str(err.value) == f"{folder}: cannot write old.json there (Permission denied): make the folder writable " \
                             f"(chmod u+w {folder})"
    assert os.listdir(folder) == ["old.json"] and (folder / "old.json").read_text() == "{}"
    ensure_writable(tmp_path / "new" / "dir")  # created if missing; the probe leaves nothing
    assert os.listdir(tmp_path / "new" / "dir") == []
