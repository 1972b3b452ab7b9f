"""A trained generator as an MLflow model: `mlflow.pyfunc.load_model(uri).predict(eps)` returns images.

Input: standard-normal latents, float32 (n, z_dim); the model pushes them through the strategy's stored
prior, as every evaluation does. Output: uint8 images (n, C, H, W) in [0, 255]. The model is self-contained:
the generator is stored as a torch.export program (any batch size) and the pyfunc class is pickled by value,
so loading it needs torch, numpy and mlflow, not this package.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

MODEL_PREFIX = "generator"  # each finished train run's logged model: generator-<its run's name>, e.g. generator-ae_hybrid-2


class GeneratorModel:
    """The pyfunc: latents -> uint8 images. Subclasses mlflow.pyfunc.PythonModel (see `python_model`)."""

    def load_context(self, context):
        self.generator = torch.export.load(context.artifacts["generator"]).module()

    def predict(self, context, model_input, params=None):
        eps = np.asarray(model_input, dtype=np.float32)
        if eps.ndim != 2 or eps.shape[0] == 0:
            raise ValueError(f"latents of shape {eps.shape}: give an (n, z_dim) array of standard-normal latents, n >= 1")
        if not np.isfinite(eps).all():
            raise ValueError(f"{int((~np.isfinite(eps)).any(axis=1).sum())} of {len(eps)} latent rows hold NaN or "
                             "infinity: give finite standard-normal latents")  # fmt: skip
        eps = torch.as_tensor(eps)
        with torch.no_grad():
            images = self.generator(eps)
        return images.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).numpy()  # as images.to_uint8


class _Exported(torch.nn.Module):
    """forward(eps) = generate(eps): what torch.export traces."""

    def __init__(self, generator):
        super().__init__()
        self.generator = generator

    def forward(self, eps: torch.Tensor) -> torch.Tensor:
        return self.generator.generate(eps)


def python_model():
    import mlflow.pyfunc

    return type("GeneratorModel", (GeneratorModel, mlflow.pyfunc.PythonModel), {"__module__": __name__})()


def log_generator(run_id: str, generator_file: Path, z_dim: int | None = None, name: str | None = None) -> str:
    """Log `generator_file` (aegan.generator format) as the run's MLflow model; returns its model URI. `z_dim`:
    the file's own by default; `name`: the model's, by default generator-<the run's name> (the UI's models list
    then tells 24 generators apart)."""
    import cloudpickle
    import mlflow
    from mlflow.models import infer_signature

    from aegan.generator import load_generator

    generator, bundle = load_generator(generator_file)
    example = torch.randn(2, z_dim or bundle["shape"]["z_dim"], generator=torch.Generator().manual_seed(0))
    model = python_model()
    with tempfile.TemporaryDirectory(prefix="aegan-model-") as tmp:
        program = Path(tmp) / "generator.pt2"
        batch = torch.export.Dim("batch", min=1)
        torch.export.save(torch.export.export(_Exported(generator), (example,), dynamic_shapes=({0: batch},)), program)
        check = GeneratorModel()  # `model` is pickled as it is: it must not hold the loaded program
        check.load_context(type("Context", (), {"artifacts": {"generator": str(program)}})())
        output = check.predict(None, example.numpy())
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
                        f"mlflow=={mlflow.__version__}", f"cloudpickle=={cloudpickle.__version__}"]  # fmt: skip
        module = sys.modules[__name__]
        cloudpickle.register_pickle_by_value(module)  # loading needs no aegan installed
        from aegan.tracking import fail_fast_http

        try:
            with fail_fast_http(), mlflow.start_run(run_id=run_id, log_system_metrics=False) as run:
                name = name or f"{MODEL_PREFIX}-{run.info.run_name}"
                info = mlflow.pyfunc.log_model(
                    name=name, python_model=model, artifacts={"generator": str(program)},
                    signature=infer_signature(example.numpy(), output), input_example=example.numpy(),
                    pip_requirements=requirements,  # given: MLflow's inference would import and run the model again
                )  # fmt: skip
        finally:
            cloudpickle.unregister_pickle_by_value(module)
    return info.model_uri
