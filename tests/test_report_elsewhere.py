"""A workspace whose results were trained elsewhere (`dvc pull` in a fresh clone, CI with a fresh mlflow.db, an old
mlflow.db moved aside) still writes its report: the training runs are not in this tracking store, so the winner's
generator is logged again from generator.pt and registered, and the final scores stay in reports/ with one line.
"""

from __future__ import annotations

import json

import pytest

from fabricate import PARAMS, SEEDS, STRATEGIES, fabricate


@pytest.fixture
def pulled(tmp_path, monkeypatch):
    """Fabricated outputs whose evaluations name MLflow runs and models of another workspace's store."""
    import torch

    from aegan import paths
    from aegan.data.packed import load_packed
    from aegan.generator import save_generator
    from aegan.nets import NetShape
    from aegan.provenance import scored_files
    from aegan.strategies import get_strategy
    from params_file import write_params

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = fabricate(tmp_path)
    write_params(tmp_path, PARAMS)
    shape = NetShape.for_data(params.model, load_packed(paths.DATASET_FILE).shape)
    dcgan = get_strategy("dcgan")
    for i, (s, seed) in enumerate((s, seed) for s in STRATEGIES for seed in SEEDS):
        run_dir, eval_file = paths.run_dir(s, seed), paths.eval_file(s, seed)
        record = json.loads(eval_file.read_text())
        if record["status"] != "finished":
            continue
        torch.manual_seed(i)  # a generator in the file format every strategy saves (decoder and prior)
        save_generator(dcgan(params.dcgan, shape, params.train.optimizer), run_dir / "generator.pt")
        record |= {"mlflow_run_id": f"{i:032x}", "mlflow_model_uri": f"models:/m-{i:032x}",
                   "scored": scored_files(run_dir)}  # fmt: skip
        eval_file.write_text(json.dumps(record))
    return tmp_path


def test_the_report_registers_a_winner_trained_elsewhere_from_its_generator_file(pulled, capsys):
    from mlflow import MlflowClient

    from aegan.stages.report import main
    from aegan.tracking import REGISTERED_MODEL

    summary = main("params.yaml")
    assert (pulled / "reports" / "report.md").is_file() and summary
    err = [line for line in capsys.readouterr().err.splitlines() if "not in this MLflow store" in line]
    assert len(err) == 1 and "their final scores are in reports/" in err[0], err

    client = MlflowClient(f"sqlite:///{pulled / 'mlflow.db'}")
    version = client.get_model_version_by_alias(REGISTERED_MODEL, "candidate")
    assert version.tags["logged_again_from"].startswith("generator.pt")
    winner, seed = version.tags["strategy"], int(version.tags["seed"])
    # the registered model is that generator: its images are the file's
    import mlflow.pyfunc
    import numpy as np
    import torch

    from aegan.generator import load_generator
    from aegan import paths

    model = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}@candidate")
    gen, _ = load_generator(paths.run_dir(winner, seed) / "generator.pt")
    eps = torch.randn(3, gen.shape.z_dim, generator=torch.Generator().manual_seed(0))
    from aegan.images import to_uint8

    assert np.array_equal(model.predict(eps.numpy()), to_uint8(gen.generate(eps).detach()).numpy())
    # the registered model refuses what would give black images or a 22-frame traceback, in one line
    for bad, says in ((np.zeros((0, gen.shape.z_dim), np.float32), "latents of shape (0,"),
                      (np.full((2, gen.shape.z_dim), np.nan, np.float32), "2 of 2 latent rows hold NaN")):
        with pytest.raises(Exception) as err:
            model.predict(bad)
        assert says in str(err.value) and len(str(err.value).splitlines()) == 1, str(err.value)
