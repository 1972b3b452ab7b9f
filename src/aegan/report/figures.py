"""The report's figures (matplotlib, written as PNG under reports/figures/).

Each function draws one figure from the tables' inputs and returns the path it
wrote; `draw_all` draws every figure the inputs allow. The report embeds them
in the HTML and links them from the Markdown.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI or a GPU node

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from aegan import paths  # noqa: E402
from aegan.atomic import atomic_path  # noqa: E402
from aegan.report.budget import charged_steps  # noqa: E402
from aegan.report.inputs import ReportInputs  # noqa: E402
from aegan.report.study_text import study_figure  # noqa: E402
from aegan.report.tables import class_shares, mean_curve  # noqa: E402

DPI = 110


def draw_all(inputs: ReportInputs, out: Path) -> dict[str, Path]:
    """Every figure the inputs allow, written under `out`, by name (class coverage needs class labels; BEGAN's
    figure a strategy that logs k_t and M)."""
    strategies, seeds, runs, histories = inputs.params.strategies, inputs.params.seeds, inputs.runs, inputs.histories
    floor = inputs.reference["real_vs_real"].get("fid")
    ae_steps = max((charged_steps(runs, s) for s in strategies), default=0)
    figs = {
        "fid_curves": fid_curves(inputs.curves, floor, ae_steps, out / "fid_curves.png"),
        "fid_seconds": fid_seconds(inputs.claims.curves if inputs.claims else {}, strategies, out / "fid_seconds.png"),
        "losses": losses(histories, strategies, seeds, out / "losses.png"),
        "final_fid": final_fid(runs, strategies, floor, out / "final_fid.png"),
        "samples": sample_grids(real_grid(),
                                {(s, seed): paths.run_dir(s, seed) / "samples.png" for s in strategies for seed in seeds},
                                strategies, seeds, out / "samples.png"),  # fmt: skip
    }
    ref_counts = inputs.reference.get("heldout_class_counts")
    shares = class_shares(runs, strategies)
    if ref_counts and shares:
        ref = np.asarray(ref_counts, float)
        figs["class_coverage"] = class_coverage(shares, ref / ref.sum(), out / "class_coverage.png")
    drawn = began(histories, strategies, seeds, out / "began.png")
    if drawn is not None:
        figs["began"] = drawn
    drawn = study_figure(inputs.study, out / "study_fid.png")
    if drawn is not None:
        figs["study_fid"] = drawn
    return figs


def real_grid() -> np.ndarray | None:
    """The held-out images grid the reference stage wrote; None when it is missing."""
    from PIL import Image

    if not paths.HELDOUT_GRID_FILE.is_file():
        return None
    with Image.open(paths.HELDOUT_GRID_FILE) as im:
        return np.asarray(im.convert("RGB"))


def _colors(strategies: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(strategies)}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _band(ax, curve: pd.DataFrame, color, label: str) -> None:
    """Mean line with a shaded +/- std band (no band where only one seed logged the point)."""
    x, m = curve["step"].to_numpy(), curve["mean"].to_numpy()
    s = curve["std"].fillna(0.0).to_numpy()
    ax.plot(x, m, color=color, label=label, lw=1.6)
    ax.fill_between(x, m - s, m + s, color=color, alpha=0.2, lw=0)


def fid_curves(curves: dict[str, pd.DataFrame], floor: float | None, ae_steps: int, path: Path) -> Path:
    """Small-sample FID against the budget axis (own steps + AE pretraining charged), one band per strategy."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = _colors(list(curves))
    drawn = 0
    for s, curve in curves.items():
        if len(curve):
            _band(ax, curve.assign(step=curve["budget"]), colors[s], s)
            drawn += 1
    if floor is not None and np.isfinite(floor) and floor > 0:
        ax.axhline(floor, color="0.3", ls="--", lw=1, label="real vs real (full protocol)")
    if ae_steps:
        ax.axvline(ae_steps, color="0.5", ls=":", lw=1, label="AE pretraining charged")
    if not drawn:
        ax.text(0.5, 0.5, "no small-sample FID logged (train.eval_every = 0?)", ha="center", transform=ax.transAxes)
    ax.set(xlabel="budget: generator-side updates (AE pretraining included)", ylabel="small-sample FID (log scale)",
           title="FID against the matched budget, mean ± std over seeds")  # fmt: skip
    if drawn:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def fid_seconds(curves: dict, strategies: list[str], path: Path) -> Path:
    """Small-sample FID against training seconds (the AE's pretraining included for the strategies charged it),
    one line per run: the wall-clock axis beside the budget axis (machine-dependent; evaluation time excluded)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = _colors(strategies)
    labelled = set()
    for (s, _), c in curves.items():
        known = np.isfinite(c.seconds)
        if known.sum() < 2:
            continue
        ax.plot(c.seconds[known], c.fid[known], color=colors.get(s, "0.5"), lw=1.0, alpha=0.8,
                label=None if s in labelled else s)  # fmt: skip
        labelled.add(s)
    if labelled:
        ax.set_yscale("log")
        ax.legend(fontsize=8, ncol=2)
    else:
        ax.text(0.5, 0.5, "no training times recorded with the FID curves", ha="center", transform=ax.transAxes)
    ax.set(xlabel="training seconds (AE pretraining included where charged; this machine)",
           ylabel="small-sample FID (log scale)", title="FID against wall-clock training time, one line per run")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def losses(histories: dict, strategies: list[str], seeds: list[int], path: Path) -> Path:
    """One panel per strategy: generator and discriminator loss, mean ± std over seeds."""
    cols = min(3, len(strategies))
    rows = int(np.ceil(len(strategies) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
    for ax, s in zip(axes.flat, strategies):
        for loss, color in (("loss_g", "tab:blue"), ("loss_d", "tab:red")):
            curve = mean_curve(histories, s, seeds, loss)
            if len(curve):
                _band(ax, curve, color, loss)
        ax.set_title(s, fontsize=10)
        ax.set_xlabel("generator step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(strategies):]:
        ax.axis("off")
    fig.suptitle("Losses, mean ± std over seeds (each strategy's own loss scale)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def final_fid(runs: pd.DataFrame, strategies: list[str], floor: float | None, path: Path) -> Path:
    """Final FID of every seed as a strip plot per strategy, the mean as a bar; diverged runs marked at the top."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    colors = _colors(strategies)
    rng = np.random.default_rng(0)  # horizontal jitter only, so overlapping seeds stay visible
    finite = runs.loc[runs["status"] == "finished", "fid"].dropna()
    top = float(finite.max()) * 1.6 if len(finite) else 1.0
    for i, s in enumerate(strategies):
        g = runs[runs["strategy"] == s]
        ok = g[(g["status"] == "finished")]["fid"].dropna()
        if len(ok):
            ax.hlines(ok.mean(), i - 0.3, i + 0.3, color=colors[s], lw=2)
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(ok)), ok, color=colors[s], zorder=3, s=28)
        n_div = int((g["status"] == "diverged").sum())
        if n_div:
            ax.scatter([i], [top], marker="x", color="k", zorder=3)
            ax.annotate(f"{n_div} diverged", (i, top), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    if floor is not None and np.isfinite(floor) and floor > 0:
        ax.axhline(floor, color="0.3", ls="--", lw=1, label="real vs real")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(strategies)), strategies, rotation=20, fontsize=9)
    ax.set_ylabel("FID (log scale)")
    if len(finite):
        ax.set_yscale("log")
    ax.set_title("Final FID per training seed (dots) and mean (bar)")
    ax.grid(alpha=0.3, axis="y", which="both")
    return _save(fig, path)


