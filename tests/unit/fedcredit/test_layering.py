"""Tools on top: no package below imports fedcredit, tools never import the CLI, no cycles."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BELOW = ("common", "crypto", "models", "node", "coordinator")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in (ROOT / package).rglob("*.py")
            if "_pb2" not in p.name}


def _imports(path: Path) -> Iterator[str]:
    """Every module name imported anywhere in the file (also inside functions)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _graph(package: str) -> dict[str, set[str]]:
    """Edges between the package's modules: an import of a module or of a name in it."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
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


def test_fedcredit_has_no_import_cycle() -> None:
    assert _cycle(_graph("fedcredit")) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
