"""`aegan <command>`: one typer command per pipeline stage (the table STAGE_COMMANDS), plus `run`, `decide`, `retrain`,
`check-params`, `preset`, `promote` and `ui`.

A stage's command only hands its arguments to the stage's `main` (stages/*.py),
which reads params.yaml and computes: this module runs stages and reports
what they return, so it is no part of any stage's identity (dvc.yaml deps).
Heavy imports (torch, mlflow) happen inside the commands, never at import of
this module, so `aegan --help` is instant. A `UserError` becomes one line on
stderr and exit code 2.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import typer

from aegan.shutdown import exit_now

app = typer.Typer(
    help="Compare autoencoder/GAN fusion strategies (run the whole pipeline with `dvc repro`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

INVOKED_FROM = Path.cwd()  # where the command was typed; commands run from the workspace root (`_workspace_root`)


def workspace_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` that holds dvc.yaml or params.yaml (None: there is none)."""
    for folder in (start, *start.parents):
        if (folder / "dvc.yaml").is_file() or (folder / "params.yaml").is_file():
            return folder
    return None


@app.callback()
def _workspace_root() -> None:
    """Every command works from the workspace root, also when typed in a subfolder: the stages' paths, mlflow.db
    and DVC's stage names are the root's."""
    global INVOKED_FROM
    INVOKED_FROM = Path.cwd()
    root = workspace_root(INVOKED_FROM)
    if root is not None and root != INVOKED_FROM:
        os.chdir(root)


def _params_from_invocation(ctx: typer.Context, param: typer.CallbackParam, value: Path) -> Path:
    """A --params PATH given relative is relative to where the command was typed; the default is the root's file."""
    source = ctx.get_parameter_source(param.name)  # typer's own click: compared by name
    if value.is_absolute() or getattr(source, "name", None) in ("DEFAULT", "DEFAULT_MAP"):
        return value
    return Path(os.path.relpath(INVOKED_FROM / value))


ParamsOpt = typer.Option(Path("params.yaml"), "--params", help="params file to read (default: the workspace's)",
                         callback=_params_from_invocation)


