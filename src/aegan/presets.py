"""`aegan preset NAME`: settings for a real dataset at a real budget, or the study, written into params.yaml with its
comments kept.

A preset sets the data (source, image size, channels), the shared
architecture, the budgets (scorer, AE and training steps), the seeds, the
evaluation sample counts and the cadence of the training-time FID curve.
Everything else in params.yaml (strategies, their knobs, compute, report
judgement) stays as it is. The file is edited by ruamel.yaml's round trip,
so comments and layout survive, and validated before it is replaced.

The expected wall times are in docs/presets.md, with how they were estimated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aegan.errors import UserError

_MNIST_LIKE: dict[str, Any] = {
    "prepare": {"image_size": 32, "channels": 1},
    "model": {"z_dim": 64, "width": 64},
    "train_scorer": {"steps": 2000, "batch_size": 128, "width": 32, "feature_dim": 128},
    "pretrain_ae": {"steps": 3000, "batch_size": 128},
    "train": {"budget": 10000, "batch_size": 128, "log_every": 50, "eval_every": 250, "eval_samples": 2000},
    "evaluate": {"num_samples": 10000, "kid_subset_size": 1000, "batch_size": 500},
    "seeds": [0, 1, 2, 3, 4],
}
PRESETS: dict[str, dict[str, Any]] = {
    "mnist": _MNIST_LIKE | {"prepare": {"source": "mnist", **_MNIST_LIKE["prepare"]},
                            "report": {"title": "Autoencoder/GAN fusion strategies on MNIST"}},
    "fashion-mnist": _MNIST_LIKE | {
        "prepare": {"source": "fashion-mnist", **_MNIST_LIKE["prepare"]},
        "train": {**_MNIST_LIKE["train"], "budget": 15000},
        "report": {"title": "Autoencoder/GAN fusion strategies on Fashion-MNIST"}},
    "cifar10": {
        "prepare": {"source": "cifar10", "image_size": 32, "channels": 3},
        "model": {"z_dim": 128, "width": 64},
        "train_scorer": {"steps": 5000, "batch_size": 128, "width": 64, "feature_dim": 256},
        "pretrain_ae": {"steps": 5000, "batch_size": 128},
        "train": {"budget": 20000, "batch_size": 128, "log_every": 50, "eval_every": 500, "eval_samples": 2000},
        "evaluate": {"num_samples": 10000, "kid_subset_size": 1000, "batch_size": 500},
        "seeds": [0, 1, 2],
        "report": {"title": "Autoencoder/GAN fusion strategies on CIFAR-10"}},
    # the known-mode benchmark of the "more stable" claim: 1,000 modes, counted per run (aegan.modes, docs/presets.md);
    # the default networks, 3x the default budget (the FID curves turn up after about 1,200 steps), FID every 100 steps
    "stacked-digits": {
        "prepare": {"source": "stacked-digits", "stacked_images": 20000, "image_size": 16, "channels": 3},
        "model": {"z_dim": 32, "width": 32},
        "train_scorer": {"steps": 400, "batch_size": 64, "width": 16, "feature_dim": 64},
        "pretrain_ae": {"steps": 500, "batch_size": 64},
        "train": {"budget": 3000, "batch_size": 64, "log_every": 10, "eval_every": 100, "eval_samples": 512},
        "evaluate": {"num_samples": 2000, "kid_subset_size": 200, "batch_size": 200},
        "seeds": [0, 1, 2, 3],
        # the stable claim by the known modes: KL of the generated modes to uniform (report/claims.py)
        "report": {"title": "Autoencoder/GAN fusion strategies on stacked digits (1,000 modes)",
                   "primary": {"stable": "mode_kl"}}},
    # the equal hyperparameter budget (docs/study.md) on top of whatever data and budget params.yaml has: five settings per
    # strategy (its own + 4 drawn), each under 2 seeds, the best re-trained under 2 fresh ones (docs/study.md)
    "study": {"study": {"settings": [1, 2, 3, 4], "seeds": [0, 1], "fresh_seeds": [2, 3]}},
}  # fmt: skip


def flow(values: list):
    """A list written on one line, as params.yaml writes its lists."""
    from ruamel.yaml.comments import CommentedSeq

    seq = CommentedSeq(values)
    seq.fa.set_flow_style()
    return seq


def preset_values(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}: choose one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def apply_preset(name: str, path: Path) -> list[tuple[str, Any, Any]]:
    """Write preset `name` into the params file at `path`; returns (key, old, new) for every value it changed."""
    return write_values(preset_values(name), path, f"preset {name}")


def flow_map(values: dict):
    """A mapping of mappings, each inner one written on one line (`aegan decide`'s runs)."""
    from ruamel.yaml.comments import CommentedMap

    out = CommentedMap()
    for key, inner in values.items():
        out[key] = CommentedMap(inner)
        out[key].fa.set_flow_style()
    if not values:
        out.fa.set_flow_style()
    return out


def merge(target, values: dict[str, Any], prefix: str, changed: list) -> None:
    """`values` into the round-trip mapping `target`, key by key at every depth (a mapping of mappings, as
    decide.runs, replaced whole), recording (key, old, new) of each change."""
    from ruamel.yaml.comments import CommentedMap

    for key, new in values.items():
        old = target.get(key)
        if isinstance(new, dict) and new and not all(isinstance(v, dict) for v in new.values()):
            merge(target.setdefault(key, CommentedMap()), new, f"{prefix}{key}.", changed)
        elif old != new:
            changed.append((f"{prefix}{key}", old, new))
            target[key] = flow(new) if isinstance(new, list) else flow_map(new) if isinstance(new, dict) else new


def write_values(values: dict[str, Any], path: Path, what: str) -> list[tuple[str, Any, Any]]:
    """Write `values` (section -> value, or section -> {key: value}) into the params file at `path`, comments
    kept; validated first (one line naming `what` if the result cannot work). Returns (key, old, new) changed."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    from aegan.atomic import write_text
    from aegan.params import validate_params

    if not path.is_file():
        raise UserError(f"{path}: not found: run the command inside the workspace (a folder holding dvc.yaml or params.yaml), or pass --params PATH")
    yaml = YAML()  # round trip: comments, order and flow style are kept
    yaml.width = 4096
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    doc = yaml.load(path.read_text(encoding="utf-8")) or CommentedMap()
    changed: list[tuple[str, Any, Any]] = []
    merge(doc, values, "", changed)
    out = io.StringIO()
    yaml.dump(doc, out)
    import yaml as pyyaml

    validate_params(pyyaml.safe_load(out.getvalue()), f"{path} with {what}")  # one line if it cannot work
    write_text(path, out.getvalue())
    return changed
