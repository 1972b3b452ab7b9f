"""`aegan <command>`: one typer command per pipeline stage.

Heavy imports (torch, mlflow) happen inside the commands, never at import of
this module, so `aegan --help` is instant. Every command validates params.yaml
first; a `UserError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from aegan.warm import exit_now, forward_if_warm

forward_if_warm()  # a stage started by `aegan run` runs in its warm process (warm.py) and exits here with its status

import typer  # noqa: E402

app = typer.Typer(
    help="Compare autoencoder/GAN fusion strategies (run the whole pipeline with `dvc repro`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOpt = typer.Option(Path("params.yaml"), "--params", help="params file to read")


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
                result = fn(*args, **kwargs)
            exit_now(0)  # a finished command skips the interpreter's slow clean-up (warm.py)
            return result
        except UserError as err:
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
        except Exception:  # a bug: its traceback follows
            _end_open_runs("FAILED")
            raise

    return wrapper


def _end_open_runs(status: str) -> None:
    """End the MLflow runs this process left open. Only if it used MLflow at all: never imported here for nothing."""
    tracking = sys.modules.get("aegan.tracking")
    if tracking is not None:
        tracking.end_open_runs(status)


def _params(path: Path, strategies=()):
    """params.yaml with the stage sections and the sections of `strategies` validated (check-params: all)."""
    from aegan.params import load_params

    return load_params(path, strategies)


def _seed(seed: int) -> int:
    """A training seed from the command line, in the range every seed of params.yaml has (what numpy and torch take)."""
    from aegan.errors import UserError
    from aegan.params_base import SEED_MAX

    if not 0 <= seed <= SEED_MAX:
        raise UserError(f"--seed {seed} is out of range: give a seed from 0 to {SEED_MAX}")
    return seed


def _echo_json(obj) -> None:
    import json

    typer.echo(json.dumps(obj, indent=2, default=str))


@app.command()
@_user_errors
def prepare(params: Path = ParamsOpt) -> None:
    """Pack the dataset into data/prepared/dataset.npz with a seeded train/held-out split."""
    from aegan.stages.prepare import run_prepare

    _echo_json(run_prepare(_params(params)))


@app.command("train-scorer")
@_user_errors
def train_scorer(params: Path = ParamsOpt) -> None:
    """Train the independent scorer CNN (the offline feature extractor) on the training split."""
    from aegan.stages.train_scorer import run_train_scorer

    _echo_json(run_train_scorer(_params(params), progress=sys.stderr.isatty()))


@app.command("pretrain-ae")
@_user_errors
def pretrain_ae(
    seed: int = typer.Option(..., help="training seed: the AE of the runs with this seed"),
    params: Path = ParamsOpt,
) -> None:
    """Pretrain the autoencoder of one training seed; writes models/ae/ae-<seed>.pt."""
    from aegan.stages.pretrain_ae import run_pretrain_ae

    _echo_json(run_pretrain_ae(_params(params), _seed(seed), progress=sys.stderr.isatty()))


@app.command()
@_user_errors
def train(
    strategy: str = typer.Option(..., help="strategy name, e.g. dcgan"),
    seed: int = typer.Option(..., help="training seed"),
    params: Path = ParamsOpt,
) -> None:
    """Train one strategy under one seed; writes models/runs/<strategy>-<seed>/."""
    from aegan.stages.train import run_train

    from aegan.strategies import get_strategy

    get_strategy(strategy)  # an unknown name: one line before params.yaml is read
    _echo_json(run_train(_params(params, [strategy]), strategy, _seed(seed), progress=sys.stderr.isatty()))


@app.command()
@_user_errors
def evaluate(
    strategy: str = typer.Option(..., help="strategy name, e.g. dcgan"),
    seed: int = typer.Option(..., help="training seed"),
    params: Path = ParamsOpt,
) -> None:
    """Score one trained generator with torch-fidelity (FID, KID, IS, precision/recall)."""
    from aegan.stages.evaluate import run_evaluate

    _echo_json(run_evaluate(_params(params), strategy, _seed(seed)))


@app.command()
@_user_errors
def reference(params: Path = ParamsOpt) -> None:
    """Score the real-vs-real floor and an untrained generator under the evaluation protocol."""
    from aegan.stages.reference import run_reference

    _echo_json(run_reference(_params(params)))


@app.command()
@_user_errors
def report(params: Path = ParamsOpt) -> None:
    """Write the comparison report: report.md, report.html, figures, summary.json, curves."""
    from aegan.report import run_report

    from aegan import paths

    run_report(_params(params))
    typer.echo(paths.REPORT_FILE.read_text())


@app.command("check-params")
@_user_errors
def check_params(params: Path = ParamsOpt) -> None:
    """Validate params.yaml, every strategy's section included, and exit (0: valid, 2: the first problem, in one line)."""
    from aegan.params import ALL

    _params(params, ALL)
    typer.echo(f"{params}: ok")


@app.command()
@_user_errors
def preset(
    name: str = typer.Argument(..., help="mnist | fashion-mnist | cifar10"),
    params: Path = ParamsOpt,
) -> None:
    """Write a preset for real data (image size, width, budgets, seeds, evaluation counts) into params.yaml, comments kept."""
    from aegan.presets import apply_preset

    changed = apply_preset(name, params)
    for key, old, new in changed:
        typer.echo(f"{key}: {old} -> {new}")
    typer.echo(f"{params}: preset {name}, {len(changed)} values changed (expected wall times: README, Presets)")


@app.command("run")
@_user_errors
def run_pipeline(
    jobs: str = typer.Option(None, "--jobs", "-j", help="stages at once [default: the machine's cores; on a cluster: its worker threads]"),
    scheduler: str = typer.Option(None, "--scheduler", help="an existing Dask scheduler, e.g. tcp://host:8786 (workers must see this folder)"),
    cold: bool = typer.Option(False, "--cold", help="start every stage as a fresh process (no warm process to fork from)"),
) -> None:
    """`dvc repro` with independent stages in parallel: each out-of-date stage is a Dask task once its upstream stages are done."""
    from aegan.parallel import failure_message, parse_jobs, run

    outcome = run(parse_jobs(jobs), scheduler, warm=not cold)
    message = failure_message(outcome)
    if message:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
