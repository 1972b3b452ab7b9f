"""dvc.yaml's code deps are true: every file of src/aegan a stage's code imports is a dependency of that stage,
and nothing else is (not the code that runs stages).

The imports are read from the code (tests/imports.py), not listed by hand, so
a new import that dvc.yaml misses fails here before it can leave stale results.
"""

from __future__ import annotations

import ast

import pytest
import yaml

from imports import RUNNER, SAME_AS, STAGES, STRATEGIES, STRATEGY_STAGES, REPO, closure, module_file, stage_files, stage_modules

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def declared(stage: str, strategy: str | None = None) -> list[str]:
    deps = [d if isinstance(d, str) else next(iter(d)) for d in DVC[stage]["deps"]]
    return [d.replace("${item.strategy}", strategy or "") for d in deps if d.startswith("src/")]


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", STAGES)
def test_every_imported_file_is_a_dependency(stage):
    strategies = STRATEGIES if stage in STRATEGY_STAGES else [None]
    for strategy in strategies:
        deps = declared(stage, strategy)
        missing = sorted(f for f in stage_files(stage, strategy) if not covered(f, deps))
        assert not missing, f"dvc.yaml stage {stage} ({strategy or ''}) imports but does not depend on {missing}"


@pytest.mark.parametrize("stage", STAGES)
def test_every_declared_code_dependency_is_imported(stage):
    """No stale entries: a declared file the command no longer imports would re-run the stage for nothing."""
    for strategy in STRATEGIES if stage in STRATEGY_STAGES else [None]:
        files = stage_files(stage, strategy)
        unused = [d for d in declared(stage, strategy) if not any(covered(f, [d]) for f in files)]
        assert not unused, f"dvc.yaml stage {stage} ({strategy or ''}) depends on {unused}, which it does not import"


def test_a_train_stage_imports_no_other_strategy():
    """What makes `src/aegan/strategies/${item.strategy}.py` exact: no strategy module imports another one."""
    for stage in STRATEGY_STAGES:
        for strategy in STRATEGIES:
            others = {f"src/aegan/strategies/{s}.py" for s in STRATEGIES if s != strategy}
            assert not stage_files(stage, strategy) & others, (stage, strategy)


def test_the_analysis_sees_lazy_imports_and_skips_type_checking_ones(tmp_path):
    """The import reader itself: function-level imports count; `if TYPE_CHECKING:` imports do not."""
    from imports import imported_names, runtime_nodes

    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from aegan.nets import Decoder\n"
                     "def f():\n    from aegan.report import tables as T\n    import aegan.metrics\n")  # fmt: skip
    assert imported_names(runtime_nodes(tree)) == {"aegan", "aegan.report", "aegan.report.tables", "aegan.metrics"}
    assert "aegan.stages.train" in stage_modules("train") and "aegan.stages.prepare" not in stage_modules("train")
    assert module_file("aegan.stages") == REPO / "src/aegan/stages/__init__.py"
    assert "aegan.torch" not in closure({"aegan.images"})


def test_no_stage_imports_what_it_does_not_use():
    """Start-up and caching: prepare and the report never import the networks, torch-fidelity's adapter or MLflow code
    they do not need, and only the stages that train import a strategy."""
    assert "src/aegan/nets.py" not in stage_files("prepare")
    assert "src/aegan/metrics.py" not in stage_files("train_scorer") | stage_files("pretrain_ae")
    assert "src/aegan/nets.py" not in stage_files("report")
    for stage in set(STAGES) - set(STRATEGY_STAGES):
        assert not any(f.startswith("src/aegan/strategies/") and not f.endswith("__init__.py") for f in stage_files(stage))


def test_the_repository_holds_one_pipeline():
    """DVC runs every dvc.yaml of the repository: a test fixture named dvc.yaml would run with the comparison."""
    found = sorted(p.relative_to(REPO).as_posix() for p in REPO.rglob("dvc.yaml")
                   if not {".venv", ".git", "node_modules"} & set(p.relative_to(REPO).parts))  # fmt: skip
    assert found == ["dvc.yaml"], found


def test_every_stage_has_its_module_and_dvc_runs_it():
    """The stage list of the analysis is dvc.yaml's, and each stage's command is the `aegan` command of its module."""
    assert sorted(DVC) == sorted([*STAGES, *SAME_AS])  # the decide stages: the same as their own (test_decide.py)
    for stage in STAGES:
        assert module_file(f"aegan.stages.{stage}") == REPO / f"src/aegan/stages/{stage}.py"
        assert DVC[stage]["cmd"].split()[:2] == ["aegan", stage.replace("_", "-")], stage


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_imports_runner_code(stage):
    """What computes a result cannot hide in the runner: editing cli.py, parallel.py or shutdown.py
    re-runs no stage, because no stage's code imports them (nor the entry point)."""
    for strategy in STRATEGIES if stage in STRATEGY_STAGES else [None]:
        reached = stage_modules(stage, strategy, plumbing=True) & set(RUNNER)
        assert not reached, f"stage {stage} ({strategy or ''}) imports runner code {sorted(reached)}"


def test_the_runner_check_catches_an_import(monkeypatch):
    """The check above can fail: a leaf module that imported cli.py would put it into every stage that uses it."""
    import imports

    real = imports.module_imports
    monkeypatch.setattr(imports, "module_imports",
                        lambda name: real(name) | ({"aegan.cli"} if name == "aegan.images" else set()))  # fmt: skip
    assert "aegan.cli" in stage_modules("reference") and "aegan.cli" not in stage_modules("prepare")
    # through plumbing too: an import of the runner by tracking.py is no less an import
    monkeypatch.setattr(imports, "module_imports",
                        lambda name: real(name) | ({"aegan.parallel"} if name == "aegan.tracking" else set()))  # fmt: skip
    assert "aegan.parallel" in stage_modules("prepare", plumbing=True) and "aegan.parallel" not in stage_modules("prepare")
