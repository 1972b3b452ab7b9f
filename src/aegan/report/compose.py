"""The report's content: which tables, figures and sentences, in which order.

`build_document` composes the report from the sections: the setup, main
table, stability and figures here, the judgements from findings.py. Every
sentence that judges a result is computed from the tables (tables.py);
nothing here is written with a particular outcome in mind.
"""

from __future__ import annotations

import math
from pathlib import Path

from aegan.matched_budget import own_steps
from aegan.report import tables as T
from aegan.report.decided_text import decided_section
from aegan.report.copying import copying_section
from aegan.report.findings import baseline_section, budget_section, claims_section, findings, seeds_section
from aegan.report.inputs import ReportInputs, WallTime
from aegan.report.instrument import instrument_section
from aegan.report.render import Bullets, Document, Figure, Heading, Paragraph, Table
from aegan.report.study_text import study_section
from aegan.report.text import fid_name, fmt

# the protocol's final scores use at least this many generated samples (params.yaml's evaluate.num_samples)
PROTOCOL_SAMPLES = 2_000


def build_document(inputs: ReportInputs, figs: dict[str, Path], wall: WallTime) -> Document:
    """The whole report, section by section: the answer first, then how it was reached."""
    doc = Document(inputs.params.report.title)
    findings(doc, inputs)
    setup_section(doc, inputs, wall)
    main_table(doc, inputs)
    baseline_section(doc, inputs)
    budget_section(doc, inputs)
    claims_section(doc, inputs)
    copying_section(doc, inputs)
    if inputs.decided is not None:
        decided_section(doc, inputs.decided)
    study_section(doc, inputs.study, inputs.params, figs.get("study_fid"))
    seeds_section(doc, inputs)
    instrument_section(doc, inputs)
    stability_section(doc, inputs)
    figures_section(doc, figs)
    return doc


def budget_words(params) -> str:
    tp, ae_steps = params.train, params.pretrain_ae.steps
    if tp.match_budget:
        return (f"{tp.budget} generator-side updates per run, matched: a strategy that uses the AE is charged its "
                f"{ae_steps} pretraining steps and trains {own_steps(tp.budget, tp.match_budget, ae_steps)} of its own")  # fmt: skip
    return (f"{tp.budget} own steps per run (train.match_budget: false), so strategies that use the AE have had "
            f"{ae_steps} more generator-side updates: the comparison credits their head start")  # fmt: skip


def data_labels(card: dict) -> str:
    if not card.get("labels"):
        return "no labels (the scorer learnt the rotation pretext task; class coverage is not available)"
    counts = card.get("class_counts", {})
    return f"{len(counts)} classes"


def skipped_inputs(card: dict, shown: int = 10) -> str | None:
    """The inputs `prepare` left out (data card), counted and named; None when nothing was."""
    info = card.get("input", {})
    files, folders, names = info.get("skipped_files", 0), info.get("skipped_folders", 0), info.get("skipped", [])
    if not files and not folders:
        return None
    listed = "; ".join(f"`{n}`" for n in names[:shown]) + (f"; and {len(names) - shown} more" if len(names) > shown else "")
    lost = info.get("missing_classes") or []
    dropped = f" Classes dropped (`prepare.allow_missing_classes`): {', '.join(lost)}." if lost else ""
    return (f"Left out of the data: {files} file(s) and {folders} folder(s) that could not be read or are not images: "
            f"{listed} (all in data/prepared/card.json).{dropped}")  # fmt: skip


# ------------------------------------------------------------------ sections
def setup_section(doc: Document, inputs: ReportInputs, wall: WallTime) -> None:
    card, scorer, ae, reference, params = inputs.card, inputs.scorer, inputs.ae, inputs.reference, inputs.params
    total, known, expected = wall
    diffs = inputs.differences
    doc.add(Heading("Setup"))
    items = [
        f"Data: `{card['source']}`, {card['num_train']} training / {card['num_heldout']} held-out images of shape "
        f"{tuple(card['shape'])}, {data_labels(card)}; packed file sha256 `{card['sha256'][:12]}`.",
        f"Scorer (feature extractor `{reference.get('feature_extractor', '?')}`): {scorer['task']} task, "
        f"held-out accuracy {scorer['heldout_accuracy']:.3f}.",
        f"Autoencoder pretraining: one AE per training seed (so an AE strategy's spread includes its AE's), "
        f"{params.pretrain_ae.steps} steps, {fmt(*T.mean_std([a['train_seconds'] for a in ae.values()])[:2])} s, held-out "
        f"MSE {fmt(*T.mean_std([a['heldout_mse'] for a in ae.values()])[:2])}; its steps and time are charged to the "
        "strategies that use it.",
        f"Budget: {budget_words(params)}; batch {params.train.batch_size}, seeds {params.seeds}.",
        f"Evaluation: {reference['num_samples']} generated samples per run scored against all "
        f"{reference.get('num_reference', '?')} held-out images (never trained on); the floor scores "
        f"{reference.get('num_real_samples', reference['num_samples'])} training images against the same held-out images."
        + ("" if reference["num_samples"] >= PROTOCOL_SAMPLES else
           f" Fewer than the protocol's {PROTOCOL_SAMPLES:,} generated samples: FID's bias grows as the count falls."),
        f"Commit: {inputs.commit}.",
        f"Pipeline wall time: {total:.0f} s ({total / 60:.1f} min), the sum of the wall times the stages recorded "
        f"({known} of {expected} stage runs recorded one; DVC's own bookkeeping is not included).",
    ]
    if skipped := skipped_inputs(card):
        items.insert(1, skipped)
    if diffs.rev is None:
        items.append("Parameters: not compared with a committed params.yaml (not a git checkout, or not committed).")
    elif diffs.changed:
        shown = ", ".join(f"`{k}` = {v!r} (committed: {c!r})" for k, v, c in diffs.changed)
        items.append(f"Parameters changed from params.yaml as committed at `{diffs.rev[:12]}`: {shown}.")
    else:
        items.append(f"Parameters: params.yaml as committed at `{diffs.rev[:12]}`.")
    doc.add(Bullets(items))
    if fid_name(reference.get("feature_extractor", "")) == "FID (scorer features)":
        doc.add(Paragraph("Scores use the scorer's features: they compare strategies with each other here, and are "
                          "not comparable with published Inception FID."))  # fmt: skip


