"""Stage `evaluate@<strategy>-<seed>`: score one trained generator with torch-fidelity.

No MLflow here (its import and store cost seconds per stage, times every run):
the report stage logs these final metrics into the run's MLflow run, by the
id kept in the result. A finished run's samples are also compared with their
nearest training and held-out images (aegan.copying): copying is not
generalising. On stacked digits the scorer also counts the modes of
MODE_SAMPLES samples (aegan.modes: `modes_captured`, `mode_kl`).
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from aegan import modes, paths, wall_seconds
from aegan.atomic import write_json
from aegan.compute import setup as setup_compute
from aegan.copying import Partition, nn_summary, subsample
from aegan.errors import UserError
from aegan.generator import load_generator, sample_uint8
from aegan.images import to_unit_range
from aegan.metrics import heldout_evaluator
from aegan.nets import NetShape
from aegan.provenance import scored_files
from aegan.scorer import load_scorer
from aegan.stage_params import check_seed, load, values
from aegan.strategies import names


KEPT = ("strategy", "seed", "status", "steps", "ae_steps_charged", "budget", "train_seconds", "images_per_second",
        "generator_parameters", "uses_ae", "diverged_at", "mlflow_run_id", "mlflow_model_uri",
        "seconds_at_eval")  # fmt: skip


def main(params_file, strategy_name: str, seed: int) -> dict:
    seed = check_seed(seed)  # the command line first: no need to read params.yaml for that
    return run_evaluate(load(params_file, "evaluate"), strategy_name, seed)


def run_evaluate(params, strategy_name: str, seed: int, run_dir=None, out=None, how: str | None = None) -> dict:
    """Score the run in `run_dir` (default: the pipeline's run of strategy_name, seed) into `out`; `how`: the
    command that trains it, for the error when it has not run."""
    if strategy_name not in names():
        raise UserError(f"unknown strategy {strategy_name!r}: choose one of {', '.join(names())}")
    run_dir = run_dir or paths.run_dir(strategy_name, seed)
    info_path = run_dir / "run.json"
    how = how or f"aegan train --strategy {strategy_name} --seed {seed}"
    if not info_path.is_file():
        raise UserError(f"{info_path}: not found: run `{how}` first")
    scored = scored_files(run_dir)  # before reading: a run trained again meanwhile shows as a mismatch, not a mix
    info = read_run_record(info_path, how)
    result = {k: info.get(k) for k in KEPT} | {k: v for k, v in info.items() if k.startswith(("study_", "setting."))}
    metrics: dict[str, float | None] = {}
    class_counts = None
    finished = info["status"] == "finished"
    if finished and scored["generator.pt"] != info["generator_sha256"]:
        raise UserError(f"{run_dir / 'generator.pt'}: not the bytes its training wrote (sha256 differs from run.json's "
                        f"generator_sha256: corrupt or replaced): restore it (`dvc checkout`) or train it again "
                        f"(`{how}`)")  # fmt: skip
    device = setup_compute(params.compute)
    data, evaluator = heldout_evaluator(params, device)
    shape = NetShape.for_data(params.model, data.shape)
    if finished:
        gen, _ = load_generator(run_dir / "generator.pt", shape, device)
        samples = sample_uint8(gen.generate, params.evaluate.num_samples, shape.z_dim, params.evaluate.sample_seed, device)
        metrics = evaluator.score(samples)
        class_counts = evaluator.class_counts(samples)
        result["copying"], result["fid_train"] = copying_entry(samples, data, evaluator, params, device)
    if data.channel_labels is not None:  # stacked digits only: the default evaluation gets no new key
        result |= mode_entry(gen, evaluator, shape.z_dim, params, device) if finished else dict.fromkeys(MODE_KEYS)
    result["metrics"] = metrics
    result["class_counts"] = class_counts  # the scorer's predicted class of each sample: mode coverage
    result["feature_extractor"] = evaluator.extractor
    result["num_samples"], result["num_reference"] = params.evaluate.num_samples, len(evaluator.reference)
    # provenance: what the report checks against params.yaml and the run's files (aegan.provenance)
    result["params"], result["scored"] = values(params), scored
    result["train_wall_seconds"] = info.get("wall_seconds")
    result["wall_seconds"] = wall_seconds()
    write_json(out or paths.eval_file(strategy_name, seed), result)
    return result


def read_run_record(path, how: str) -> dict:
    """run.json as the train stage wrote it, or one line naming what is wrong with it."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({type(err).__name__}): the train stage writes it; run `{how}` "
                        "again") from None  # fmt: skip
    if not isinstance(info, dict):
        raise UserError(f"{path}: a JSON {type(info).__name__}, not the train stage's record: run `{how}` again")
    missing = [k for k in RECORD_KEYS if k not in info]
    if missing:
        raise UserError(f"{path}: no {', '.join(missing)} (written by another version of aegan, or edited): run "
                        f"`{how}` again")  # fmt: skip
    if info["status"] not in ("finished", "diverged"):
        raise UserError(f"{path}: status {info['status']!r} is neither 'finished' nor 'diverged': run `{how}` again")
    return info


