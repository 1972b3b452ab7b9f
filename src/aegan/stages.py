"""What each pipeline stage does. The CLI (`aegan <command>`) only parses arguments and calls these."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from aegan import paths, wall_seconds
from aegan.atomic import remove_stale_temps, torch_save, write_json, write_text
from aegan.errors import UserError
from aegan.nets import NetShape


def net_shape(params, card_shape: tuple[int, int, int]) -> NetShape:
    c, s, _ = card_shape
    return NetShape(image_size=s, channels=c, z_dim=params.model.z_dim, width=params.model.width)


def tracking_tags(stage: str, data, section) -> dict[str, str]:
    from aegan.tracking import params_hash

    return {"stage": stage, "data_sha256": data.sha256[:12], "params_hash": params_hash(section)}


# ------------------------------------------------------------------ prepare
def run_prepare(params, track: bool = True) -> dict:
    """Load and check everything in memory first: a bad input leaves an earlier data/prepared/ untouched."""
    from aegan.data import build_dataset, check_dataset_size, write_prepared

    prepared = build_dataset(params.prepare)
    batch_sizes = {f"{k}.batch_size": getattr(params, k).batch_size for k in ("train", "pretrain_ae", "train_scorer")}
    check_dataset_size(prepared, batch_sizes, {"evaluate.num_samples": params.evaluate.num_samples})
    card = write_prepared(prepared, paths.DATASET_FILE, paths.DATA_CARD_FILE, {"prepare_wall_seconds": wall_seconds()})
    if track:
        log_data_card(card)
    return card


def log_data_card(card: dict) -> None:
    """The data card as an MLflow run: its scalars as params, the card itself as an artifact."""
    from aegan.tracking import Run

    logged = {k: v for k, v in card.items() if k not in ("class_counts", "input", "notes", "prepare_wall_seconds")}
    logged |= {f"input.{k}": v for k, v in card["input"].items() if k != "skipped_files"}
    run = Run.start("data", {"stage": "prepare", "data_sha256": card["sha256"][:12], "source": card["source"]}, logged)
    run.log_artifact(paths.DATA_CARD_FILE)
    run.end()


# ------------------------------------------------------------------ train_scorer
def run_train_scorer(params, progress: bool = True) -> dict:
    from aegan.data import load_packed, to_unit_range
    from aegan.loop import resolve_device, seed_everything, train_loop
    from aegan.params import flatten
    from aegan.scorer import ScorerNet, rotate_batch, save_scorer
    from aegan.tracking import Run

    p = params.train_scorer
    device = resolve_device(params.compute.device)
    data = load_packed(paths.DATASET_FILE)
    x = to_unit_range(data.train_images, device)
    labelled = data.labels is not None
    task = "classes" if labelled else "rotation"
    num_outputs = data.num_classes if labelled else 4
    seed_everything(p.seed)
    net = ScorerNet(data.shape[0], data.shape[1], p.width, p.feature_dim, num_outputs).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=p.optimizer.lr, betas=(p.optimizer.beta1, p.optimizer.beta2))
    rot_gen = torch.Generator().manual_seed(p.seed)

    def step(xb, yb=None):
        if yb is None:
            xb, yb = rotate_batch(xb, rot_gen)
        # light augmentation: random shifts of up to 1 pixel keep the scorer from memorising
        shift = torch.randint(-1, 2, (2,), generator=rot_gen).tolist()
        xb = torch.roll(xb, shifts=shift, dims=(2, 3))
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss_scorer": loss.detach()}

    tensors = [x, torch.as_tensor(data.train_labels, device=device)] if labelled else [x]
    run = Run.start("scorer", tracking_tags("train_scorer", data, p.model_dump()), flatten(p.model_dump()))
    result = train_loop(step, tensors, steps=p.steps, batch_size=p.batch_size, seed=p.seed,
                        on_log=run.log_metrics, desc="scorer", progress=progress)  # fmt: skip
    net.eval()
    accuracy = heldout_accuracy(net, data, device, p.seed)
    digest = save_scorer(net.cpu(), task, paths.SCORER_FILE)
    info = {"task": task, "heldout_accuracy": accuracy, "hash": digest, "train_seconds": result.seconds,
            "steps": result.steps_done, "mlflow_run_id": run.run_id, "wall_seconds": wall_seconds()}  # fmt: skip
    write_json(paths.SCORER_INFO_FILE, info)
    run.log_metrics({"heldout_accuracy": accuracy})
    run.set_tags({"scorer_hash": digest, "task": task})
    run.end()
    return info


@torch.no_grad()
def heldout_accuracy(net, data, device, seed: int) -> float:
    from aegan.data import to_unit_range
    from aegan.scorer import rotate_batch

    x = to_unit_range(data.heldout_images, device)
    if data.labels is not None:
        y = torch.as_tensor(data.heldout_labels, device=device)
    else:
        x, y = rotate_batch(x, torch.Generator().manual_seed(seed + 1))
    pred = torch.cat([net(b).argmax(1) for b in x.split(512)])
    return float((pred == y).float().mean())


# ------------------------------------------------------------------ pretrain_ae
def run_pretrain_ae(params, progress: bool = True) -> dict:
    from aegan.ae import AETrainer, reconstruction_mse, save_ae
    from aegan.data import load_packed, to_unit_range
    from aegan.loop import resolve_device, seed_everything, train_loop
    from aegan.nets import AutoEncoder, set_autocast
    from aegan.params import flatten
    from aegan.tracking import Run

    p = params.pretrain_ae
    device = resolve_device(params.compute.device)
    data = load_packed(paths.DATASET_FILE)
    shape = net_shape(params, data.shape)
    x = to_unit_range(data.train_images, device)
    seed_everything(p.seed)
    ae = AutoEncoder(shape).to(device)
    set_autocast(ae, "cuda" if params.compute.amp and device.type == "cuda" else None)
    trainer = AETrainer(ae, p.optimizer.lr, (p.optimizer.beta1, p.optimizer.beta2))
    section = {"pretrain_ae": p.model_dump(), "model": params.model.model_dump()}
    run = Run.start("ae", tracking_tags("pretrain_ae", data, section), flatten(section))
    result = train_loop(trainer, [x], steps=p.steps, batch_size=p.batch_size, seed=p.seed, on_log=run.log_metrics,
                        desc="autoencoder", progress=progress)  # fmt: skip
    heldout_mse = reconstruction_mse(ae, to_unit_range(data.heldout_images, device))
    set_autocast(ae, None)
    save_ae(ae.cpu(), paths.AE_FILE)
    info = {"train_seconds": result.seconds, "steps": result.steps_done, "heldout_mse": heldout_mse,
            "train_mse_last": result.history[-1]["loss_rec"], "mlflow_run_id": run.run_id,
            "wall_seconds": wall_seconds()}  # fmt: skip
    write_json(paths.AE_INFO_FILE, info)
    run.log_metrics({"heldout_mse": heldout_mse})
    run.end()
    return info


# ------------------------------------------------------------------ train
def run_train(params, strategy_name: str, seed: int, progress: bool = True) -> dict:
    from aegan.ae import load_ae
    from aegan.checkpoint import checkpoint_path, fingerprint, kill_point_for_tests, load_checkpoint, remove_checkpoint, save_checkpoint
    from aegan.data import image_grid, load_packed, save_png, to_uint8, to_unit_range
    from aegan.generator import fixed_latents, sample_uint8, save_generator
    from aegan.loop import resolve_device, seed_everything, train_loop
    from aegan.metrics import Evaluator, check_feature_extractor
    from aegan.nets import count_parameters, set_autocast
    from aegan.params import flatten
    from aegan.strategies import get_strategy
    from aegan.tracking import Run, check_tracking

    cls = get_strategy(strategy_name)
    check_feature_extractor(params.evaluate)
    check_tracking()
    tp = params.train
    device = resolve_device(params.compute.device)
    data = load_packed(paths.DATASET_FILE)
    shape = net_shape(params, data.shape)
    x = to_unit_range(data.train_images, device)
    strategy_params = getattr(params, strategy_name)
    uses_ae = cls.needs_ae(strategy_params)
    ae = load_ae(paths.AE_FILE, shape, device) if uses_ae else None
    reference = torch.as_tensor(data.heldout_images[: tp.eval_samples])
    evaluator = Evaluator(params.evaluate, paths.SCORER_FILE, reference, device) if tp.eval_every else None

    seed_everything(seed)
    strategy = cls(strategy_params, shape, tp.optimizer, ae).to(device)
    set_autocast(strategy, "cuda" if params.compute.amp and device.type == "cuda" else None)
    strategy.setup(x)

    out_dir = paths.run_dir(strategy_name, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("generator.pt", "history.csv", "samples.png", "run.json"):
        remove_stale_temps(out_dir / name)  # left by a killed earlier run
    grid_eps = fixed_latents(tp.grid_samples, shape.z_dim, tp.grid_seed).to(device)
    section = {"model": params.model.model_dump(), "train": tp.model_dump(), strategy_name: getattr(params, strategy_name).model_dump()}
    logged_params = flatten(section)
    logged_params |= {"strategy": strategy_name, "seed": seed, "generator_parameters": count_parameters(strategy.generator)}
    tags = tracking_tags("train", data, section) | {"strategy": strategy_name, "seed": str(seed)}

    # resume a killed run of the same params (checkpoint.py), else start fresh
    ckpt_path = checkpoint_path(strategy_name, seed)
    fp = fingerprint(strategy_name, seed, params, data.sha256)
    ckpt = load_checkpoint(ckpt_path, strategy_name, shape, fp)
    run = None
    if ckpt is not None:
        try:
            strategy.load_checkpoint_state(ckpt["strategy_state"])
        except (KeyError, ValueError, RuntimeError) as err:
            raise UserError(f"{ckpt_path}: does not fit strategy {strategy_name!r} ({type(err).__name__}): delete it") from None
        try:
            run = Run.resume(ckpt["mlflow_run_id"])
        except Exception as err:  # e.g. the tracking DB was deleted: keep the weights, open a new run
            print(f"{ckpt_path}: MLflow run {ckpt['mlflow_run_id']} not found ({type(err).__name__}): logging to a new run",
                  file=sys.stderr)  # fmt: skip
        print(f"{ckpt_path}: resuming at step {ckpt['step']} of {tp.steps}", file=sys.stderr)
    if run is None:
        run = Run.start(f"{strategy_name}-{seed}", tags, logged_params)

    def grid_image():
        return image_grid(to_uint8(strategy.generate(grid_eps)))

    def on_eval(step: int) -> dict[str, float]:
        samples = sample_uint8(strategy.generate, tp.eval_samples, shape.z_dim, seed=step, device=device)
        fid = evaluator.fid(samples)
        run.log_metrics({"fid_small": fid}, step)
        run.log_image(grid_image(), key="samples", step=step)
        return {"fid_small": fid}

    def on_checkpoint(step: int, loop_state: dict) -> None:
        run.flush()  # metrics up to this step are in MLflow before the checkpoint claims them
        save_checkpoint(ckpt_path, {"strategy": strategy_name, "seed": seed, "shape": shape.as_dict(), "fingerprint": fp,
                                    "mlflow_run_id": run.run_id, "step": step, "loop_state": loop_state,
                                    "strategy_state": strategy.checkpoint_state()})  # fmt: skip

    step_count = ckpt["step"] if ckpt else 0

    def train_step(*batch):
        nonlocal step_count
        out = strategy.train_step(*batch)
        step_count += 1
        kill_point_for_tests(f"step:{step_count}")
        return out

    try:
        result = train_loop(train_step, [x], steps=tp.steps, batch_size=tp.batch_size, seed=seed,
                            log_every=tp.log_every, on_log=run.log_metrics, eval_every=tp.eval_every,
                            on_eval=on_eval if evaluator else None, divergence_bound=tp.divergence_bound,
                            checkpoint_every=tp.checkpoint_every, on_checkpoint=on_checkpoint,
                            state=ckpt["loop_state"] if ckpt else None, desc=f"{strategy_name}-{seed}", progress=progress)  # fmt: skip
    except BaseException:
        run.end("KILLED")
        raise
    status = "diverged" if result.diverged else "finished"
    set_autocast(strategy, None)
    save_generator(strategy.cpu(), out_dir / "generator.pt")
    strategy.to(device)
    write_history_csv(result.history, out_dir / "history.csv")
    save_png(grid_image(), out_dir / "samples.png")
    info = {
        "strategy": strategy_name, "seed": seed, "status": status, "diverged_at": result.diverged_at,
        "steps": result.steps_done, "train_seconds": result.seconds - result.eval_seconds,
        "eval_seconds": result.eval_seconds, "images_per_second": result.images_per_second,
        "generator_parameters": count_parameters(strategy.generator), "uses_ae": uses_ae,
        "mlflow_run_id": run.run_id, "wall_seconds": wall_seconds(),
    }  # fmt: skip
    write_json(out_dir / "run.json", info)
    run.log_artifact(out_dir / "samples.png")
    run.log_artifact(out_dir / "generator.pt")
    if result.diverged:
        run.set_tags({"diverged": "true", "diverged_at": str(result.diverged_at)})
    run.end("FAILED" if result.diverged else "FINISHED")
    remove_checkpoint(ckpt_path)
    return info


def write_history_csv(history: list[dict], path: Path) -> None:
    import pandas as pd

    from aegan.atomic import atomic_path

    df = pd.DataFrame(history).groupby("step", as_index=False).first() if history else pd.DataFrame({"step": []})
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False)


# ------------------------------------------------------------------ evaluate
def _evaluator_and_reference(params, device):
    from aegan.data import load_packed
    from aegan.metrics import Evaluator, check_feature_extractor

    check_feature_extractor(params.evaluate)
    data = load_packed(paths.DATASET_FILE)
    n = params.evaluate.num_samples
    if n > len(data.heldout_images) or n > len(data.train_images):
        raise UserError(
            f"evaluate.num_samples = {n} exceeds the held-out split ({len(data.heldout_images)} images) or the "
            f"training split ({len(data.train_images)}): lower it or raise prepare.heldout_fraction"
        )
    reference = torch.as_tensor(data.heldout_images[:n])
    return data, Evaluator(params.evaluate, paths.SCORER_FILE, reference, device)


def run_evaluate(params, strategy_name: str, seed: int) -> dict:
    """Score one generator. No MLflow here (its import and store cost seconds per stage, x every run):
    the report stage logs these final metrics into the run's MLflow run, by the id kept in the result."""
    import json

    from aegan.generator import load_generator, sample_uint8
    from aegan.loop import resolve_device
    from aegan.strategies import get_strategy

    get_strategy(strategy_name)
    device = resolve_device(params.compute.device)
    data, evaluator = _evaluator_and_reference(params, device)
    shape = net_shape(params, data.shape)
    run_dir = paths.run_dir(strategy_name, seed)
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise UserError(f"{info_path}: not found: run `aegan train --strategy {strategy_name} --seed {seed}` first")
    info = json.loads(info_path.read_text())
    result = {k: info.get(k) for k in ("strategy", "seed", "status", "steps", "train_seconds", "images_per_second",
                                       "generator_parameters", "uses_ae", "diverged_at", "mlflow_run_id")}  # fmt: skip
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
    result["train_wall_seconds"] = info.get("wall_seconds")
    result["wall_seconds"] = wall_seconds()
    write_json(paths.eval_file(strategy_name, seed), result)
    return result