def main_table(doc: Document, inputs: ReportInputs) -> None:
    table, reference = inputs.table, inputs.reference
    best = T.best_strategies(table)
    fid_col = fid_name(reference.get("feature_extractor", ""))
    header = ["strategy", "n", fid_col, "KID (×1)", "IS", "precision", "recall", "budget (own + AE)", "train s",
              "AE s charged", "total s", "img/s"]  # fmt: skip
    rows = []
    for _, r in table.iterrows():
        n = f"{int(r['n'])}" + (f" ({int(r['diverged'])} diverged)" if r["diverged"] else "")
        cells = [f"`{r['strategy']}`", n]
        for m in T.METRICS:
            text = fmt(r[f"{m}_mean"], r[f"{m}_std"], n=int(r["n"]))
            cells.append(f"**{text}**" if r["strategy"] in best[m] else text)
        budget = "n/a" if not math.isfinite(r["budget"]) else f"{r['budget']:.0f} ({r['steps']:.0f} + {r['ae_steps_charged']:.0f})"
        cells += [budget, fmt(r["train_seconds_mean"]), f"{r['ae_seconds_charged']:.1f}", fmt(r["total_seconds"]),
                  _int(r["images_per_second_mean"])]  # fmt: skip
        rows.append(cells)
    for name, key in (("real vs real (floor)", "real_vs_real"), ("untrained generator", "untrained_generator")):
        ref = reference[key]
        rows.append([f"*{name}*", "", *[fmt(ref.get(m)) for m in T.METRICS], "", "", "", "", ""])
    n_seeds = len(inputs.params.seeds)
    params_g = {int(p) for p in table["generator_parameters"]}
    doc.add(Heading("Main table"))
    doc.add(Table(header, rows, note=(
        f"Mean ± std over training seeds; n = finished seeds of {n_seeds} (a diverged run has no scores and is not "
        "averaged; with n = 1 the std is –). **Bold**: the best mean in its column (lower FID/KID, higher "
        "IS/precision/recall). KID (×1): the kernel distance as torch-fidelity gives it, not scaled (papers often "
        "quote KID ×10³); its size follows the features' scale. Budget: generator-side updates, the strategy's own "
        "plus the AE pretraining charged to it. Train s and img/s: the strategy's own training; total s adds the pretraining of its seed's AE. Every "
        f"generator has {', '.join(f'{p:,}' for p in sorted(params_g))} parameters.")))  # fmt: skip