# what evaluate reads of run.json beyond what it copies if present (KEPT)
RECORD_KEYS = ("status", "generator_sha256")


# ------------------------------------------------------------------ known modes (aegan.modes)
MODE_KEYS = ("modes_captured", "mode_kl", "mode_samples")


def mode_entry(gen, evaluator, z_dim: int, params, device) -> dict:
    """Stacked digits: the modes the scorer finds, channel by channel, in MODE_SAMPLES generated samples (seeded by
    evaluate.sample_seed); None each where the scorer classifies nothing (Inception features, no scorer)."""
    samples = sample_uint8(gen.generate, modes.MODE_SAMPLES, z_dim, params.evaluate.sample_seed, device)
    counts = evaluator.class_counts(samples)
    return dict.fromkeys(MODE_KEYS) if counts is None else modes.mode_figures(np.asarray(counts))


# ------------------------------------------------------------------ copying (aegan.copying)
def copying_entry(samples: torch.Tensor, data, evaluator, params, device) -> tuple[dict, float]:
    """Are the samples copies of training images? Per space ("features": the scorer's, "pixels": in [-1, 1]):
    median NN distances to a training subset of the held-out split's size, to the held-out split and from it
    (`copying.nn_summary`), and Meehan et al.'s C_T test (`copying.Partition`); and the FID of the same samples
    against that training subset (`fid_train`), beside the FID against the held-out split.

    The subset and the test's k-means are seeded by evaluate.sample_seed: every run is compared with the same
    images and cells, so the report can combine a strategy's seeds (report/copying.py `judge`)."""
    start, seed = time.perf_counter(), params.evaluate.sample_seed
    train, heldout = data.train_images, data.heldout_images
    entry: dict = {"samples": len(samples), "heldout": len(heldout), "train_subset": min(len(train), len(heldout)),
                   "seed": seed}  # fmt: skip
    spaces = {"features": scorer_embedding(params, device), "pixels": lambda x: to_unit_range(x)}
    for name, embed in spaces.items():
        if isinstance(embed, str):
            entry[name] = {"skipped": embed}
            continue
        g, t, h = embed(samples), embed(train), embed(heldout)
        entry[name] = nn_summary(g, t, h, seed) | Partition(t, h, seed).test(g).as_dict()
    subset = torch.as_tensor(train[subsample(len(train), len(heldout), seed)])  # nn_summary's training subset
    fid_train = evaluator.fid(samples, reference=subset)
    entry["seconds"] = time.perf_counter() - start
    return entry, fid_train


def scorer_embedding(params, device):
    """uint8 images -> the scorer's features, or why there are none: with evaluate.feature_extractor: inception
    the scorer is used where models/scorer.pt exists (its features are what FID uses otherwise)."""
    if not paths.SCORER_FILE.is_file():
        return f"{paths.SCORER_FILE} not found: no scorer features to compare in (pixels only)"
    net = load_scorer(paths.SCORER_FILE)[0].to(device)

    @torch.no_grad()
    def embed(images) -> torch.Tensor:
        x = to_unit_range(images, device)
        return torch.cat([net.features(b).cpu() for b in x.split(params.evaluate.batch_size)])

    return embed