def _label_counts(labels, num_classes: int, n: int) -> list[int] | None:
    import numpy as np

    if labels is None or not num_classes:
        return None
    return np.bincount(np.asarray(labels[:n], dtype=np.int64), minlength=num_classes).tolist()


def run_reference(params) -> dict:
    """The floor (real train split vs held-out) and an untrained generator, under the same protocol."""
    from aegan.data import image_grid, save_png
    from aegan.generator import sample_uint8
    from aegan.loop import resolve_device, seed_everything
    from aegan.nets import Decoder

    device = resolve_device(params.compute.device)
    data, evaluator = _evaluator_and_reference(params, device)
    # held-out images as a grid, for the report to show next to the strategies' samples
    save_png(image_grid(torch.as_tensor(data.heldout_images[: params.train.grid_samples])), paths.HELDOUT_GRID_FILE)
    n = params.evaluate.num_samples
    train_real = torch.as_tensor(data.train_images[:n])
    shape = net_shape(params, data.shape)
    seed_everything(0)
    untrained = Decoder(shape).to(device).eval()
    fake = sample_uint8(lambda e: untrained(e), n, shape.z_dim, params.evaluate.sample_seed, device)
    out = {
        "real_vs_real": evaluator.score(train_real), "untrained_generator": evaluator.score(fake),
        "feature_extractor": evaluator.extractor, "num_samples": n,
        # class shares the samples are judged against: the held-out labels (the reference split itself)
        "heldout_class_counts": _label_counts(data.heldout_labels, data.num_classes, n),
        "class_counts": {"real_vs_real": evaluator.class_counts(train_real), "untrained_generator": evaluator.class_counts(fake)},
        "wall_seconds": wall_seconds(),
    }  # fmt: skip
    write_json(paths.REFERENCE_FILE, out)
    return out
