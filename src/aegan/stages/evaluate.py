"""Stage `evaluate@<strategy>-<seed>`: score one trained generator with torch-fidelity.

No MLflow here (its import and store cost seconds per stage, times every run):
the report stage logs these final metrics into the run's MLflow run, by the
id kept in the result.
"""

from __future__ import annotations

import json

from aegan import paths, wall_seconds
from aegan.atomic import write_json
from aegan.compute import setup as setup_compute
from aegan.errors import UserError
from aegan.generator import load_generator, sample_uint8
from aegan.metrics import heldout_evaluator
from aegan.nets import NetShape
from aegan.provenance import declared_values, scored_files
from aegan.stage_params import check_seed, load
from aegan.strategies import names

PARAMS = ("compute", "model", "evaluate")  # dvc.yaml's params of this stage

KEPT = ("strategy", "seed", "status", "steps", "ae_steps_charged", "budget", "train_seconds", "images_per_second",
        "generator_parameters", "uses_ae", "diverged_at", "mlflow_run_id", "mlflow_model_uri")  # fmt: skip


def main(params_file, strategy_name: str, seed: int) -> dict:
    seed = check_seed(seed)  # the command line first: no need to read params.yaml for that
    return run_evaluate(load(params_file, PARAMS), strategy_name, seed)


def run_evaluate(params, strategy_name: str, seed: int, run_dir=None, out=None, how: str | None = None) -> dict:
    """Score the run in `run_dir` (default: the pipeline's run of strategy_name, seed) into `out`; `how`: the
    command that trains it, for the error when it has not run."""
    if strategy_name not in names():
        raise UserError(f"unknown strategy {strategy_name!r}: choose one of {', '.join(names())}")
    device = setup_compute(params.compute)
    data, evaluator = heldout_evaluator(params, device)
    shape = NetShape.for_data(params.model, data.shape)
    run_dir = run_dir or paths.run_dir(strategy_name, seed)
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        how = how or f"aegan train --strategy {strategy_name} --seed {seed}"
        raise UserError(f"{info_path}: not found: run `{how}` first")
    scored = scored_files(run_dir)  # before reading: a run trained again meanwhile shows as a mismatch, not a mix
    info = json.loads(info_path.read_text())
    result = {k: info.get(k) for k in KEPT} | {k: v for k, v in info.items() if k.startswith(("study_", "setting."))}
    metrics: dict[str, float | None] = {}
    class_counts = None
    if info["status"] == "finished":
        gen, _ = load_generator(run_dir / "generator.pt", shape, device)
        samples = sample_uint8(gen.generate, params.evaluate.num_samples, shape.z_dim, params.evaluate.sample_seed, device)
        metrics = evaluator.score(samples)
        class_counts = evaluator.class_counts(samples)
    result["metrics"] = metrics
    result["class_counts"] = class_counts  # the scorer's predicted class of each sample: mode coverage
    result["feature_extractor"] = evaluator.extractor
    result["num_samples"], result["num_reference"] = params.evaluate.num_samples, len(evaluator.reference)
    # provenance: what the report checks against params.yaml and the run's files (aegan.provenance)
    result["params"], result["scored"] = declared_values(params, PARAMS), scored
    result["train_wall_seconds"] = info.get("wall_seconds")
    result["wall_seconds"] = wall_seconds()
    write_json(out or paths.eval_file(strategy_name, seed), result)
    return result