def _user_errors(fn):
    """Turn a UserError (or a permission error) into `error: <message>` + exit 2, with no traceback.

    The command runs as a stage process (shutdown.py): SIGTERM stops it like Ctrl-C (exit 143), and it
    does not outlive its parent. A run it leaves open in MLflow ends KILLED (signal) or FAILED (error).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from aegan.errors import UserError
        from aegan.shutdown import Terminated, stage_process

        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        try:
            with stage_process():
                _stage_params("forget_loaded")
                result = fn(*args, **kwargs)
                _stage_params("check_unchanged")  # params.yaml edited while the stage ran: its outputs not recorded
            exit_now(0)  # a finished command skips the interpreter's slow clean-up (shutdown.py)
            return result
        except UserError as err:
            if type(err).__name__ != "StoreUnusable":  # a dead tracking server: no second wait to end its runs
                _end_open_runs("FAILED")
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None
        except PermissionError as err:
            _end_open_runs("FAILED")
            where = err.filename or "a file"
            typer.echo(f"error: {where}: {err.strerror or 'permission denied'}: give this user access to it "
                       f"(chmod u+rwX {where})", err=True)  # fmt: skip
            raise typer.Exit(UserError.exit_code) from None
        except Terminated:
            _end_open_runs("KILLED")
            typer.echo("error: stopped by SIGTERM (outputs of this stage not written)", err=True)
            raise typer.Exit(Terminated.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C
            _end_open_runs("KILLED")
            raise
        except Exception as err:  # a bug: its traceback follows (unless memory ran out)
            _end_open_runs("FAILED")
            if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError" or \
                    "can't allocate memory" in str(err):  # fmt: skip
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
                typer.echo(f"error: out of memory ({first}): lower model.width or the batch sizes (`aegan "
                           "check-params` estimates what fits)", err=True)  # fmt: skip
                raise typer.Exit(2) from None
            raise

    return wrapper


def _stage_params(call: str) -> None:
    """stage_params.<call>() if a stage of this process has loaded params (never imported here for nothing)."""
    module = sys.modules.get("aegan.stage_params")
    if module is not None:
        getattr(module, call)()


def _end_open_runs(status: str) -> None:
    """End the MLflow runs this process left open. Only if it used MLflow at all: never imported here for nothing."""
    tracking = sys.modules.get("aegan.tracking")
    if tracking is not None:
        tracking.end_open_runs(status)


def _echo_json(obj) -> None:
    import json

    typer.echo(json.dumps(obj, indent=2, default=str))


STRATEGY = ("strategy", str, "strategy name, e.g. dcgan")
SETTING = ("setting", int, "a drawn setting id of the study (>= 1)")


def seed(help: str) -> tuple[str, type, str]:
    return ("seed", int, help)


def show_report(_result) -> None:
    from aegan import paths

    typer.echo(paths.REPORT_FILE.read_text())


@dataclass(frozen=True)
class StageCommand:
    """`aegan <name> [--option ...] [--params FILE]` calls `aegan.stages.<module>.main(params, *options)`."""

    name: str
    module: str
    help: str
    options: tuple[tuple[str, type, str], ...] = ()
    show: Callable[[Any], None] = _echo_json  # what the command prints of main's result


# one row per dvc.yaml stage, in pipeline order
STAGE_COMMANDS = (
    StageCommand("prepare", "prepare", "Pack the dataset into data/prepared/dataset.npz with a seeded train/held-out split."),
    StageCommand("train-scorer", "train_scorer", "Train the independent scorer CNN (the offline feature extractor) on the training split."),
    StageCommand("pretrain-ae", "pretrain_ae", "Pretrain the autoencoder of one training seed; writes models/ae/ae-<seed>.pt.",
                 (seed("training seed: the AE of the runs with this seed"),)),
    StageCommand("train", "train", "Train one strategy under one seed; writes models/runs/<strategy>-<seed>/.",
                 (STRATEGY, seed("training seed"))),
    StageCommand("evaluate", "evaluate", "Score one trained generator with torch-fidelity (FID, KID, IS, precision/recall).",
                 (STRATEGY, seed("training seed"))),
    StageCommand("study-own", "study_own", "Enter the pipeline's own run (setting 0) into the study; writes "
                 "reports/eval/study/<strategy>/s0-<seed>.json.", (STRATEGY, seed("a seed of study.seeds"))),
    StageCommand("study-train", "study_train", "Train one setting of the study under one seed; writes "
                 "models/runs/study/<strategy>/s<setting>-<seed>/.", (STRATEGY, SETTING, seed("training seed"))),
    StageCommand("study-evaluate", "study_evaluate", "Score one study run (as `evaluate` does); writes "
                 "reports/eval/study/<strategy>/s<setting>-<seed>.json.", (STRATEGY, SETTING, seed("training seed"))),
    StageCommand("study-best", "study_best", "Train the strategy's best study setting again under a fresh seed; writes "
                 "models/runs/study-best/<strategy>-<seed>/.", (STRATEGY, seed("a fresh seed (study.fresh_seeds)"))),
    StageCommand("study-best-evaluate", "study_best_evaluate", "Score a best setting's run on a fresh seed; writes "
                 "reports/eval/study-best/<strategy>-<seed>.json.", (STRATEGY, seed("a fresh seed (study.fresh_seeds)"))),
    StageCommand("reference", "reference", "Score the real-vs-real floor and an untrained generator under the evaluation protocol."),
    StageCommand("report", "report", "Write the comparison report: report.md, report.html, figures, summary.json, curves.",
                 show=show_report),
)  # fmt: skip


def add_stage_command(spec: StageCommand) -> None:
    """Register `spec` with typer: its options become keyword parameters (all required), then `--params`."""

    def command(**kwargs) -> None:
        stage = importlib.import_module(f"aegan.stages.{spec.module}")
        spec.show(stage.main(kwargs["params"], *(kwargs[name] for name, _, _ in spec.options)))

    keyword = inspect.Parameter.KEYWORD_ONLY
    command.__signature__ = inspect.Signature(
        [inspect.Parameter(name, keyword, annotation=kind, default=typer.Option(..., help=help))
         for name, kind, help in spec.options]
        + [inspect.Parameter("params", keyword, annotation=Path, default=ParamsOpt)])  # fmt: skip
    command.__name__, command.__doc__ = spec.module, spec.help
    app.command(spec.name)(_user_errors(command))


for _spec in STAGE_COMMANDS:
    add_stage_command(_spec)


@app.command("check-params")
@_user_errors
def check_params(params: Path = ParamsOpt) -> None:
    """Validate params.yaml: every section, every key stated, nothing that can only fail later (0: valid, 2: the first problem, in one line)."""
    from aegan.runnable import check_params_file

    check_params_file(params)
    typer.echo(f"{params}: ok")


@app.command()
@_user_errors
def preset(
    name: str = typer.Argument(..., help="mnist | fashion-mnist | cifar10 | study (the equal-budget study on the current data)"),
    params: Path = ParamsOpt,
) -> None:
    """Write a preset for real data (image size, width, budgets, seeds, evaluation counts) into params.yaml, comments kept."""
    from aegan.presets import apply_preset

    changed = apply_preset(name, params)
    for key, old, new in changed:
        typer.echo(f"{key}: {old} -> {new}")
    typer.echo(f"{params}: preset {name}, {len(changed)} values changed (expected wall times: docs/presets.md)")


@app.command("run")
@_user_errors
def run_pipeline(
    jobs: str = typer.Option(None, "--jobs", "-j", help="stages at once [default: the machine's cores; on a cluster: its worker threads]"),
    scheduler: str = typer.Option(None, "--scheduler", help="an existing Dask scheduler, e.g. tcp://host:8786 (workers must see this folder)"),
) -> None:
    """`dvc repro` with independent stages in parallel: each out-of-date stage is a Dask task once its upstream stages are done."""
    from aegan.parallel import Stopped, failure_message, parse_jobs, run

    try:
        outcome = run(parse_jobs(jobs), scheduler)
    except Stopped as err:
        _end_open_runs("KILLED")
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(err.exit_code) from None
    message = failure_message(outcome)
    if message:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1)


@app.command()
@_user_errors
def decide(
    jobs: str = typer.Option(None, "--jobs", "-j", help="stages at once [default: the machine's cores]"),
    scheduler: str = typer.Option(None, "--scheduler", help="an existing Dask scheduler, as for `aegan run`"),
    params: Path = ParamsOpt,
) -> None:
    """Run the pipeline, and add seeds (params.yaml decide.runs) until every primary verdict is decided (decide.py)."""
    from aegan.decide import decide as run_decide, summary_lines
    from aegan.parallel import Stopped, failure_message, parse_jobs, run

    def pipeline() -> str | None:
        return failure_message(run(parse_jobs(jobs), scheduler))

    try:
        result = run_decide(params, pipeline, typer.echo)
    except Stopped as err:  # every finished run is kept: `aegan decide` again replays and goes on
        _end_open_runs("KILLED")
        typer.echo(f"error: {str(err).replace('aegan run', 'aegan decide')}", err=True)
        raise typer.Exit(err.exit_code) from None
    typer.echo(f"decide: done after {result.rounds} pipeline run(s), {result.added} run(s) added; the verdicts "
               "(reports/report.md, \"Decided verdicts\"):")  # fmt: skip
    for line in summary_lines(result.outcome):
        typer.echo(line)


@app.command()
@_user_errors
def retrain(
    out: Path = typer.Option(..., "--out", help="the Markdown file to write: what ran, the metrics diff, the Findings"),
    base: str = typer.Option(None, "--base", help="revision to diff the metrics against, e.g. origin/main"),
    jobs: str = typer.Option(None, "--jobs", "-j", help="stages at once [default: the machine's cores]"),
    push: bool = typer.Option(True, "--push/--no-push", help="push outputs and run-cache to the DVC remote, if any"),
) -> None:
    """The retraining job (CI or a laptop): check params, pull from the DVC remote, run what changed, push, write Markdown."""
    from aegan.parallel import parse_jobs
    from aegan.retrain import retrain as run_retrain

    result = run_retrain(out, base, parse_jobs(jobs), push)
    typer.echo(f"retrain: {len(result.ran)} stage(s) run, {len(result.up_to_date)} up to date, "
               f"{result.seconds:.0f} s; {out} written")  # fmt: skip
    if result.failure or result.push_failure:
        typer.echo(f"error: {result.failure or result.push_failure}", err=True)
        raise typer.Exit(1)


@app.command()
@_user_errors
def ui(
    port: int = typer.Option(5000, "--port", help="the port of MLflow's UI"),
    host: str = typer.Option("127.0.0.1", "--host", help="the address it listens on (0.0.0.0: every interface)"),
) -> None:
    """MLflow's UI on this workspace's runs; prints the URL of the comparison: train runs grouped by strategy."""
    import shutil

    from aegan import tracking

    uri = tracking.tracking_uri()
    if tracking.sqlite_path(uri) is None:  # a tracking server: its own UI, where the view is stored too
        typer.echo(f"open {tracking.comparison_url(uri)}")
        return
    typer.echo(f"open {tracking.comparison_url(f'http://{host}:{port}')}")
    typer.echo("(train runs grouped by strategy, mean final FID first; every run: the Runs tab without the view)")
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    os.execv(mlflow, [mlflow, "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)])


@app.command()
@_user_errors
def promote() -> None:
    """Point the registry's `best` at the winner the comparison decided (reports/summary.json); else leave it."""
    from aegan.promote import promote as move_best

    typer.echo(move_best())


if __name__ == "__main__":  # pragma: no cover
    app()
