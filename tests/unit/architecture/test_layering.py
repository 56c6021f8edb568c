"""The house rules, checked: who may import whom, no cycles, no pickle, small modules, and
algorithms named only in their own folders and the registry (STYLE.md)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BELOW = ("common", "crypto", "models", "node", "coordinator")
PACKAGES = (*BELOW, "proto", "fedcredit")
FORBIDDEN = {  # package -> packages it must never import
    "common": ("crypto", "models", "node", "coordinator", "fedcredit"),
    "crypto": ("models", "proto", "node", "coordinator", "fedcredit"),
    "models": ("proto", "node", "coordinator", "fedcredit"),
    "node": ("coordinator", "fedcredit"),
    "coordinator": ("node", "fedcredit"),
}
MAX_LINES = 450


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in (ROOT / package).rglob("*.py")
            if "_pb2" not in p.name}


def _imports(path: Path) -> Iterator[str]:
    """Every module name imported anywhere in the file (also inside functions), except under
    `if TYPE_CHECKING:` (annotations only: no import at run time, so no cycle)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _graph(*packages: str) -> dict[str, set[str]]:
    """Edges between the packages' modules: an import of a module or of a name in it (importing
    `a.b.c` also runs the `__init__` of `a` and `a.b`)."""
    modules = {name: path for package in packages for name, path in _modules(package).items()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            parts = imported.split(".")
            targets.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
        graph[name] = {m for m in targets if m in modules and m != name
                       and not name.startswith(m + ".")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_package_below_the_tools_imports_fedcredit() -> None:
    offenders = [f"{name} imports {imported}"
                 for package in BELOW
                 for name, path in _modules(package).items()
                 for imported in _imports(path)
                 if imported == "fedcredit" or imported.startswith("fedcredit.")]
    assert offenders == []


def test_tools_do_not_import_the_cli() -> None:
    offenders = [f"{name} imports {imported}"
                 for name, path in _modules("fedcredit").items()
                 if not name.startswith("fedcredit.cli")
                 for imported in _imports(path) if imported.startswith("fedcredit.cli")]
    assert offenders == []


def test_no_import_cycle_anywhere() -> None:
    assert _cycle(_graph(*PACKAGES)) is None


def test_packages_import_only_what_lies_below_them() -> None:
    offenders = [f"{name} imports {imported}"
                 for package, banned in FORBIDDEN.items()
                 for name, path in _modules(package).items()
                 for imported in _imports(path)
                 if imported.split(".")[0] in banned]
    assert offenders == []


def test_no_production_module_uses_pickle() -> None:
    offenders = [name for package in PACKAGES for name, path in _modules(package).items()
                 if {"pickle", "cPickle", "dill"} & {m.split(".")[0] for m in _imports(path)}]
    assert offenders == []


def test_no_module_is_too_long() -> None:
    long = {name: n for package in PACKAGES for name, path in _modules(package).items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_module_says_what_it_is_for() -> None:
    missing = [name for package in PACKAGES for name, path in _modules(package).items()
               if path.read_text().strip() and ast.get_docstring(ast.parse(path.read_text()))
               is None]
    assert missing == []


def test_only_an_algorithm_folder_and_the_registry_name_an_algorithm() -> None:
    """The runtime (node, coordinator, common, crypto) works from the registry alone."""
    from models.registry import ALGORITHMS

    names = set(ALGORITHMS)
    offenders = [f"{name}:{node.lineno} names {node.value!r}"
                 for package in ("common", "crypto", "node", "coordinator", "models")
                 for name, path in _modules(package).items()
                 if not any(name.startswith(f"models.{a}") for a in names)
                 and name not in ("models.registry",)
                 for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Constant) and node.value in names]
    assert offenders == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