def sample_grids(real_grid: np.ndarray | None, grids: dict[tuple[str, int], Path], strategies: list[str],
                 seeds: list[int], path: Path) -> Path:  # fmt: skip
    """Held-out images, then one column per strategy and one row per seed, all from the same latent batch."""
    from PIL import Image

    cols = len(strategies) + (1 if real_grid is not None else 0)
    fig, axes = plt.subplots(len(seeds), cols, figsize=(2.1 * cols, 2.3 * len(seeds)), squeeze=False)
    for r, seed in enumerate(seeds):
        c0 = 0
        if real_grid is not None:
            ax = axes[r][0]
            if r == 0:
                ax.imshow(real_grid, cmap="gray" if real_grid.ndim == 2 else None, interpolation="nearest")
                ax.set_title("held-out (real)", fontsize=9)
            ax.axis("off")
            c0 = 1
        for c, s in enumerate(strategies, start=c0):
            ax = axes[r][c]
            p = grids.get((s, seed))
            if p is not None and Path(p).is_file():
                img = np.asarray(Image.open(p))
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
            else:
                ax.text(0.5, 0.5, "no samples", ha="center", va="center", fontsize=8)
            if r == 0:
                ax.set_title(s, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == c0:
                ax.set_ylabel(f"seed {seed}", fontsize=9)
    fig.suptitle("Samples from one fixed latent batch (train.grid_seed), shared by every strategy and seed", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def class_coverage(shares: dict[str, np.ndarray], reference: np.ndarray, path: Path) -> Path:
    """Share of samples per scorer class: a row per strategy (mean over seeds) under the held-out row."""
    names = ["held-out (real)", *shares]
    mat = np.vstack([reference, *shares.values()])
    fig, ax = plt.subplots(figsize=(0.55 * mat.shape[1] + 2.6, 0.45 * len(names) + 1.4))
    im = ax.imshow(mat, cmap="viridis", aspect="auto", vmin=0)
    ax.set_yticks(range(len(names)), names, fontsize=9)
    ax.set_xticks(range(mat.shape[1]), [str(i) for i in range(mat.shape[1])], fontsize=8)
    ax.set_xlabel("scorer class")
    for (i, j), v in np.ndenumerate(mat):
        ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=6, color="w" if v < mat.max() / 2 else "k")
    fig.colorbar(im, ax=ax, label="share of samples")
    ax.set_title("Mode coverage: the scorer's class of each generated sample", fontsize=10)
    return _save(fig, path)


def began(histories: dict, strategies: list[str], seeds: list[int], path: Path) -> Path | None:
    """BEGAN's control variable k_t and convergence measure M over training; None when no strategy logs them."""
    curves = {s: (mean_curve(histories, s, seeds, "k_t"), c) for s in strategies
              if len(c := mean_curve(histories, s, seeds, "convergence_M"))}  # fmt: skip
    if not curves:
        return None
    fig, (ax_k, ax_m) = plt.subplots(1, 2, figsize=(10, 3.4))
    colors = _colors(strategies)
    for s, (k, m) in curves.items():
        if len(k):
            _band(ax_k, k, colors[s], s)
        _band(ax_m, m, colors[s], s)
    ax_k.set(xlabel="generator step", ylabel="k_t", title="BEGAN control variable k_t")
    ax_m.set(xlabel="generator step", ylabel="M", title="BEGAN convergence measure M (lower = closer to equilibrium)")
    for ax in (ax_k, ax_m):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)
