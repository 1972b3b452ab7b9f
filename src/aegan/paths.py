"""Where every stage reads and writes. One place, so stages, tests and dvc.yaml agree."""

from __future__ import annotations

from pathlib import Path

PARAMS_FILE = Path("params.yaml")
RAW_DIR = Path("data/raw")  # the user's own data: a dependency of `prepare` in dvc.yaml, so DVC sees it change
PREPARED_DIR = Path("data/prepared")
DATASET_FILE = PREPARED_DIR / "dataset.npz"
DATA_CARD_FILE = PREPARED_DIR / "card.json"
MODELS_DIR = Path("models")
AE_DIR = MODELS_DIR / "ae"  # one pretrained AE per training seed
SCORER_FILE = MODELS_DIR / "scorer.pt"
SCORER_INFO_FILE = MODELS_DIR / "scorer.json"
REPORTS_DIR = Path("reports")
EVAL_DIR = REPORTS_DIR / "eval"
REFERENCE_FILE = EVAL_DIR / "reference.json"
HELDOUT_GRID_FILE = EVAL_DIR / "heldout_samples.png"
SUMMARY_FILE = REPORTS_DIR / "summary.json"
REPORT_FILE = REPORTS_DIR / "report.md"
REPORT_HTML_FILE = REPORTS_DIR / "report.html"
FIGURES_DIR = REPORTS_DIR / "figures"
CURVES_FILE = REPORTS_DIR / "fid_curves.csv"  # every strategy's mean curve, long format: one DVC plot
METRICS_FILE = REPORTS_DIR / "metrics.json"  # the headline figures per strategy: what `dvc exp show` shows


def ae_file(seed: int) -> Path:
    """The AE pretrained with training seed `seed`: the AE strategies' runs of that seed use it."""
    return AE_DIR / f"ae-{seed}.pt"


def ae_snapshots_file(seed: int) -> Path:
    """That AE's state every `train.eval_every` steps of its pretraining (the charged part of a budget curve)."""
    return AE_DIR / f"ae-{seed}-snapshots.pt"


def ae_info_file(seed: int) -> Path:
    return AE_DIR / f"ae-{seed}.json"


def run_dir(strategy: str, seed: int) -> Path:
    """Training outputs of one (strategy, seed): generator, history, run info."""
    return MODELS_DIR / "runs" / f"{strategy}-{seed}"


def eval_file(strategy: str, seed: int) -> Path:
    return EVAL_DIR / f"{strategy}-{seed}.json"


# ---- the study (params.yaml `study`): a run per (strategy, setting, seed), and each best setting on fresh seeds
STUDY_RUNS_DIR = MODELS_DIR / "runs" / "study"
STUDY_EVAL_DIR = EVAL_DIR / "study"
STUDY_BEST_RUNS_DIR = MODELS_DIR / "runs" / "study-best"
STUDY_BEST_EVAL_DIR = EVAL_DIR / "study-best"


def study_run_dir(strategy: str, setting: int, seed: int) -> Path:
    """Setting 0 is the strategy's own: the pipeline's own run of that seed."""
    return run_dir(strategy, seed) if setting == 0 else STUDY_RUNS_DIR / strategy / f"s{setting}-{seed}"


def study_eval_file(strategy: str, setting: int, seed: int) -> Path:
    """Per strategy a folder: its best-setting stage depends on its own strategy's evaluations only."""
    return STUDY_EVAL_DIR / strategy / f"s{setting}-{seed}.json"


def study_best_dir(strategy: str, seed: int) -> Path:
    return STUDY_BEST_RUNS_DIR / f"{strategy}-{seed}"


def study_best_eval_file(strategy: str, seed: int) -> Path:
    return STUDY_BEST_EVAL_DIR / f"{strategy}-{seed}.json"
