"""The shape of bertkit's code, checked from its source (nothing is imported): `make lint` runs this file.

    .venv/bin/pytest -q tests/test_architecture.py

- No function or method is longer than MAX_FUNCTION_LINES, from its `def` line to its last (decorators not
  counted): a longer one is split into named steps.
- bertkit's modules import each other without a cycle, lazy imports inside functions included: a cycle that
  works only because one side imports late still ties the two modules into one. The floors themselves (which
  layer may import which) are import-linter's `layers` contract in pyproject.toml (`lint-imports`).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bertkit"
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def function_lengths(path: Path) -> list[tuple[int, str, int]]:
    """(line, name, lines) of every function and method in `path`, nested ones too, from the `def` line to the
    last (ast's lineno is the def's: decorators are not counted)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [
        (node.lineno, node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def long_functions(max_lines: int = MAX_FUNCTION_LINES) -> list[str]:
    """`file:line name (N lines)` for every function or method of bertkit over `max_lines`."""
    return [
        f"{path.relative_to(ROOT)}:{line} {name} ({lines} lines)"
        for path in modules().values()
        for line, name, lines in function_lengths(path)
        if lines > max_lines
    ]


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The bertkit modules that module `name` imports anywhere in its source. `from a.b import c` imports the
    submodule `a.b.c` when there is one, else `a.b`; importing `a.b.c` runs the `__init__` of `a` and `a.b`
    too, except where they are `name`'s own packages (initialised before `name`, whatever it imports)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    implied = {".".join(t.split(".")[:i]) for t in targets for i in range(1, t.count(".") + 1)}
    return ((targets | (implied - own_packages)) & known) - {name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported_modules(name, path, set(found)) for name, path in found.items()}


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """The modules `start` imports, directly or not, each mapped to the module it is first reached from
    (breadth first: a shortest chain)."""
    parent: dict[str, str] = {}
    queue = [start]
    for node in queue:
        for nxt in sorted(graph[node]):
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    return parent


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle [a, b, …, a] per group of modules that import one another (a strongly connected component of
    the graph): the shortest through the group's first module in sorted order."""
    reach = {node: reachable(graph, node) for node in graph}
    groups = {frozenset(m for m in reach[n] if n in reach[m]) for n in graph if n in reach[n]}
    cycles = []
    for start in sorted(min(group) for group in groups):
        cycle, node = [start], reach[start][start]
        while node != start:
            cycle.append(node)
            node = reach[start][node]
        cycles.append([start, *reversed(cycle[1:]), start])
    return cycles


def knot(graph: dict[str, set[str]], cycle: list[str]) -> str:
    """The other modules tied up with `cycle`'s, for the failure message."""
    start = cycle[0]
    others = sorted(m for m, parent in reachable(graph, start).items() if start in reachable(graph, m))
    others = [m for m in others if m not in cycle]
    return f"  (with {', '.join(others)})" if others else ""


def test_no_function_is_longer_than_the_limit():
    offenders = long_functions()
    assert not offenders, f"over {MAX_FUNCTION_LINES} lines; split into named steps:\n" + "\n".join(offenders)


def test_bertkit_imports_no_cycle():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles, one per knot of modules (lazy imports count):\n" + "\n".join(
        " -> ".join(cycle) + knot(graph, cycle) for cycle in cycles
    )


def test_the_checks_see_what_they_check(tmp_path):
    """The checks themselves: a lazy import closes a cycle, relative and submodule imports resolve, a package
    import reaches its __init__, and a function's length runs from its `def` (not its decorator) to its end."""
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b", "d"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}}) == [
        ["a", "b", "c", "a"],
        ["d", "e", "d"],
    ]
    known = {"bertkit", "bertkit.x", "bertkit.x.y", "bertkit.x.z", "bertkit.w"}
    source = tmp_path / "z.py"
    source.write_text("from . import y\n\ndef f():\n    from ..w import thing\n", encoding="utf-8")
    assert imported_modules("bertkit.x.z", source, known) == {"bertkit.x.y", "bertkit.w"}
    source.write_text("from bertkit.x import y as _\n", encoding="utf-8")
    assert imported_modules("bertkit.w", source, known) == {"bertkit.x", "bertkit.x.y"}
    source.write_text("from bertkit.x import NAME\n", encoding="utf-8")  # from the package's own __init__
    assert imported_modules("bertkit.x.z", source, known) == {"bertkit.x"}
    source.write_text("@decorator\nasync def f():\n    @decorator\n    def g():\n        pass\n", encoding="utf-8")
    assert function_lengths(source) == [(2, "f", 4), (4, "g", 2)]
