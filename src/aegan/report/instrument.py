"""The scorer checked as an instrument: its FID for real images under graded damage (the `reference` stage's
`instrument` record, made with aegan.instrument).

Heusel et al. (2017) showed that Inception FID rises steadily as real images are
disturbed more and more; a feature space fit to judge generators must do the same.
The table shows each damage's FID at every level, and whether it rises at every
step; the sentence for the Findings names the damages where it does not.
"""

from __future__ import annotations

from aegan.instrument import rises_monotonically as rises
from aegan.report.inputs import ReportInputs
from aegan.report.render import Document, Heading, Table
from aegan.report.text import fid_name

HEADING = "The scorer as an instrument"
NAMES = {"noise": "Gaussian noise", "blur": "Gaussian blur", "occlusion": "black square",
         "dropped_classes": "dropped classes", "training_copies": "copies of a few training images"}  # fmt: skip


def falls_at(fids: list[float]) -> list[int]:
    """The levels whose FID is not above the level before."""
    return [i for i in range(1, len(fids)) if not fids[i] > fids[i - 1]]


def tables(record: dict) -> list[tuple[str, dict]]:
    """(feature space, its per-damage record, in NAMES' order) for the scorer's features and, where they were
    used, Inception's."""
    spaces = [(fid_name(record["scorer"].get("feature_extractor", "")), record["scorer"]["damages"])]
    if record.get("inception"):
        spaces.append(("FID (Inception)", record["inception"]["damages"]))
    return [(space, dict(sorted(damages.items(), key=_order))) for space, damages in spaces]


def _order(item: tuple[str, dict]) -> int:
    return list(NAMES).index(item[0]) if item[0] in NAMES else len(NAMES)


def verdict(fids: list[float]) -> str:
    if rises(fids):
        return "yes"
    return "**not monotonic**: not above the level before at level " + ", ".join(map(str, falls_at(fids)))


def instrument_section(doc: Document, inputs: ReportInputs) -> None:
    """Damage x level: the FID of a damaged real sample against the held-out split, and whether it rises."""
    record = inputs.reference.get("instrument")
    if not record:  # a reference.json from before the check
        return
    doc.add(Heading(HEADING))
    width = max(len(d["levels"]) for _, damages in tables(record) for d in damages.values())
    rows = []
    for space, damages in tables(record):
        for name, d in damages.items():
            cells = [f"{level:g}: {fid:.3g}" for level, fid in zip(d["levels"], d["fid"])]
            rows.append([NAMES.get(name, name), d.get("unit", ""), space] + cells + [""] * (width - len(cells))
                        + [verdict(d["fid"])])  # fmt: skip
    header = ["damage", "level is", "FID of", *(f"level {i}" for i in range(width)), "rises monotonically?"]
    doc.add(Table(header, rows, note=_note(record)))


def _note(record: dict) -> str:
    n, ref = record.get("num_samples", "?"), record.get("num_reference", "?")
    text = (f"Each cell: level: FID of {n} training images (a seeded subset), damaged as the row says, against the "
            f"{ref} held-out images; level 0 is the undamaged sample, so its FID is the real-vs-real floor at these "
            "counts. The instrument property (Heusel et al. 2017, for Inception FID): more damage, larger FID. "
            "\"yes\" when each cell's FID is above the cell to its left, as you can check along the row.")  # fmt: skip
    if record.get("skipped"):
        text += f" Not tried (no labels): {', '.join(NAMES.get(s, s) for s in record['skipped'])}."
    if not record.get("inception"):
        text += f" No Inception FID beside it: {record.get('inception_skipped') or 'not computed'}."
    return text


def instrument_sentence(inputs: ReportInputs) -> str | None:
    """One Findings sentence: does the scorer's FID rise with every damage tried? None without the check."""
    record = inputs.reference.get("instrument")
    if not record:
        return None
    damages = tables(record)[0][1]
    failing = [NAMES.get(name, name) for name, d in damages.items() if not rises(d["fid"])]
    if not failing:
        tried = ", ".join(NAMES.get(name, name) for name in damages)
        return (f"The scorer's FID rises monotonically with every damage tried on real images ({tried}; section "
                f"\"{HEADING}\"): it scores more damaged images as worse, as an instrument for FID must.")  # fmt: skip
    return (f"The scorer's FID does not rise monotonically with {', '.join(failing)} of real images (section "
            f"\"{HEADING}\"): there, a lower FID does not always mean better images.")  # fmt: skip
