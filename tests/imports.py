"""Which files of src/aegan a stage's command imports, read from the code (ast), for checking dvc.yaml's deps.

A stage runs `aegan <command>`: the CLI module's top level and helpers, the
command's own function, and everything those import, directly or
transitively. Imports inside functions count (the code imports lazily), at
module granularity. The one dynamic import, of the strategy a `train` stage
runs, is added by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "aegan"

# dvc.yaml stage (matrix stages by their name before '@') -> the `aegan` command's function in cli.py
COMMANDS = {"prepare": "prepare", "train_scorer": "train_scorer", "pretrain_ae": "pretrain_ae", "train": "train",
            "reference": "reference", "evaluate": "evaluate", "report": "report"}  # fmt: skip


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


def cli_imports(command: str) -> set[str]:
    """What `aegan <command>` imports from cli.py: its top level, its helper functions, the command's function."""
    tree = ast.parse(module_file(f"{PACKAGE}.cli").read_text())
    commands = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and any(
        isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "command" for d in n.decorator_list)}  # fmt: skip
    if command not in commands:
        raise KeyError(f"cli.py has no command function {command!r}")
    nodes = [n for top in tree.body if not (isinstance(top, ast.FunctionDef) and top.name in commands) for n in runtime_nodes(top)]
    return imported_names(nodes + list(runtime_nodes(commands[command]))) | {PACKAGE}


def closure(roots: set[str], seen: set[str] | None = None) -> set[str]:
    """`roots` and every module they import, directly or transitively (modules in `seen` are not expanded)."""
    seen = set(seen or ())
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += module_imports(name) - seen
    return seen


def stage_files(stage: str, strategy: str | None = None) -> set[str]:
    """Repo-relative paths of every src/aegan file the stage's command imports."""
    roots = cli_imports(COMMANDS[stage])
    if strategy is not None:  # `train` imports the strategy it runs by name (aegan.strategies.get_strategy)
        roots |= {f"{PACKAGE}.strategies.{strategy}"}
    modules = closure(roots, seen={f"{PACKAGE}.cli"})  # cli.py: only the parts this command runs (cli_imports)
    return {module_file(n).relative_to(REPO).as_posix() for n in modules}