def stability_section(doc: Document, inputs: ReportInputs) -> None:
    stab, rp, reference = inputs.stability, inputs.params.report, inputs.reference
    doc.add(Heading("Stability"))
    rows = []
    for _, r in stab.iterrows():
        covered = ("n/a" if not r["classes"] else
                   f"{fmt(r['classes_covered_mean'], r['classes_covered_std'], n=int(r['n']))} of {int(r['classes'])}")  # fmt: skip
        diverged = f"{int(r['diverged'])} of {int(r['runs'])}"
        if r["diverged_at"]:
            diverged += f" (at step {', '.join(map(str, r['diverged_at']))})"
        m = "n/a" if not math.isfinite(r["began_m_last"]) else f"{r['began_m_first']:.3g} → {r['began_m_last']:.3g}"
        if math.isfinite(r["began_k_last"]):
            m += f" (k_t {r['began_k_first']:.3g} → {r['began_k_last']:.3g})"
        if math.isfinite(r["began_energy_ratio"]):
            m += f"; L(G(z))/L(x) at the end {r['began_energy_ratio']:.2g}"
        rows.append([
            f"`{r['strategy']}`", diverged, fmt(r["fid_std"]),
            "n/a" if not math.isfinite(r["fid_min"]) else f"{r['fid_min']:.3g} – {r['fid_max']:.3g}",
            _osc(r["loss_g_tail_std"], r["loss_g_tail_rel"]), _osc(r["loss_d_tail_std"], r["loss_d_tail_rel"]),
            covered, fmt(r["class_kl_mean"]), f"{int(r['collapse_flags'])} of {int(r['n'])}", m,
        ])  # fmt: skip
    header = ["strategy", "diverged", "FID std (seeds)", "FID range", "G loss osc.", "D loss osc.", "classes covered",
              "class KL", "precision ≫ recall", "BEGAN M (k_t) first → last; energy ratio"]  # fmt: skip
    doc.add(Table(header, rows, note=(
        f"Loss oscillation: std of the logged loss over the last {rp.tail_fraction:.0%} of training (mean over "
        "seeds), and in brackets relative to the loss's mean magnitude (losses have different scales per strategy). "
        f"Classes covered: scorer classes whose share of the samples is at least {rp.coverage_min_share:g} x their "
        "held-out share (mean ± std over seeds); class KL: KL(held-out classes || sample classes), 0 for a perfect "
        f"match. Precision ≫ recall: runs whose recall < {rp.collapse_recall_ratio:g} x precision, a sign of mode "
        "collapse. BEGAN M: the convergence measure of Berthelot et al. (2017), and its control variable k_t; the "
        "energy ratio E[L(G(z))] / E[L(x)] over the end of training is what k_t steers towards gamma (equilibrium), "
        "only for the strategy that trains a BEGAN discriminator.")))  # fmt: skip
    mode_table(doc, stab, reference)
    refs = T.reference_coverage(reference, rp.coverage_min_share)
    if refs.get("real_vs_real"):
        (c_real, kl_real), untrained = refs["real_vs_real"], refs.get("untrained_generator")
        text = f"For scale: real training images cover {c_real} classes (class KL {kl_real:.3g})"
        if untrained:
            text += f"; an untrained generator covers {untrained[0]} (class KL {untrained[1]:.3g})"
        doc.add(Paragraph(text + "."))


def mode_table(doc: Document, stab, reference: dict) -> None:
    """Stacked digits (aegan.modes): modes captured of 1,000 and KL to uniform, per strategy, beside real images."""
    if "modes_captured_mean" not in stab or not stab["modes_captured_mean"].notna().any():
        return
    rows = [[f"`{r['strategy']}`", fmt(r["modes_captured_mean"], r["modes_captured_std"], n=int(r["n"])),
             fmt(r["mode_kl_mean"], r["mode_kl_std"], n=int(r["n"]))] for _, r in stab.iterrows()]  # fmt: skip
    real = reference.get("heldout_modes") or {}
    if real:
        rows.append(["held-out images (ceiling)", f"{real.get('modes_captured', 'n/a')}", fmt(real.get("mode_kl", math.nan))])
    doc.add(Table(["strategy", "modes captured (of 1,000)", "KL to uniform"], rows, note=(
        "Stacked digits: three digits as the three channels, 1,000 modes; the scorer classifies each channel. A mode "
        "is captured with at least one of 26,000 generated samples (as PacGAN counts); KL of the generated mode "
        "distribution to uniform, lower is better. Mean ± std over seeds.")))  # fmt: skip


def _int(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "n/a"


def _osc(std: float, rel: float) -> str:
    if not math.isfinite(std):
        return "n/a"
    return f"{std:.3g}" + (f" ({rel:.0%})" if math.isfinite(rel) else "")


def figures_section(doc: Document, figs: dict[str, Path]) -> None:
    captions = {
        "fid_curves": "Small-sample FID against the budget (generator-side updates, AE pretraining included), mean over "
                      "seeds with a ± std band (log scale), from budget 0: over the AE pretraining a strategy is "
                      "charged, the generator it would have had then (the decoder with its prior, or its untrained "
                      "generator); the dotted line is where its own training starts.",
        "fid_seconds": "Small-sample FID against training seconds on this machine, one line per run (AE pretraining "
                       "included where charged; evaluation time excluded): the wall-clock view of the same curves.",
        "final_fid": "Final FID of each training seed (dots) and their mean (bar); the dashed line is the real-vs-real floor.",
        "losses": "Generator and discriminator losses per strategy, mean over seeds with a ± std band.",
        "samples": "The same fixed latent batch through every strategy (columns) and seed (rows), next to held-out images.",
        "class_coverage": "Which scorer class each generated sample falls in (mean share over seeds): missing classes are dropped modes.",
        "began": "BEGAN's control variable k_t and convergence measure M over training, mean ± std over seeds.",
    }  # fmt: skip
    titles = {"fid_curves": "Curves", "fid_seconds": "Curves against wall-clock time", "final_fid": "Final FID per seed", "samples": "Samples", "class_coverage": "Mode coverage", "began": "BEGAN equilibrium"}
    for key in ("fid_curves", "fid_seconds", "losses", "final_fid", "samples", "class_coverage", "began"):
        path = figs.get(key)
        if path is None:
            continue
        if key in titles:
            doc.add(Heading(titles[key]))
        doc.add(Figure(path, f"figures/{path.name}", captions[key]))
