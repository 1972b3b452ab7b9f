"""`aegan decide`: run the pipeline, and while a primary verdict is undecided add seeds where they are needed.

Each round runs the pipeline as `aegan run` does (every finished stage is reused: DVC's cache and run-cache),
then replays the group-sequential procedure on every run on disk (report/decided.py, report/sequential.py).
If the procedure needs runs that are not there yet (the next look's seeds for the strategies still undecided
and the baseline, or the replication's fresh seeds), they are written into params.yaml `decide.runs` (and their
AEs' seeds into `decide.ae_seeds`) and the next round trains them. The report of the last round holds the
decided verdicts. Killed and started again, it replays the same looks on the same runs: nothing is trained
twice. params.yaml then records every run the verdicts rest on (commit it with dvc.lock).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aegan.errors import UserError


@dataclass
class Decision:
    rounds: int  # pipeline runs made
    added: int  # runs added to decide.runs
    outcome: object  # report.sequential.Outcome


def decide(params_file: Path, run_pipeline: Callable[[], str | None], echo: Callable[[str], None] = print) -> Decision:
    """Rounds of pipeline + replay until the procedure needs no more runs. `run_pipeline` runs the whole pipeline
    and returns a failure message (None: it succeeded)."""
    from aegan.params import load_params
    from aegan.presets import write_values
    from aegan.report.decided import decided, runs_needed

    rounds = added = 0
    while True:
        failure = run_pipeline()
        rounds += 1
        if failure:
            raise UserError(f"{failure}; `aegan decide` stopped there: fix it and run `aegan decide` again (finished "
                            "runs are kept)")  # fmt: skip
        params = load_params(params_file)
        outcome = decided(params)
        if outcome is None:
            raise UserError(f"report.baseline {params.report.baseline!r} is not among the strategies (or only it is): "
                            "decide compares each strategy with the baseline; add both to `strategies`")  # fmt: skip
        if outcome.done:
            return Decision(rounds, added, outcome)
        runs = runs_needed(params, outcome)
        new = [name for name in runs if name not in params.decide.runs]
        if not new:  # the runs it needs are declared but have no evaluation: the pipeline did not make them
            missing = ", ".join(f"{s}-{i}" for s, seeds in outcome.missing.items() for i in seeds[:1])
            raise UserError(f"the runs the next look needs ({missing} ...) have no evaluation after the pipeline ran: "
                            "check `dvc status` and the stage logs in logs/")  # fmt: skip
        ae_seeds = sorted({r["seed"] for r in runs.values()})
        write_values({"decide": {"runs": runs, "ae_seeds": ae_seeds}}, params_file, "`aegan decide`'s runs")
        added += len(new)
        looks = len(outcome.looks)
        step = "the replication" if looks and all(v.settled for v in outcome.verdicts.values()) else f"look {looks + 1}"
        echo(f"decide: {step} needs {len(new)} more run(s) ({', '.join(new[:6])}{' ...' if len(new) > 6 else ''}): "
             f"added to {params_file} decide.runs")  # fmt: skip


def summary_lines(outcome) -> list[str]:
    """One line per strategy: each claim's decided word, the look and seeds it needed, and the replication."""
    from aegan.report.decided_text import word_of

    plan = outcome.plan
    lines = []
    for s in plan.strategies:
        parts = []
        for claim in plan.measures:
            v = outcome.verdicts[(s, claim)]
            rep = outcome.replication.get((s, claim))
            where = f"{v.n} vs {v.n_baseline} seeds" + (" (cap)" if v.capped and v.word == "undecided" else "")
            parts.append(f"{claim}: {word_of(claim, v.word)} at {where}" + (f", {rep.word}" if rep else ""))
        lines.append(f"  {s}: " + "; ".join(parts))
    return lines
