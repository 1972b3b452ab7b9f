"""Which files of src/aegan a stage's code imports, read from the code (ast), for checking dvc.yaml's deps.

A stage's computation is its module, `aegan.stages.<stage>`, and everything
it imports, directly or transitively, less the plumbing: code that cannot
change a number a stage writes (error messages, paths, atomic writes, MLflow
tracking, the parsing and validation of params.yaml, provenance records). The
`aegan` command (cli.py) and the runner (`aegan run`: parallel.py,
shutdown.py) only start stages and report what they return. Neither is part
of a stage's identity: rewording an error re-runs nothing
(tests/test_stage_identity.py edits each module and asks `dvc status`).
Imports inside functions count (the code imports lazily), at module
granularity. The one dynamic import, of the strategy a `train` stage runs, is
added by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "aegan"

# dvc.yaml's stages (matrix stages by their name before '@'), each computed by src/aegan/stages/<stage>.py
STAGES = ("prepare", "train_scorer", "pretrain_ae", "train", "reference", "evaluate", "study_own", "study_train", "study_evaluate",
          "study_best", "study_best_evaluate", "report")
# stages that run another stage's command on more runs (`aegan decide`): computed by that stage's module
SAME_AS = {"decide_ae": "pretrain_ae", "decide_train": "train", "decide_evaluate": "evaluate"}
# stages that import the strategy they run by name (a matrix over strategies: its module is a dep of its own)
STRATEGY_STAGES = ("train", "study_train", "study_best")
# code that runs stages, not code that computes them: no stage may import it (tests/test_stage_deps.py)
RUNNER = ("aegan.__main__", "aegan.cli", "aegan.parallel", "aegan.shutdown", "aegan.retrain", "aegan.decide",
          "aegan.promote")
# code a stage imports that cannot change a number it writes: not in its identity (what it imports is not followed)
PLUMBING = ("aegan.errors", "aegan.paths", "aegan.atomic", "aegan.tracking", "aegan.generator_model", "aegan.params",
            "aegan.params_base", "aegan.params_sections", "aegan.params_strategies", "aegan.stage_params", "aegan.provenance", "aegan.runnable",
            "aegan.yaml_file")
STRATEGIES = sorted(p.stem for p in (SRC / PACKAGE / "strategies").glob("*.py") if p.stem not in ("__init__", "base"))


def module_file(name: str) -> Path | None:
    """src/aegan/x/y.py or src/aegan/x/y/__init__.py for `aegan.x.y`; None if it is no module of ours."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def runtime_nodes(tree: ast.AST):
    """ast.walk, less the bodies of `if TYPE_CHECKING:` blocks (imports for type checkers only, never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            todo += node.orelse
            continue
        todo += ast.iter_child_nodes(node)


def imported_names(nodes) -> set[str]:
    """Module names (with their parent packages) imported by the import statements among `nodes`."""
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            parts = t.split(".")
            out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {n for n in out if module_file(n) is not None}


def module_imports(name: str) -> set[str]:
    return imported_names(runtime_nodes(ast.parse(module_file(name).read_text())))


def closure(roots: set[str], seen: set[str] | None = None, skip: tuple[str, ...] = ()) -> set[str]:
    """`roots` and every module they import, directly or transitively (modules in `seen` are not expanded; modules
    in `skip` are neither followed nor included)."""
    seen = set(seen or ())
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name in skip:
            continue
        seen.add(name)
        todo += module_imports(name) - seen
    return seen


def stage_modules(stage: str, strategy: str | None = None, plumbing: bool = False) -> set[str]:
    """The modules of ours that compute the stage: its stage module's closure (and the strategy it runs), less
    PLUMBING and what only PLUMBING imports (`plumbing=True`: every module the stage's code imports)."""
    roots = {f"{PACKAGE}.stages.{stage}"}
    if strategy is not None:  # a STRATEGY_STAGES stage imports the strategy it runs by name (get_strategy)
        roots |= {f"{PACKAGE}.strategies.{strategy}"}
    parents = {r.rsplit(".", i)[0] for r in roots for i in range(1, r.count(".") + 1)}  # run before any module
    return closure(roots | parents, skip=() if plumbing else PLUMBING)


def stage_files(stage: str, strategy: str | None = None) -> set[str]:
    """Repo-relative paths of every src/aegan file the stage's code imports."""
    return {module_file(n).relative_to(REPO).as_posix() for n in stage_modules(stage, strategy)}


def code_deps(stage: str, strategies: list[str]) -> list[str]:
    """dvc.yaml's code deps of `stage`: its module first, a folder where the stage imports every file in it."""
    per = [stage_files(stage, s) - {f"src/{PACKAGE}/strategies/{s}.py"} for s in strategies] if stage in STRATEGY_STAGES \
        else [stage_files(stage)]  # fmt: skip
    files = set.intersection(*per)
    assert all(f == files for f in per), f"{stage}: strategies import different shared files"
    folders = {}
    for f in files:
        folders.setdefault(f.rsplit("/", 1)[0], set()).add(f)
    out = set(files)
    for folder, used in folders.items():
        everything = {p.relative_to(REPO).as_posix() for p in (REPO / folder).glob("*.py")}
        if folder != f"src/{PACKAGE}" and used == everything and (REPO / folder / "__init__.py").is_file():
            out = (out - used) | {folder}
    own = f"src/{PACKAGE}/stages/{stage}.py"
    first = [own] + ([f"src/{PACKAGE}/strategies/${{item.strategy}}.py"] if stage in STRATEGY_STAGES else [])
    return first + sorted(out - {own})


if __name__ == "__main__":
    # `python tests/imports.py`: rewrite the code deps of every stage in dvc.yaml from the imports (comments kept)
    import re

    text = (REPO / "dvc.yaml").read_text()
    for name in (*STAGES, *SAME_AS):
        stage = SAME_AS.get(name, name)
        if module_file(f"{PACKAGE}.stages.{stage}") is None:
            continue
        block = re.search(rf"(?ms)^  {name}:[^\n]*\n.*?^( +)deps:\n(.*?)^\1\w", text)
        indent, deps = block.group(1), block.group(2)
        kept = [line for line in deps.splitlines(keepends=True) if not line.strip().startswith("- src/")]
        marker = next(i for i, line in enumerate(kept) if "# code:" in line)
        new = kept[: marker + 1] + [f"{indent}  - {d}\n" for d in code_deps(stage, STRATEGIES)] + kept[marker + 1:]
        text = text[: block.start(2)] + "".join(new) + text[block.end(2):]
    (REPO / "dvc.yaml").write_text(text)
